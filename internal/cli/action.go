package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/github"
	"github.com/tetherdeploy/tether/pkg/plan"
)

func actionCommand(env Env, stderr io.Writer) *ucli.Command {
	return &ucli.Command{
		Name:  "action",
		Usage: "run as a GitHub Actions step: plan on pull requests, deploy on pushes, rollback on dispatch (reads INPUT_* and GITHUB_*)",
		Action: func(c *ucli.Context) error {
			code := github.RunAction(c.Context, github.ActionOptions{
				Getenv: env.Get,
				Stdout: c.App.Writer,
				Stderr: stderr,
				Ops:    &actionOps{env: env},
			})
			if code != 0 {
				return &silentError{exitError{code: code, err: fmt.Errorf("exit %d", code)}}
			}
			return nil
		},
	}
}

// actionOps runs the Action's requests on the same machinery as the CLI.
type actionOps struct {
	env Env
}

func (o *actionOps) setup(ctx context.Context, t github.Target) (*setup, error) {
	flake := t.Flake
	if flake == "" {
		flake = "."
	}
	if !strings.Contains(flake, ":") && !filepath.IsAbs(flake) && t.Dir != "" {
		flake = filepath.Join(t.Dir, flake)
	}
	p := params{flake: flake, nodes: t.Nodes}
	if len(t.SSHPrivateKey) > 0 {
		p.keys = [][]byte{t.SSHPrivateKey}
	}
	if len(t.KnownHosts) > 0 {
		p.known = [][]byte{t.KnownHosts}
	}
	s, err := loadFleetWith(ctx, p, o.env, t.Progress, fleet.Overrides{})
	if err != nil {
		return nil, err
	}
	if t.BuildHost != "" {
		s.buildOn(t.BuildHost)
	}
	return s, nil
}

func names(nodes []*fleet.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

func (o *actionOps) Plan(ctx context.Context, req github.PlanRequest) (*plan.Plan, error) {
	s, err := o.setup(ctx, req.Target)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	opts := plan.Options{
		Flake: s.fleet.Flake, Commit: req.Commit, DryActivate: req.DryActivate && !req.NoTargetCommands,
		Parallel: parallelN(req.Parallel, s.fleet), DeployID: newDeployID(time.Now()), Who: req.Who,
	}
	e := &deploy.Engine{Nix: s.nix, Sink: actionSink(req.Progress), Fleet: s.fleet}
	if req.NoTargetCommands {
		// A build host is one of the machines too: build here.
		s.buildOn(deploy.Local)
		opts.NoTargets = true
		opts.NoTargetsReason = "pull request from a fork: no command runs on the machines, so only the new system is shown"
	} else {
		if err := s.connectWith(); err != nil {
			return nil, err
		}
		e.Dialer, e.Agents, e.ForwardAgent = s.dialer, s.agents, s.auth.Agent()
	}
	roots, err := os.MkdirTemp("", "tether-gcroots-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(roots)
	opts.GCRootDir = roots
	s.nix.Log = nodeLines(req.Progress, "build")
	return (&plan.Planner{Engine: e}).Plan(ctx, s.nodes, opts)
}

func (o *actionOps) Deploy(ctx context.Context, req github.DeployRequest) (*deploy.Report, error) {
	s, err := o.setup(ctx, req.Target)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := s.connectWith(); err != nil {
		return nil, err
	}
	opts := deploy.Options{
		DeployID: newDeployID(time.Now()), Who: req.Who, Flake: s.fleet.Flake,
		Action: agent.ActionSwitch, Parallel: parallelN(req.Parallel, s.fleet), KeepGoing: req.KeepGoing,
		ConfirmTimeout: req.ConfirmTimeout, Compress: deploy.CompressAuto,
	}
	if req.DryActivate {
		opts.Action = agent.ActionDryActivate
	} else {
		req.Progress.Selected(names(s.nodes))
	}
	return o.run(ctx, s, req.Target, opts, func(ctx context.Context, e *deploy.Engine, o deploy.Options) *deploy.Report {
		return e.Deploy(ctx, s.nodes, o)
	})
}

func (o *actionOps) Rollback(ctx context.Context, req github.RollbackRequest) (*deploy.Report, error) {
	s, err := o.setup(ctx, req.Target)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := s.connectWith(); err != nil {
		return nil, err
	}
	req.Progress.Selected(names(s.nodes))
	ro := deploy.RollbackOptions{
		Options: deploy.Options{
			DeployID: newDeployID(time.Now()), Who: req.Who, Flake: s.fleet.Flake,
			Parallel: parallelN(req.Parallel, s.fleet), ConfirmTimeout: req.ConfirmTimeout,
		},
		Generation: req.Generation,
	}
	return o.run(ctx, s, req.Target, ro.Options, func(ctx context.Context, e *deploy.Engine, opts deploy.Options) *deploy.Report {
		ro.Options = opts
		return e.Rollback(ctx, s.nodes, ro)
	})
}

func (o *actionOps) run(ctx context.Context, s *setup, t github.Target, opts deploy.Options, op func(context.Context, *deploy.Engine, deploy.Options) *deploy.Report) (*deploy.Report, error) {
	roots, err := os.MkdirTemp("", "tether-gcroots-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(roots)
	opts.GCRootDir = roots
	s.nix.Log = nodeLines(t.Progress, "build")
	e := &deploy.Engine{Nix: s.nix, Dialer: s.dialer, Agents: s.agents, Sink: actionSink(t.Progress), Fleet: s.fleet, ForwardAgent: s.auth.Agent()}
	return op(ctx, e, opts), nil
}

func parallelN(n int, f *fleet.Fleet) int {
	if n > 0 {
		return n
	}
	return f.Concurrency
}

// actionSink prints each node's steps as they happen and keeps the
// activation's own output for the node's log group.
func actionSink(p *github.Progress) deploy.Sink {
	var mu sync.Mutex
	lastCopy := map[string]time.Time{}
	return func(ev deploy.Event) {
		switch {
		case ev.Output != "":
			fmt.Fprintf(p.Node(ev.Node), "%s\n", ev.Output)
		case ev.Copy != nil:
			mu.Lock()
			due := time.Since(lastCopy[ev.Node]) >= 10*time.Second || ev.Copy.Sent == ev.Copy.Total
			if due {
				lastCopy[ev.Node] = time.Now()
			}
			mu.Unlock()
			if due {
				p.Printf("[%s] copying %s / %s", ev.Node, human(ev.Copy.Sent), human(ev.Copy.Total))
			}
		case ev.Node == "":
			p.Printf("%s: %s", ev.Phase, ev.Message)
		default:
			p.Printf("[%s] %s: %s", ev.Node, ev.Phase, ev.Message)
			fmt.Fprintf(p.Node(ev.Node), "%s: %s\n", ev.Phase, ev.Message)
		}
	}
}

// nodeLines sends the build log to the job log, line by line.
func nodeLines(p *github.Progress, prefix string) io.Writer {
	return &prefixed{w: p, prefix: prefix + " | "}
}

type prefixed struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixed) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
