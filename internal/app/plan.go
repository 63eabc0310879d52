package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/plan"
)

// planner answers, per node, "what changes if this is deployed?".
//
// The closure diff needs only read-only queries on the node (where its
// profile points, and that closure's paths and sizes): nothing built from
// the change is copied to or run on the node. DryActivate, opt-in, does
// copy the closure and run its dry activation there — the change's code as
// root on the machine — and never sets the profile. pkg/plan interprets
// what is gathered here; it runs nothing itself.
type planner struct {
	s       *Session
	req     PlanRequest
	gcRoots string
	events  deploy.Sink
}

// plan builds the nodes' new systems and diffs each against what the node
// runs. Each node is built where a deploy would build it (the deployer, its
// build host, itself). A node that fails to build or cannot be reached is
// reported as such; the others are still planned.
func (p *planner) plan(ctx context.Context) (*plan.Plan, error) {
	s := p.s
	e := s.engine(p.events)
	built := e.Build(ctx, s.Nodes, deploy.Options{DeployID: s.DeployID, GCRootDir: p.gcRoots})
	defer built.Close(context.WithoutCancel(ctx))
	out := make([]plan.NodePlan, len(s.Nodes))
	g := new(errgroup.Group)
	g.SetLimit(max(s.parallel(), 1))
	for i, n := range s.Nodes {
		g.Go(func() error {
			out[i] = p.node(ctx, e, built, n)
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.req.DryActivate && !p.req.NoTargets {
		p.dryActivate(ctx, out)
	}
	return plan.New(s.Fleet.Flake, p.req.Commit, s.app.now(), out), nil
}

func (p *planner) node(ctx context.Context, e Engine, built deploy.Builds, n *fleet.Node) plan.NodePlan {
	if len(n.Profiles) == 0 {
		return plan.Failed(n.Name, errors.New("node has no profile to deploy"))
	}
	newSystem := n.Profiles[0].OutPath
	infos, err := built.Closure(ctx, n.Name, newSystem)
	if err != nil {
		return plan.Failed(n.Name, fmt.Errorf("closure of the new system: %w", err))
	}
	newClosure := planPaths(infos)
	if p.req.NoTargets {
		np := plan.ForNode(plan.NodeInput{Node: n.Name, NewSystem: newSystem, NewClosure: newClosure})
		np.Status = plan.StatusNotQueried
		np.Error = p.req.NoTargetsReason
		if np.Error == "" {
			np.Error = "the node was not contacted"
		}
		return np
	}
	st, err := e.Inspect(ctx, n)
	if err != nil {
		return plan.Unreachable(n.Name, newSystem, err)
	}
	current := st.Profile
	if current == "" {
		current = st.Running
	}
	return plan.ForNode(plan.NodeInput{Node: n.Name, CurrentSystem: current, CurrentClosure: planPaths(st.Closure),
		NewSystem: newSystem, NewClosure: newClosure,
		BootedLinks: st.BootLinks, NewLinks: built.BootLinks(ctx, n.Name, newSystem)})
}

func planPaths(infos []nix.PathInfo) []plan.Path {
	out := make([]plan.Path, len(infos))
	for i, pi := range infos {
		out[i] = plan.Path{Path: pi.Path, NarSize: pi.NarSize}
	}
	return out
}

// dryActivate copies the changed nodes' closures and runs their dry
// activation, parsing what the activation says it would do.
func (p *planner) dryActivate(ctx context.Context, plans []plan.NodePlan) {
	s := p.s
	var todo []*fleet.Node
	index := map[string]int{}
	for i, n := range s.Nodes {
		if plans[i].Status == plan.StatusOK || plans[i].Status == plan.StatusFresh {
			todo = append(todo, n)
			index[n.Name] = i
		}
	}
	if len(todo) == 0 {
		return
	}
	output := &nodeOutput{max: maxDryActivateOutput}
	e := s.engine(func(ev deploy.Event) {
		if ev.Output != "" && ev.Phase == deploy.PhaseActivate {
			output.add(ev.Node, ev.Output)
		}
		if p.events != nil {
			p.events(ev)
		}
	})
	rep := e.Deploy(ctx, todo, deploy.Options{
		DeployID: s.DeployID, Who: s.Who, Flake: s.Fleet.Flake,
		Action: agent.ActionDryActivate, Parallel: s.parallel(),
		KeepGoing: true, GCRootDir: p.gcRoots,
	})
	for _, res := range rep.Results {
		i := index[res.Node]
		text, err := output.get(res.Node)
		d := plan.ParseDryActivate(text)
		switch {
		case res.Status != deploy.StatusDryActivated:
			d.Error = fmt.Sprintf("dry activation %s: %s", res.Status, res.Error)
		case err != nil:
			d.Error = err.Error()
		}
		plans[i].DryActivate = &d
	}
}

// maxDryActivateOutput bounds what a node's dry activation may print: a
// real one lists units in a few KiB.
const maxDryActivateOutput = 1 << 20

// nodeOutput gathers each node's output lines, up to max bytes a node: a
// node printing without end fails its plan instead of filling memory.
type nodeOutput struct {
	max  int
	mu   sync.Mutex
	text map[string]*strings.Builder
	over map[string]bool
}

func (o *nodeOutput) add(node, line string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.text == nil {
		o.text, o.over = map[string]*strings.Builder{}, map[string]bool{}
	}
	b := o.text[node]
	if b == nil {
		b = &strings.Builder{}
		o.text[node] = b
	}
	if o.over[node] || b.Len()+len(line)+1 > o.max {
		o.over[node] = true
		return
	}
	b.WriteString(line + "\n")
}

// get returns what node printed, and an error when it printed more than
// the bound (the text is then what came before it).
func (o *nodeOutput) get(node string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.text[node]
	if b == nil {
		return "", nil
	}
	if o.over[node] {
		return b.String(), fmt.Errorf("node %s sent more than %d KiB answering dry-activate; the rest was not read", node, o.max>>10)
	}
	return b.String(), nil
}
