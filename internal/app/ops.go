package app

import (
	"context"
	"fmt"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/plan"
)

// Deploy builds, copies and activates the selected nodes with magic
// rollback. The report holds every node's outcome, failures included; an
// error with no report means nothing was attempted (DeployExit maps both).
func (a *App) Deploy(ctx context.Context, req DeployRequest) (*deploy.Report, error) {
	switch req.Action {
	case "":
		req.Action = agent.ActionSwitch
	case agent.ActionSwitch, agent.ActionBoot, agent.ActionTest, agent.ActionDryActivate:
	default:
		return nil, Usage(fmt.Errorf("action %q: want switch, boot, test or dry-activate", req.Action))
	}
	switch req.Compress {
	case "":
		req.Compress = deploy.CompressAuto
	case deploy.CompressAuto, deploy.CompressAlways, deploy.CompressNever:
	default:
		return nil, Usage(fmt.Errorf("compress %q: want auto, on or off", req.Compress))
	}
	return a.activate(ctx, req.Target, func(e Engine, s *Session, opts deploy.Options) *deploy.Report {
		opts.Action = req.Action
		opts.KeepGoing = req.KeepGoing
		opts.ActivationTimeout = req.ActivationTimeout
		opts.AllowFailedUnits = req.AllowFailedUnits
		opts.Reboot = req.Reboot
		opts.Compress = req.Compress
		return e.Deploy(ctx, s.Nodes, opts)
	})
}

// Rollback activates an earlier generation of the selected nodes, under the
// same protection as a deploy.
func (a *App) Rollback(ctx context.Context, req RollbackRequest) (*deploy.Report, error) {
	if len(req.Nodes) == 0 {
		return nil, Usage(fmt.Errorf("rollback: name the nodes to roll back"))
	}
	if req.Generation < 0 {
		return nil, Usage(fmt.Errorf("rollback: generation %d: want a positive number", req.Generation))
	}
	return a.activate(ctx, req.Target, func(e Engine, s *Session, opts deploy.Options) *deploy.Report {
		return e.Rollback(ctx, s.Nodes, deploy.RollbackOptions{Options: opts, Generation: req.Generation})
	})
}

// activate runs an operation that changes the nodes (a deploy or a
// rollback) on a connected session, with the options every such run
// shares.
func (a *App) activate(ctx context.Context, t Target, op func(Engine, *Session, deploy.Options) *deploy.Report) (*deploy.Report, error) {
	s, err := a.openConnected(ctx, t)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	opts, err := s.options()
	if err != nil {
		return nil, err
	}
	return op(s.engine(t.Progress.Events), s, opts), nil
}

// Status reads each selected node's running system, generations, deploy in
// progress and last result.
func (a *App) Status(ctx context.Context, req StatusRequest) ([]deploy.NodeStatus, error) {
	s, err := a.openConnected(ctx, req.Target)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.engine(req.Progress.Events).Status(ctx, s.Nodes, s.parallel()), nil
}

// Plan builds the selected nodes' new systems and tells, per node, what
// deploying them would change. A plan whose nodes failed individually
// comes with a nil error; the error is for a run that planned nothing.
func (a *App) Plan(ctx context.Context, req PlanRequest) (*plan.Plan, error) {
	s, err := a.open(ctx, req.Target)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if req.NoTargets {
		// A build host is one of the machines too: build here.
		s.buildOn(deploy.Local)
	} else if err := s.connect(ctx); err != nil {
		return nil, err
	}
	roots, err := s.gcRoots()
	if err != nil {
		return nil, err
	}
	pl := &planner{s: s, req: req, gcRoots: roots, events: req.Progress.Events}
	return pl.plan(ctx)
}

// openConnected opens a session whose nodes will be contacted.
func (a *App) openConnected(ctx context.Context, t Target) (*Session, error) {
	s, err := a.open(ctx, t)
	if err != nil {
		return nil, err
	}
	if err := s.connect(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// options are the deploy options every operation on the session shares.
func (s *Session) options() (deploy.Options, error) {
	roots, err := s.gcRoots()
	if err != nil {
		return deploy.Options{}, err
	}
	return deploy.Options{
		DeployID:       s.DeployID,
		Who:            s.Who,
		Flake:          s.Fleet.Flake,
		Parallel:       s.parallel(),
		ConfirmTimeout: s.t.ConfirmTimeout,
		GCRootDir:      roots,
	}, nil
}
