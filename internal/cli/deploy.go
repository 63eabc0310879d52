package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
)

func deployCommand(env Env, stderr io.Writer) *ucli.Command {
	flags := append(fleetFlags(), connFlags()...)
	flags = append(flags,
		&ucli.DurationFlag{Name: "confirm-timeout", Usage: "how long a node waits for the confirmation before rolling back (overrides the configuration)"},
		&ucli.DurationFlag{Name: "activation-timeout", Usage: "how long an activation may run before it is killed and rolled back"},
		&ucli.BoolFlag{Name: "keep-going", Usage: "deploy the other nodes when one fails (default: roll back the ones already deployed)"},
		&ucli.BoolFlag{Name: "dry-activate", Usage: "copy and run the dry activation only: show what would change, change nothing"},
		&ucli.BoolFlag{Name: "boot", Usage: "make the new system the boot default without activating it"},
		&ucli.BoolFlag{Name: "allow-failed-units", Usage: "keep an activation in which units failed to start"},
		&ucli.StringFlag{Name: "compress", Value: "auto", Usage: "zstd-compress closures on the way: auto (unless the node has fastConnection), on, off"},
		&ucli.StringFlag{Name: "build-host", Usage: "build every selected node's closure on `HOST` (a node name, user@host[:port], or \"local\"), overriding the configuration"},
		&ucli.StringFlag{Name: "json", Usage: "write the per-node results as JSON to `FILE` (- for stdout)", TakesFile: true},
	)
	return &ucli.Command{
		Name:      "deploy",
		Usage:     "build, copy and activate the selected nodes with magic rollback",
		ArgsUsage: "[NODE|@TAG|GLOB ...]",
		Flags:     flags,
		Action: func(c *ucli.Context) error {
			if c.Bool("dry-activate") && c.Bool("boot") {
				return usageError(errors.New("--dry-activate and --boot exclude each other"))
			}
			action := agent.ActionSwitch
			switch {
			case c.Bool("dry-activate"):
				action = agent.ActionDryActivate
			case c.Bool("boot"):
				action = agent.ActionBoot
			}
			s, err := loadFleet(c.Context, c, env, stderr, fleet.Overrides{})
			if err != nil {
				return err
			}
			defer s.Close()
			if bh := c.String("build-host"); bh != "" {
				s.buildOn(bh)
			}
			if err := s.connectWith(); err != nil {
				return err
			}
			opts := deploy.Options{
				DeployID:          newDeployID(time.Now()),
				Who:               who(env),
				Flake:             s.fleet.Flake,
				Action:            action,
				Parallel:          parallelism(c, s.fleet),
				KeepGoing:         c.Bool("keep-going"),
				ConfirmTimeout:    c.Duration("confirm-timeout"),
				ActivationTimeout: c.Duration("activation-timeout"),
				AllowFailedUnits:  c.Bool("allow-failed-units"),
				Compress:          deploy.Compression(c.String("compress")),
			}
			switch opts.Compress {
			case deploy.CompressAuto, deploy.CompressAlways, deploy.CompressNever:
			default:
				return usageError(fmt.Errorf("--compress %q: want auto, on or off", opts.Compress))
			}
			rep, err := runDeploy(c.Context, s, c.App.Writer, stderr, opts, func(ctx context.Context, e *deploy.Engine, o deploy.Options) *deploy.Report {
				return e.Deploy(ctx, s.nodes, o)
			})
			if err != nil {
				return err
			}
			return finishReport(c, rep)
		},
	}
}

func rollbackCommand(env Env, stderr io.Writer) *ucli.Command {
	flags := append(fleetFlags(), connFlags()...)
	flags = append(flags,
		&ucli.IntFlag{Name: "to-generation", Usage: "generation `N` to go back to (default: the one before the current)"},
		&ucli.DurationFlag{Name: "confirm-timeout", Usage: "how long a node waits for the confirmation before undoing the rollback"},
		&ucli.StringFlag{Name: "json", Usage: "write the per-node results as JSON to `FILE` (- for stdout)", TakesFile: true},
	)
	return &ucli.Command{
		Name:      "rollback",
		Usage:     "activate the previous (or a named) generation, under the same magic-rollback protection",
		ArgsUsage: "NODE|@TAG|GLOB ...",
		Flags:     flags,
		Action: func(c *ucli.Context) error {
			if c.NArg() == 0 {
				return usageError(errors.New("rollback: name the nodes to roll back"))
			}
			s, err := loadFleet(c.Context, c, env, stderr, fleet.Overrides{})
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.connectWith(); err != nil {
				return err
			}
			opts := deploy.RollbackOptions{
				Options: deploy.Options{
					DeployID:       newDeployID(time.Now()),
					Who:            who(env),
					Flake:          s.fleet.Flake,
					Parallel:       parallelism(c, s.fleet),
					ConfirmTimeout: c.Duration("confirm-timeout"),
				},
				Generation: c.Int("to-generation"),
			}
			rep, err := runDeploy(c.Context, s, c.App.Writer, stderr, opts.Options, func(ctx context.Context, e *deploy.Engine, o deploy.Options) *deploy.Report {
				opts.Options = o
				return e.Rollback(ctx, s.nodes, opts)
			})
			if err != nil {
				return err
			}
			return finishReport(c, rep)
		},
	}
}

// runDeploy runs op on an engine wired to the setup, with live progress on
// stderr, and a GC-root directory that lives as long as the run.
func runDeploy(ctx context.Context, s *setup, stdout, stderr io.Writer, opts deploy.Options, op func(context.Context, *deploy.Engine, deploy.Options) *deploy.Report) (*deploy.Report, error) {
	roots, err := os.MkdirTemp("", "tether-gcroots-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(roots)
	opts.GCRootDir = roots
	prog := newProgress(stderr, s.env)
	defer prog.Close()
	e := &deploy.Engine{Nix: s.nix, Dialer: s.dialer, Agents: s.agents, Sink: prog.Event, Fleet: s.fleet, ForwardAgent: s.auth.Agent()}
	s.nix.Log = prog.BuildLog()
	return op(ctx, e, opts), nil
}

// finishReport prints the summary, writes --json and maps the outcome to
// the exit code.
func finishReport(c *ucli.Context, rep *deploy.Report) error {
	printSummary(c.App.Writer, rep)
	if p := c.String("json"); p != "" {
		if err := writeJSONFile(p, c.App.Writer, rep); err != nil {
			return err
		}
	}
	return reportError(rep)
}

func writeJSONFile(path string, stdout io.Writer, v any) error {
	if path == "-" {
		return writeJSON(stdout, v)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	if err := writeJSON(f, v); err != nil {
		f.Close()
		return fmt.Errorf("--json: %w", err)
	}
	return f.Close()
}

// reportError maps a run's outcome to an exit code: uncertainty is the
// worst news, then a rollback, then any other failure.
func reportError(rep *deploy.Report) error {
	var uncertain, rolled, failed []string
	for _, r := range rep.Results {
		switch r.Status {
		case deploy.StatusUncertain:
			uncertain = append(uncertain, r.Node)
		case deploy.StatusRolledBack:
			rolled = append(rolled, r.Node)
		case deploy.StatusFailed, deploy.StatusUnreachable, deploy.StatusSkipped:
			failed = append(failed, r.Node)
		}
	}
	switch {
	case len(uncertain) > 0:
		return &silentError{exitError{code: ExitUncertain, err: fmt.Errorf("state uncertain on %v", uncertain)}}
	case len(rolled) > 0:
		return &silentError{exitError{code: ExitRolledBack, err: fmt.Errorf("rolled back: %v", rolled)}}
	case len(failed) > 0:
		return &silentError{exitError{code: ExitFailed, err: fmt.Errorf("failed: %v", failed)}}
	case rep.Interrupted:
		return &silentError{exitError{code: ExitInterrupted, err: errors.New("interrupted")}}
	}
	return nil
}
