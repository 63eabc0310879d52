package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// RollbackOptions describe a `tether rollback` run.
type RollbackOptions struct {
	Options
	// Generation is the profile generation to return to; 0 means the one
	// before the current generation.
	Generation int
}

// Rollback activates an older generation of each node's first profile,
// under the same magic-rollback protection as a deploy: a rollback that
// cuts the node off is itself undone.
func (e *Engine) Rollback(ctx context.Context, nodes []*fleet.Node, opts RollbackOptions) *Report {
	opts.Action = agent.ActionSwitch
	rep := &Report{DeployID: opts.DeployID, Flake: opts.Flake, Action: ActionRollback, Started: time.Now()}
	runs := make([]*nodeRun, len(nodes))
	for i, n := range nodes {
		runs[i] = e.newRun(n, i, opts.Options)
		runs[i].res.Action = ActionRollback
	}
	g := new(errgroup.Group)
	g.SetLimit(parallel(opts.Parallel))
	for _, r := range runs {
		g.Go(func() error {
			if ctx.Err() != nil {
				r.finish(StatusSkipped, errors.New("not started: interrupted"))
				return nil
			}
			r.rollbackTo(ctx, opts.Generation)
			return nil
		})
	}
	g.Wait()
	for _, r := range runs {
		r.conn.drop()
		rep.Results = append(rep.Results, r.res)
	}
	rep.Finished = time.Now()
	rep.Interrupted = ctx.Err() != nil
	return rep
}

func (n *nodeRun) rollbackTo(ctx context.Context, generation int) {
	if len(n.node.Profiles) == 0 {
		n.finish(StatusFailed, errors.New("node has no profile"))
		return
	}
	if st, err := n.connect(ctx); err != nil {
		n.finish(st, err)
		return
	}
	p := n.node.Profiles[0]
	status, err := n.agentStatus(ctx, n.home(p), p.ProfilePath)
	if err != nil {
		n.finish(StatusFailed, err)
		return
	}
	target, err := pickGeneration(status, generation)
	if err != nil {
		n.finish(StatusFailed, fmt.Errorf("profile %s: %w", p.ProfilePath, err))
		return
	}
	n.res.TargetGeneration = target.Number
	n.res.New = target.Path
	n.emit(PhaseActivate, fmt.Sprintf("rolling back to generation %d (%s)", target.Number, target.Path))
	req := n.request(p, target.Path, agent.ActionSwitch, fmt.Sprintf("%s-%d-0", n.opts.DeployID, n.index))
	start := time.Now()
	res, err := n.runAgent(ctx, p, req, "generation "+fmt.Sprint(target.Number))
	n.res.Timings.Activate = Seconds(time.Since(start))
	n.res.Previous, n.res.Generation, n.res.DeployID = res.Previous, res.Generation, req.DeployID
	st, err := mapAgentResult(res, err)
	if st.OK() {
		n.res.Current = target.Path
	}
	n.res.Reason = res.Reason
	n.finish(st, err)
}

// pickGeneration finds the generation to roll back to: the named one, or
// the newest one older than the current.
func pickGeneration(s agent.StatusReport, want int) (agent.Generation, error) {
	if want > 0 {
		for _, g := range s.Generations {
			if g.Number == want {
				if g.Current {
					return g, fmt.Errorf("generation %d is already the current one", want)
				}
				return g, nil
			}
		}
		return agent.Generation{}, fmt.Errorf("no generation %d (have %s)", want, generationList(s.Generations))
	}
	var best agent.Generation
	for _, g := range s.Generations {
		if g.Number < s.CurrentGeneration && g.Number > best.Number {
			best = g
		}
	}
	if best.Number == 0 {
		return best, fmt.Errorf("no generation older than the current one (%d)", s.CurrentGeneration)
	}
	return best, nil
}

func generationList(gs []agent.Generation) string {
	if len(gs) == 0 {
		return "none"
	}
	var b bytes.Buffer
	for i, g := range gs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, g.Number)
	}
	return b.String()
}

func (n *nodeRun) agentStatus(ctx context.Context, h *agentHome, profile string) (agent.StatusReport, error) {
	c, err := n.conn.client(ctx)
	if err != nil {
		return agent.StatusReport{}, err
	}
	return n.agentStatusOn(ctx, c, h, profile)
}

// agentStatusOn runs `status` on connection c, as the agent h.
func (n *nodeRun) agentStatusOn(ctx context.Context, c *remote.Client, h *agentHome, profile string) (agent.StatusReport, error) {
	out, err := c.Output(ctx, h.argv(agent.StatusArgv(h.path, h.stateDir, profile))...)
	if err != nil {
		if rerr := agent.DecodeReply(out); rerr != nil {
			err = rerr
		}
		return agent.StatusReport{}, fmt.Errorf("read status: %w", err)
	}
	var s agent.StatusReport
	if err := json.Unmarshal(out, &s); err != nil {
		return s, fmt.Errorf("read status: %w", err)
	}
	return s, nil
}

// NodeStatus is what `tether status` shows for one node.
type NodeStatus struct {
	Node    string              `json:"node"`
	Status  *agent.StatusReport `json:"status,omitempty"`
	Error   string              `json:"error,omitempty"`
	Profile string              `json:"profile"`
}

// Status reads each node's running system, generations, deploy in progress
// and last deploy result.
func (e *Engine) Status(ctx context.Context, nodes []*fleet.Node, parallelism int) []NodeStatus {
	out := make([]NodeStatus, len(nodes))
	g := new(errgroup.Group)
	g.SetLimit(parallel(parallelism))
	for i, node := range nodes {
		g.Go(func() error {
			r := e.newRun(node, i, Options{})
			defer r.conn.drop()
			profile := agent.DefaultProfile
			if len(node.Profiles) > 0 {
				profile = node.Profiles[0].ProfilePath
			}
			out[i] = NodeStatus{Node: node.Name, Profile: profile}
			if _, err := r.connect(ctx); err != nil {
				out[i].Error = err.Error()
				return nil
			}
			s, err := r.agentStatus(ctx, r.first(), profile)
			if err != nil {
				out[i].Error = err.Error()
				return nil
			}
			out[i].Status = &s
			return nil
		})
	}
	g.Wait()
	return out
}
