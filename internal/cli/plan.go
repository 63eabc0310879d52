package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/plan"
	"github.com/tetherdeploy/tether/pkg/report"
)

func planCommand(env Env, stderr io.Writer) *ucli.Command {
	flags := append(fleetFlags(), connFlags()...)
	flags = append(flags,
		&ucli.BoolFlag{Name: "dry-activate", Usage: "also copy each changed closure and run its dry activation on the node (runs the change's code as root there)"},
		&ucli.StringFlag{Name: "format", Value: "text", Usage: "output `FORMAT`: text, markdown or json"},
		&ucli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the plan to `FILE` instead of stdout", TakesFile: true},
		&ucli.StringFlag{Name: "json", Usage: "also write the plan as JSON to `FILE`", TakesFile: true},
	)
	return &ucli.Command{
		Name:      "plan",
		Usage:     "show what a deploy would change on each node, without changing anything",
		ArgsUsage: "[NODE|@TAG|GLOB ...]",
		Flags:     flags,
		Action: func(c *ucli.Context) error {
			format := c.String("format")
			if format != "text" && format != "markdown" && format != "json" {
				return usageError(fmt.Errorf("--format %q: want text, markdown or json", format))
			}
			s, err := loadFleet(c.Context, c, env, stderr, fleet.Overrides{})
			if err != nil {
				return err
			}
			defer s.Close()
			if err := s.connectWith(); err != nil {
				return err
			}
			p, err := runPlan(c.Context, s, plan.Options{
				Flake:       s.fleet.Flake,
				DryActivate: c.Bool("dry-activate"),
				Parallel:    parallelism(c, s.fleet),
				DeployID:    newDeployID(time.Now()),
				Who:         who(env),
			})
			if err != nil {
				return err
			}
			w := c.App.Writer
			if o := c.String("output"); o != "" {
				f, err := os.Create(o)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			if err := writePlan(w, p, format); err != nil {
				return err
			}
			if j := c.String("json"); j != "" {
				if err := writeJSONFile(j, c.App.Writer, p); err != nil {
					return err
				}
			}
			return planError(p)
		},
	}
}

// runPlan plans the selected nodes with progress on stderr.
func runPlan(ctx context.Context, s *setup, opts plan.Options) (*plan.Plan, error) {
	roots, err := os.MkdirTemp("", "tether-gcroots-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(roots)
	opts.GCRootDir = roots
	prog := newProgress(s.stderr, s.env)
	defer prog.Close()
	s.nix.Log = prog.BuildLog()
	e := &deploy.Engine{Nix: s.nix, Dialer: s.dialer, Agents: s.agents, Sink: prog.Event, Fleet: s.fleet, ForwardAgent: s.auth.Agent()}
	pl := &plan.Planner{Engine: e}
	return pl.Plan(ctx, s.nodes, opts)
}

func writePlan(w io.Writer, p *plan.Plan, format string) error {
	switch format {
	case "markdown":
		_, err := io.WriteString(w, report.PlanMarkdown(p, report.PlanMarkdownOptions{}))
		return err
	case "json":
		return report.PlanJSON(w, p)
	}
	return report.PlanText(w, p)
}

// planError makes the exit code say whether every node could be planned.
func planError(p *plan.Plan) error {
	var bad []string
	for _, n := range p.Nodes {
		if n.Status == plan.StatusUnreachable || n.Status == plan.StatusError ||
			(n.DryActivate != nil && n.DryActivate.Error != "") {
			bad = append(bad, n.Node)
		}
	}
	if len(bad) > 0 {
		return &silentError{exitError{code: ExitFailed, err: errors.New("could not plan every node")}}
	}
	return nil
}
