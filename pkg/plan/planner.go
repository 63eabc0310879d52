package plan

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
)

// Planner answers, per node, "what changes if this is deployed?".
//
// The closure diff needs only read-only queries on the node (where its
// profile points, and that closure's paths and sizes): nothing built from
// the change is copied to or run on the node. DryActivate, opt-in, does
// copy the closure and run its dry activation there — PR code as root on
// the machine — and never sets the profile.
type Planner struct {
	// Engine builds the new systems (where a deploy would) and reaches
	// the nodes.
	Engine *deploy.Engine
}

// Options describe one plan.
type Options struct {
	Flake, Commit string
	// DryActivate also copies each changed closure and runs its dry
	// activation on the node.
	DryActivate bool
	// NoTargets plans without contacting any node (a fork's pull request):
	// only the new closures are known. NoTargetsReason says why, for the
	// reader.
	NoTargets       bool
	NoTargetsReason string
	// Parallel bounds how many nodes are queried at once.
	Parallel  int
	GCRootDir string
	// DeployID and Who name the dry activations on the nodes.
	DeployID, Who string
	Now           time.Time
}

// Plan builds the nodes' new systems and diffs each against what the node
// runs. Each node is built where a deploy would build it (the deployer, its
// build host, itself). A node that fails to build or cannot be reached is
// reported as such; the others are still planned.
func (p *Planner) Plan(ctx context.Context, nodes []*fleet.Node, opts Options) (*Plan, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	built := p.Engine.Build(ctx, nodes, deploy.Options{DeployID: opts.DeployID, GCRootDir: opts.GCRootDir})
	defer built.Close(ctx)
	out := make([]NodePlan, len(nodes))
	g, gctx := errgroup.WithContext(ctx)
	limit := opts.Parallel
	if limit <= 0 {
		limit = deploy.DefaultParallel
	}
	g.SetLimit(limit)
	for i, n := range nodes {
		g.Go(func() error {
			out[i] = p.planNode(gctx, built, n, opts)
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.DryActivate && !opts.NoTargets {
		p.dryActivate(ctx, nodes, out, opts)
	}
	return New(opts.Flake, opts.Commit, opts.Now, out), nil
}

func (p *Planner) planNode(ctx context.Context, built *deploy.Built, n *fleet.Node, opts Options) NodePlan {
	if len(n.Profiles) == 0 {
		return Failed(n.Name, errors.New("node has no profile to deploy"))
	}
	newSystem := n.Profiles[0].OutPath
	store, err := built.Store(n.Name)
	if err != nil {
		return Failed(n.Name, err)
	}
	newClosure, err := p.closure(ctx, store, newSystem)
	if err != nil {
		return Failed(n.Name, fmt.Errorf("closure of the new system: %w", err))
	}
	if opts.NoTargets {
		np := ForNode(NodeInput{Node: n.Name, NewSystem: newSystem, NewClosure: newClosure})
		np.Status = StatusNotQueried
		np.Error = opts.NoTargetsReason
		if np.Error == "" {
			np.Error = "the node was not contacted"
		}
		return np
	}
	st, err := p.Engine.Inspect(ctx, n)
	if err != nil {
		return Unreachable(n.Name, newSystem, err)
	}
	current := st.Profile
	if current == "" {
		current = st.Running
	}
	var before []Path
	for _, pi := range st.Closure {
		before = append(before, Path{Path: pi.Path, NarSize: pi.NarSize})
	}
	return ForNode(NodeInput{Node: n.Name, CurrentSystem: current, CurrentClosure: before, NewSystem: newSystem, NewClosure: newClosure})
}

func (p *Planner) closure(ctx context.Context, r *nix.Runner, root string) ([]Path, error) {
	infos, err := r.Closure(ctx, []string{root})
	if err != nil {
		return nil, err
	}
	out := make([]Path, len(infos))
	for i, pi := range infos {
		out[i] = Path{Path: pi.Path, NarSize: pi.NarSize}
	}
	return out, nil
}

// dryActivate copies the changed nodes' closures and runs their dry
// activation, parsing what the activation says it would do.
func (p *Planner) dryActivate(ctx context.Context, nodes []*fleet.Node, plans []NodePlan, opts Options) {
	var todo []*fleet.Node
	index := map[string]int{}
	for i, n := range nodes {
		if plans[i].Status == StatusOK || plans[i].Status == StatusFresh {
			todo = append(todo, n)
			index[n.Name] = i
		}
	}
	if len(todo) == 0 {
		return
	}
	var mu sync.Mutex
	output := map[string]*strings.Builder{}
	sink := p.Engine.Sink
	e := &deploy.Engine{Nix: p.Engine.Nix, Dialer: p.Engine.Dialer, Agents: p.Engine.Agents, HTTP: p.Engine.HTTP,
		Fleet: p.Engine.Fleet, ForwardAgent: p.Engine.ForwardAgent}
	e.Sink = func(ev deploy.Event) {
		if ev.Output != "" && ev.Phase == deploy.PhaseActivate {
			mu.Lock()
			b := output[ev.Node]
			if b == nil {
				b = &strings.Builder{}
				output[ev.Node] = b
			}
			b.WriteString(ev.Output + "\n")
			mu.Unlock()
		}
		if sink != nil {
			sink(ev)
		}
	}
	rep := e.Deploy(ctx, todo, deploy.Options{
		DeployID: opts.DeployID, Who: opts.Who, Flake: opts.Flake,
		Action: agent.ActionDryActivate, Parallel: opts.Parallel,
		KeepGoing: true, GCRootDir: opts.GCRootDir,
	})
	for _, res := range rep.Results {
		i := index[res.Node]
		text := ""
		if b := output[res.Node]; b != nil {
			text = b.String()
		}
		d := ParseDryActivate(text)
		if res.Status != deploy.StatusDryActivated {
			d.Error = fmt.Sprintf("dry activation %s: %s", res.Status, res.Error)
		}
		plans[i].DryActivate = &d
	}
}
