// Package deploy is the orchestrator: it builds the selected nodes' closures,
// then runs each node's pipeline — connect, install the agent, copy the
// closure, activate under magic rollback, confirm over a fresh connection —
// several nodes at once, and reports what happened to each.
//
// A node that fails makes the nodes already deployed in the same run roll
// back (unless KeepGoing), because a fleet half on the old configuration and
// half on the new one is rarely what anyone wants. Interrupting a run stops
// new work but never abandons a node mid-activation: the deployer waits,
// without confirming, until the node is back on its previous system.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
	"github.com/tetherdeploy/tether/pkg/transfer"
)

// Dialer opens SSH connections; *remote.Dialer is one.
type Dialer interface {
	Dial(ctx context.Context, t remote.Target) (*remote.Client, error)
}

// Engine runs deploys. Its fields are the seams: the local Nix store, the
// SSH dialer, where agents come from and where events go.
type Engine struct {
	Nix    *nix.Runner
	Dialer Dialer
	Agents AgentSource
	// Fleet resolves build hosts named by node; nil allows only
	// addresses.
	Fleet *fleet.Fleet
	// ForwardAgent holds the deployer's keys for a build host to copy
	// closures straight to the nodes it can reach; nil relays every such
	// copy through the deployer.
	ForwardAgent sshagent.Agent
	// Sink receives progress events; nil drops them.
	Sink Sink
	// HTTP runs deployer-side HTTP health checks; nil uses a client with
	// no redirects followed.
	HTTP *http.Client

	mu sync.Mutex // serialises Sink
}

// DefaultParallel is how many nodes are handled at once unless told
// otherwise: a whole small fleet (the few to few dozen machines tether is
// for) goes out in one wave, because a node spends most of a deploy
// waiting — on the copy, on its activation, on the confirmation — and
// waves add those waits up (bench/RESULTS.md, scaling: 16 nodes with 5 s
// activations took 2.83x one node 8 at a time, 2.22x all at once, on a
// machine whose 2 CPUs also ran all 16 targets).
const DefaultParallel = 16

// Options describe one run.
type Options struct {
	// DeployID names the run; per-node deploy ids are derived from it. It
	// must be a valid agent deploy id prefix ([a-z0-9-]).
	DeployID string
	// Who is recorded on the targets (and shown to a concurrent deploy).
	Who   string
	Flake string
	// Action is switch (default), boot, test or dry-activate.
	Action agent.Action
	// Parallel bounds how many nodes run at once; 0 means
	// DefaultParallel.
	Parallel int
	// KeepGoing deploys the other nodes when one fails, instead of
	// rolling back the ones this run already deployed.
	KeepGoing bool
	// ConfirmTimeout and ActivationTimeout, when positive, override the
	// nodes' settings.
	ConfirmTimeout    time.Duration
	ActivationTimeout time.Duration
	// AllowFailedUnits keeps an activation whose units failed (exit 4).
	AllowFailedUnits bool
	// Reboot deploys every node's system profile by booting it once and
	// committing it only when confirmed from that boot (also per node:
	// fleet.Node.Reboot). Waves still apply: a wave's nodes reboot
	// together, the next wave's after them.
	Reboot bool
	// GCRootDir holds the build's GC roots for the length of the run.
	GCRootDir string
	// Compress is when closures are zstd-compressed on the way to a node:
	// CompressAuto (the default) for every node not marked
	// fastConnection, CompressAlways or CompressNever.
	Compress Compression
}

// Compression says when the deployer compresses the closure stream.
type Compression string

// Compression modes.
const (
	CompressAuto   Compression = "auto"
	CompressAlways Compression = "on"
	CompressNever  Compression = "off"
)

// compress reports whether copies to the node are compressed. A slow link
// (a home uplink) gains several times over; on a fast LAN the compressor
// can become the bottleneck, which is what fastConnection says.
func (n *nodeRun) compress() bool {
	switch n.opts.Compress {
	case CompressAlways:
		return true
	case CompressNever:
		return false
	}
	return !n.node.Settings.FastConnection
}

func (e *Engine) emit(ev Event) {
	if e.Sink == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.Sink(ev)
}

func (e *Engine) httpClient() *http.Client {
	if e.HTTP != nil {
		return e.HTTP
	}
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Deploy builds and deploys nodes and reports each one's outcome.
func (e *Engine) Deploy(ctx context.Context, nodes []*fleet.Node, opts Options) *Report {
	if opts.Action == "" {
		opts.Action = agent.ActionSwitch
	}
	rep := &Report{DeployID: opts.DeployID, Flake: opts.Flake, Action: Action(opts.Action), Started: time.Now()}
	runs := make([]*nodeRun, len(nodes))
	for i, n := range nodes {
		runs[i] = e.newRun(n, i, opts)
	}
	defer func() {
		closed := map[*builder]bool{}
		for _, r := range runs {
			r.conn.drop()
			if r.agentDone != nil {
				<-r.agentDone // a node stopped before its copy: the check ends with the connection
			}
			if r.builder != nil && !closed[r.builder] {
				closed[r.builder] = true
				r.builder.close(ctx)
			}
			rep.Results = append(rep.Results, r.res)
		}
		rep.Finished = time.Now()
		rep.Interrupted = ctx.Err() != nil
	}()

	scheduler{parallel: opts.Parallel, keepGoing: opts.KeepGoing}.run(ctx, asStages(runs), func(ctx context.Context, built func(stages, error)) {
		e.buildAll(ctx, runs, opts, func(r *nodeRun, err error) { built(r, err) })
	})
	return rep
}

func asStages(runs []*nodeRun) []stages {
	out := make([]stages, len(runs))
	for i, r := range runs {
		out[i] = r
	}
	return out
}

// nodeRun is one node's pipeline and its outcome.
type nodeRun struct {
	e      *Engine
	node   *fleet.Node
	index  int
	opts   Options
	dialer Dialer
	conn   *conn
	res    Result
	start  time.Time

	connErr error
	builder *builder
	// homes are where the node's agents live: one per user its profiles
	// run as, the first profile's first (see agentHome).
	homes []*agentHome
	// agentDone is closed when the agent check that dial started has
	// ended, with agentErr set.
	agentDone chan struct{}
	agentErr  error
	// done lists the profiles this run activated on the node, in order.
	done []deployedProfile
	// closures answers "closure of these roots" for nodes built here; nil
	// for nodes built elsewhere.
	closures *closureIndex
}

type deployedProfile struct {
	profile  *fleet.Profile
	previous string
	closure  string
	// The agent's word on the profile's generations: before the deploy,
	// after it, and whether the deploy made the latter.
	prevGen, gen int
	created      bool
}

func (e *Engine) newRun(n *fleet.Node, i int, opts Options) *nodeRun {
	r := &nodeRun{e: e, node: n, index: i, opts: opts, dialer: e.Dialer, start: time.Now()}
	r.res = Result{Node: n.Name, Status: StatusPending, Action: Action(opts.Action)}
	for _, p := range n.Profiles {
		if !slices.ContainsFunc(r.homes, func(h *agentHome) bool { return h.key == homeKey(p.Settings) }) {
			r.homes = append(r.homes, newAgentHome(n.Name, p.Settings))
		}
	}
	if len(r.homes) == 0 {
		r.homes = []*agentHome{newAgentHome(n.Name, n.Settings)}
	}
	c, err := ConnectionFor(n)
	r.connErr = err
	r.conn = &conn{dialer: e.Dialer, target: c.Target}
	return r
}

func (n *nodeRun) emit(phase Phase, msg string) {
	n.e.emit(Event{Node: n.node.Name, Phase: phase, Message: msg})
}

func (n *nodeRun) sink(ev Event) { n.e.emit(ev) }

func (n *nodeRun) name() string   { return n.node.Name }
func (n *nodeRun) wave() int      { return n.node.Wave }
func (n *nodeRun) status() Status { return n.res.Status }
func (n *nodeRun) changed() bool  { return len(n.done) > 0 }

func (n *nodeRun) finish(s Status, err error) {
	n.res.Status = s
	if err != nil {
		n.res.Error = err.Error()
	}
	n.res.Timings.Total = Seconds(time.Since(n.start))
	res := n.res
	n.e.emit(Event{Node: n.node.Name, Phase: PhaseDone, Message: string(s), Result: &res})
}

// home is the agent home of profile p: its user's.
func (n *nodeRun) home(p *fleet.Profile) *agentHome {
	for _, h := range n.homes {
		if h.key == homeKey(p.Settings) {
			return h
		}
	}
	return n.first()
}

// first is the agent home of the node's first profile: the one that
// imports closures and answers status.
func (n *nodeRun) first() *agentHome { return n.homes[0] }

// reach opens the node's connection.
func (n *nodeRun) reach(ctx context.Context) (Status, error) {
	if n.connErr != nil {
		return StatusFailed, n.connErr
	}
	n.emit(PhaseConnect, "connecting to "+describeTarget(n.conn.target))
	if _, err := n.conn.client(ctx); err != nil {
		var hk *remote.HostKeyError
		if errors.As(err, &hk) {
			return StatusFailed, err
		}
		return StatusUnreachable, err
	}
	return "", nil
}

// connect opens the node's connection and installs the agent.
func (n *nodeRun) connect(ctx context.Context) (Status, error) {
	if st, err := n.reach(ctx); err != nil {
		return st, err
	}
	n.emit(PhaseAgent, "checking agent")
	if err := n.installAgents(ctx, n.clientOrNil()); err != nil {
		return StatusFailed, err
	}
	return "", nil
}

func describeTarget(t remote.Target) string {
	s := t.Host
	if t.Port != 0 && t.Port != 22 {
		s = fmt.Sprintf("%s:%d", s, t.Port)
	}
	var via []string
	for _, h := range t.Jumps {
		via = append(via, h.Host)
	}
	if len(via) > 0 {
		s += " via " + strings.Join(via, ", ")
	}
	return s
}

// dial opens the node's connection and starts checking its agent, which
// then runs beside the closure query and the copy: copy waits for it.
func (n *nodeRun) dial(ctx context.Context) (Status, error) {
	if st, err := n.reach(ctx); err != nil {
		if ctx.Err() != nil {
			st, err = StatusSkipped, fmt.Errorf("interrupted before anything changed: %w", err)
		}
		return st, err
	}
	n.emit(PhaseAgent, "checking agent")
	c := n.clientOrNil()
	n.agentDone = make(chan struct{})
	go func() {
		defer close(n.agentDone)
		n.agentErr = n.installAgents(ctx, c)
	}()
	return StatusPending, nil
}

// installAgents makes sure every user the node's profiles run as has the
// agent in its own state dir.
func (n *nodeRun) installAgents(ctx context.Context, c *remote.Client) error {
	for _, h := range n.homes {
		if err := h.install(ctx, c, n.e.Agents); err != nil {
			return fmt.Errorf("install agent: %w", err)
		}
	}
	return nil
}

// agentReady waits for the agent check dial started.
func (n *nodeRun) agentReady() error {
	<-n.agentDone
	return n.agentErr
}

// copy copies the node's closure, and returns once the agent check has
// ended too.
func (n *nodeRun) copy(ctx context.Context) (Status, error) {
	st, err := n.copyClosure(ctx)
	agentErr := n.agentReady()
	if err == nil && agentErr != nil {
		st, err = StatusFailed, agentErr
	}
	if err != nil && ctx.Err() != nil {
		st, err = StatusSkipped, fmt.Errorf("interrupted during the copy; nothing was activated: %w", err)
	}
	return st, err
}

func (n *nodeRun) copyClosure(ctx context.Context) (Status, error) {
	var roots []string
	for _, p := range n.node.Profiles {
		roots = append(roots, p.OutPath)
	}
	copyStart := time.Now()
	progress := func(p transfer.Progress) {
		n.sink(Event{Node: n.node.Name, Phase: PhaseCopy, Copy: &p})
	}
	var st transfer.Stats
	var err error
	switch {
	case n.builder != nil && n.builder.self == n:
		n.res.CopyRoute = "built on the node"
	case n.builder != nil:
		st, n.res.CopyRoute, err = n.copyFromBuilder(ctx, n.clientOrNil(), roots, progress)
	default:
		n.res.CopyRoute = "deployer → " + n.node.Name
		topts := transfer.Options{Substitute: !n.node.Settings.FastConnection, Progress: progress}
		if n.compress() {
			// The agent decompresses on the node.
			if err := n.agentReady(); err != nil {
				return StatusFailed, err
			}
			topts.CompressedImport = n.first().argv(agent.ImportArgv(n.first().path, true))
			n.res.CopyRoute += " (zstd)"
		}
		if n.closures != nil {
			// On an error the copy asks nix itself, and reports it.
			topts.Closure, _ = n.closures.of(ctx, roots)
		}
		st, err = transfer.Copy(ctx, n.e.Nix, transfer.RemoteStore(n.clientOrNil(), nil), roots, topts)
	}
	n.res.Timings.Copy = Seconds(time.Since(copyStart))
	n.res.Copied = CopyStats{Paths: st.Sent, Bytes: st.SentBytes, StreamBytes: st.StreamBytes, Present: st.Present,
		Substituted: st.Substituted, CachesUnreachable: st.CachesUnreachable}
	if st.CachesUnreachable != "" {
		n.emit(PhaseCopy, fmt.Sprintf("the node's binary caches could not be used (%s): the paths were sent instead", st.CachesUnreachable))
	}
	if err != nil {
		return StatusFailed, fmt.Errorf("copy closure: %w", err)
	}
	wire := ""
	if st.StreamBytes != st.SentBytes {
		wire = fmt.Sprintf(", %s on the wire", HumanBytes(st.SentBytes))
	}
	n.emit(PhaseCopy, fmt.Sprintf("copied %d paths (%s%s); %d already present", st.Sent, HumanBytes(st.StreamBytes), wire, st.Present))
	return StatusPending, nil
}

// activate activates the node's profiles in order. When a later profile
// fails, the earlier ones are taken back too.
func (n *nodeRun) activate(ctx context.Context) (Status, error) {
	actStart := time.Now()
	defer func() { n.res.Timings.Activate = Seconds(time.Since(actStart)) }()
	for i, p := range n.node.Profiles {
		req := n.request(p, p.OutPath, n.opts.Action, fmt.Sprintf("%s-%d-%d", n.opts.DeployID, n.index, i))
		if n.rebootWanted(p) {
			req.Reboot = true
		}
		res, err := n.runAgent(ctx, p, req, p.Name)
		pr := ProfileResult{Profile: p.Name, Path: p.OutPath, Previous: res.Previous, Generation: res.Generation}
		status, perr := mapAgentResult(res, err)
		pr.Status = status
		if perr != nil {
			pr.Error = perr.Error()
		}
		n.res.Profiles = append(n.res.Profiles, pr)
		if i == 0 {
			n.res.Previous, n.res.New, n.res.Generation, n.res.DeployID = res.Previous, p.OutPath, res.Generation, req.DeployID
			n.res.RebootFor, n.res.Rebooted = res.RebootFor, res.Rebooted
			if res.Rebooted || !status.OK() {
				// What it runs now, as the agent saw it at the end, and
				// why, when a reboot got in the way.
				n.res.Current = res.Running
				n.res.Reason = res.Reason
			}
		}
		if status.OK() {
			if status != StatusDryActivated {
				n.done = append(n.done, deployedProfile{profile: p, previous: res.Previous, closure: p.OutPath,
					prevGen: res.PreviousGeneration, gen: res.Generation, created: res.GenerationCreated})
			}
			continue
		}
		// A later profile failed: take the earlier ones back too.
		if len(n.done) > 0 && status != StatusUncertain {
			n.rollbackProfiles(ctx, fmt.Sprintf("profile %s failed", p.Name))
		}
		n.res.Reason = res.Reason
		return status, perr
	}
	st0 := n.res.Profiles[0].Status
	for _, p := range n.res.Profiles {
		if p.Status == StatusRebootRequired {
			st0 = StatusRebootRequired
		}
	}
	if n.res.Current == "" {
		n.res.Current = n.res.New
	}
	return st0, nil
}

func (n *nodeRun) clientOrNil() *remote.Client {
	n.conn.mu.Lock()
	defer n.conn.mu.Unlock()
	return n.conn.c
}

// rebootWanted reports whether profile p is deployed by booting it once:
// the system profile, with --reboot or the node's reboot setting.
func (n *nodeRun) rebootWanted(p *fleet.Profile) bool {
	return (n.opts.Reboot || n.node.Reboot) && n.opts.Action == agent.ActionSwitch && p.ProfilePath == agent.DefaultProfile
}

// request builds the agent request for activating closure as profile p.
func (n *nodeRun) request(p *fleet.Profile, closure string, action agent.Action, id string) agent.Request {
	s := p.Settings
	confirm, activation := s.ConfirmTimeout, s.ActivationTimeout
	if n.opts.ConfirmTimeout > 0 {
		confirm = n.opts.ConfirmTimeout
	}
	if n.opts.ActivationTimeout > 0 {
		activation = n.opts.ActivationTimeout
	}
	token, err := agent.NewToken()
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return agent.Request{
		DeployID:          id,
		Who:               n.opts.Who,
		ProfilePath:       p.ProfilePath,
		Closure:           closure,
		Action:            action,
		MagicRollback:     s.MagicRollback,
		AutoRollback:      s.AutoRollback,
		ConfirmTimeout:    agent.Duration(confirm),
		ActivationTimeout: agent.Duration(activation),
		AllowFailedUnits:  n.opts.AllowFailedUnits,
		Token:             token,
	}
}

// runAgent activates req with the agent of profile p's user.
func (n *nodeRun) runAgent(ctx context.Context, p *fleet.Profile, req agent.Request, label string) (agent.Result, error) {
	h := n.home(p)
	a := &activation{n: n, home: h, req: req, dir: agent.DeployDir(h.stateDir, req.DeployID), label: label}
	return a.run(ctx)
}

// mapAgentResult turns the agent's outcome into the node's.
func mapAgentResult(res agent.Result, err error) (Status, error) {
	if err != nil {
		if errors.Is(err, errUncertain) {
			return StatusUncertain, err
		}
		return StatusFailed, err
	}
	var detail error
	if res.Reason != "" || res.Error != "" {
		detail = errors.New(strings.TrimPrefix(strings.Join(nonEmpty(res.Reason, res.Error), ": "), ": "))
	}
	st, ok := agentOutcomes[res.Status]
	if !ok {
		st = StatusFailed
	}
	if st.OK() {
		return st, nil
	}
	return st, detail
}

// agentOutcomes is the node's status for each outcome of the agent's; an
// outcome missing here (failed, lock held, one this build does not know)
// is a failure.
var agentOutcomes = map[agent.Status]Status{
	agent.StatusDeployed:       StatusDeployed,
	agent.StatusRebootRequired: StatusRebootRequired,
	agent.StatusDryActivated:   StatusDryActivated,
	agent.StatusRolledBack:     StatusRolledBack,
	agent.StatusRollbackFailed: StatusUncertain,
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// revert takes a node this run deployed back to what it ran before,
// because another node failed.
func (n *nodeRun) revert(ctx context.Context, reason string) (Status, error) {
	n.emit(PhaseRollback, "rolling back: "+reason)
	n.res.Reason = reason
	if err := n.rollbackProfiles(ctx, reason); err != nil {
		return StatusUncertain, err
	}
	n.res.Current = n.res.Previous
	return StatusRolledBack, fmt.Errorf("rolled back because %s", reason)
}

// rollbackProfiles re-activates, newest first, the previous systems of the
// profiles this run activated.
func (n *nodeRun) rollbackProfiles(ctx context.Context, reason string) error {
	var errs []error
	for i := len(n.done) - 1; i >= 0; i-- {
		d := n.done[i]
		if d.previous == "" {
			errs = append(errs, fmt.Errorf("profile %s: no previous system to go back to", d.profile.Name))
			continue
		}
		req := n.request(d.profile, d.previous, agent.ActionSwitch, fmt.Sprintf("%s-%d-%d-rb", n.opts.DeployID, n.index, i))
		if d.created && d.prevGen > 0 && d.gen != d.prevGen {
			// Back to the generation it had, and the one this run made
			// goes, as if the deploy had not happened.
			req.Revert = &agent.Revert{Generation: d.gen, Path: d.closure, To: d.prevGen}
		}
		res, err := n.runAgent(context.WithoutCancel(ctx), d.profile, req, "rollback of "+d.profile.Name)
		st, err := mapAgentResult(res, err)
		if !st.OK() {
			errs = append(errs, fmt.Errorf("profile %s: roll back to %s: %w", d.profile.Name, d.previous, err))
		} else if i == 0 {
			n.res.Generation = res.Generation // where the node is now
		}
	}
	n.done = nil
	return errors.Join(errs...)
}

// HumanBytes renders a byte count for people: "3.0 MiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
