package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNode is a node's pipeline with scripted outcomes. It records every
// stage it was asked to run, in one log shared by the fleet (and its
// build), so a test can assert the order across nodes.
type fakeNode struct {
	n   string
	w   int
	log *stageLog

	// dialed, copied and activated are the outcomes of those stages; ""
	// means success (StatusPending after dial and copy, StatusDeployed
	// after activate).
	dialed, copied, activated Status
	// reverted is the outcome of a revert; "" means StatusRolledBack.
	reverted Status
	// before holds, by stage name ("dial", "copy", "activate"), what runs
	// once the stage is logged and before it returns: waiting for another
	// node to get somewhere, or an interrupt arriving.
	before map[string]func(ctx context.Context)
	// interrupted is the outcome of an activation whose context was
	// cancelled: like a real one, it is not cut short, it ends on its own
	// and is not confirmed.
	interrupted Status

	mu   sync.Mutex
	st   Status
	errs []string
	did  bool
}

// stageLog is the fleet's shared log; wait blocks until a line is in it.
type stageLog struct {
	mu    sync.Mutex
	cond  *sync.Cond
	lines []string
}

func newStageLog() *stageLog {
	l := &stageLog{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *stageLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.cond.Broadcast()
}

func (l *stageLog) has(line string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.lines, line)
}

func (l *stageLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// index is where line first is in the log; -1 when absent.
func (l *stageLog) index(line string) int { return slices.Index(l.all(), line) }

// wait blocks until line is in the log, or a few seconds passed (the
// test then fails on what did not happen, instead of hanging).
func (l *stageLog) wait(line string) {
	timeout := time.AfterFunc(5*time.Second, func() {
		l.mu.Lock()
		l.lines = append(l.lines, "timed out waiting for "+line)
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer timeout.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for !slices.Contains(l.lines, line) && !slices.Contains(l.lines, "timed out waiting for "+line) {
		l.cond.Wait()
	}
}

func (l *stageLog) String() string { return strings.Join(l.all(), "\n") }

// waitFor is a before hook waiting for a line of the log.
func waitFor(log *stageLog, line string) func(context.Context) {
	return func(context.Context) { log.wait(line) }
}

func (f *fakeNode) name() string { return f.n }
func (f *fakeNode) wave() int    { return f.w }

func (f *fakeNode) status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeNode) changed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.did
}

func (f *fakeNode) stage(ctx context.Context, name string) {
	f.log.add("%s %s", name, f.n)
	if h := f.before[name]; h != nil {
		h(ctx)
	}
}

func (f *fakeNode) dial(ctx context.Context) (Status, error) {
	f.stage(ctx, "dial")
	if f.dialed == "" {
		return StatusPending, nil
	}
	return f.dialed, fmt.Errorf("%s: %s", f.n, f.dialed)
}

func (f *fakeNode) copy(ctx context.Context) (Status, error) {
	f.stage(ctx, "copy")
	if f.copied == "" {
		return StatusPending, nil
	}
	return f.copied, fmt.Errorf("%s: %s", f.n, f.copied)
}

func (f *fakeNode) activate(ctx context.Context) (Status, error) {
	f.stage(ctx, "activate")
	f.mu.Lock()
	defer f.mu.Unlock()
	if ctx.Err() != nil && f.interrupted != "" {
		return f.interrupted, errors.New("not confirmed: interrupted")
	}
	switch f.activated {
	case "", StatusDeployed, StatusRebootRequired, StatusDryActivated:
		f.did = true
		if f.activated == "" {
			return StatusDeployed, nil
		}
		return f.activated, nil
	case StatusUncertain:
		f.did = true
	}
	return f.activated, fmt.Errorf("%s: %s", f.n, f.activated)
}

func (f *fakeNode) revert(ctx context.Context, reason string) (Status, error) {
	f.log.add("revert %s (%s)", f.n, reason)
	if f.reverted == "" {
		return StatusRolledBack, fmt.Errorf("rolled back because %s", reason)
	}
	return f.reverted, errors.New("revert failed")
}

func (f *fakeNode) finish(s Status, err error) {
	f.mu.Lock()
	f.st = s
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	f.errs = append(f.errs, msg)
	f.mu.Unlock()
	f.log.add("finish %s %s", f.n, s)
}

// lastErr is the error the node's outcome was recorded with.
func (f *fakeNode) lastErr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) == 0 {
		return ""
	}
	return f.errs[len(f.errs)-1]
}

// before sets a node's hook for a stage.
func (f *fakeNode) hook(stage string, h func(context.Context)) {
	if f.before == nil {
		f.before = map[string]func(context.Context){}
	}
	f.before[stage] = h
}

// fleetOf makes fake nodes "name:wave" sharing one log.
func fleetOf(specs ...string) ([]*fakeNode, *stageLog) {
	log := newStageLog()
	var out []*fakeNode
	for _, s := range specs {
		name, wave, _ := strings.Cut(s, ":")
		w := 0
		if wave != "" {
			fmt.Sscan(wave, &w)
		}
		out = append(out, &fakeNode{n: name, w: w, log: log, st: StatusPending})
	}
	return out, log
}

func asStageList(nodes []*fakeNode) []stages {
	out := make([]stages, len(nodes))
	for i, n := range nodes {
		out[i] = n
	}
	return out
}

func statusesOf(nodes []*fakeNode) string {
	var parts []string
	for _, n := range nodes {
		parts = append(parts, n.n+"="+string(n.status()))
	}
	return strings.Join(parts, " ")
}

// fakeBuild reports the nodes' builds one after the other, in order (the
// fleet's order unless given). A node in fails fails to build; a node
// with a gate is reported once the gate closes. A stopped build (its
// context cancelled) reports nothing more, as the engine's does.
type fakeBuild struct {
	order []string
	fails []string
	gates map[string]chan struct{}
}

func (b fakeBuild) of(nodes []*fakeNode) buildFunc {
	return func(ctx context.Context, built func(stages, error)) {
		order := b.order
		if order == nil {
			for _, n := range nodes {
				order = append(order, n.n)
			}
		}
		for _, name := range order {
			i := slices.IndexFunc(nodes, func(n *fakeNode) bool { return n.n == name })
			n := nodes[i]
			if g := b.gates[name]; g != nil {
				select {
				case <-g:
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				n.log.add("build stopped before %s", name)
				return
			}
			var err error
			if slices.Contains(b.fails, name) {
				err = errors.New("build: exit 1")
				n.log.add("build failed %s", name)
			} else {
				n.log.add("built %s", name)
			}
			built(n, err)
		}
	}
}

// gateUntil returns a gate that opens once the lines are in the log.
func gateUntil(log *stageLog, lines ...string) chan struct{} {
	g := make(chan struct{})
	go func() {
		for _, l := range lines {
			log.wait(l)
		}
		close(g)
	}()
	return g
}

// runSched runs the scheduler over the fake nodes, with build marking the
// named nodes' builds failed.
func runSched(ctx context.Context, s scheduler, nodes []*fakeNode, buildFails ...string) {
	s.run(ctx, asStageList(nodes), fakeBuild{fails: buildFails}.of(nodes))
}

// before asserts that line a comes before line b in the log, both there.
func before(t *testing.T, log *stageLog, a, b string) {
	t.Helper()
	ia, ib := log.index(a), log.index(b)
	if ia < 0 || ib < 0 || ia > ib {
		t.Errorf("want %q before %q:\n%s", a, b, log)
	}
}

func TestSchedulerAllDeployed(t *testing.T) {
	nodes, log := fleetOf("a", "b", "c")
	runSched(context.Background(), scheduler{parallel: 1}, nodes)
	if got, want := statusesOf(nodes), "a=deployed b=deployed c=deployed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	for _, n := range []string{"a", "b", "c"} {
		before(t, log, "dial "+n, "copy "+n)
		before(t, log, "built "+n, "copy "+n)
		before(t, log, "copy "+n, "activate "+n)
		before(t, log, "activate "+n, "finish "+n+" deployed")
	}
	// One at a time: no activation starts before the one before ended.
	running := ""
	for _, l := range log.all() {
		if n, ok := strings.CutPrefix(l, "activate "); ok {
			if running != "" {
				t.Errorf("%s activated while %s was:\n%s", n, running, log)
			}
			running = n
		}
		if strings.HasPrefix(l, "finish "+running+" ") {
			running = ""
		}
	}
}

// The point of building and copying at once: a node whose build ended is
// connected to and copied while another node's build still runs.
func TestSchedulerCopiesWhileOthersBuild(t *testing.T) {
	nodes, log := fleetOf("a", "b")
	build := fakeBuild{gates: map[string]chan struct{}{"b": gateUntil(log, "copy a", "dial b")}}
	scheduler{parallel: 4}.run(context.Background(), asStageList(nodes), build.of(nodes))
	if got, want := statusesOf(nodes), "a=deployed b=deployed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	before(t, log, "copy a", "built b")
	// Connecting does not wait for the build: b's build waits for it.
	if log.has("timed out waiting for dial b") {
		t.Errorf("b was not connected to before its build ended:\n%s", log)
	}
}

// Without keep-going, no node is activated before every build has ended:
// a late build failure must find every node as it was.
func TestSchedulerNoActivationBeforeEveryBuildEnded(t *testing.T) {
	nodes, log := fleetOf("a", "b")
	build := fakeBuild{gates: map[string]chan struct{}{"b": gateUntil(log, "copy a")}}
	scheduler{parallel: 4}.run(context.Background(), asStageList(nodes), build.of(nodes))
	before(t, log, "built b", "activate a")
}

// With keep-going a node's build failing later changes nothing for the
// others, so a node activates as soon as it is copied.
func TestSchedulerKeepGoingActivatesBeforeOtherBuildsEnd(t *testing.T) {
	nodes, log := fleetOf("a", "b")
	build := fakeBuild{gates: map[string]chan struct{}{"b": gateUntil(log, "finish a deployed")}}
	scheduler{parallel: 4, keepGoing: true}.run(context.Background(), asStageList(nodes), build.of(nodes))
	if got, want := statusesOf(nodes), "a=deployed b=deployed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	before(t, log, "finish a deployed", "built b")
}

// A build failing after another node was copied: the copied node is
// skipped, before anything on it changed.
func TestSchedulerLateBuildFailureSkipsCopiedNodes(t *testing.T) {
	nodes, log := fleetOf("a", "b")
	build := fakeBuild{fails: []string{"b"}, gates: map[string]chan struct{}{"b": gateUntil(log, "copy a")}}
	scheduler{parallel: 4}.run(context.Background(), asStageList(nodes), build.of(nodes))
	if got, want := statusesOf(nodes), "a=skipped b=failed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if !log.has("copy a") || log.has("activate a") || log.has("revert a (node b failed to build)") {
		t.Errorf("a was not copied, or was activated:\n%s", log)
	}
	if got := nodes[0].lastErr(); got != "not activated: node b failed to build" {
		t.Errorf("a's error %q", got)
	}
	if got := nodes[1].lastErr(); got != "build: exit 1" {
		t.Errorf("b's error %q", got)
	}
}

// A failed build stops the builds still running: their nodes are skipped.
func TestSchedulerBuildFailureStopsTheOtherBuilds(t *testing.T) {
	nodes, log := fleetOf("a", "b", "c")
	never := make(chan struct{})
	build := fakeBuild{order: []string{"b", "c", "a"}, fails: []string{"b"}, gates: map[string]chan struct{}{"c": never}}
	scheduler{parallel: 4}.run(context.Background(), asStageList(nodes), build.of(nodes))
	if got, want := statusesOf(nodes), "a=skipped b=failed c=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if !log.has("build stopped before c") {
		t.Errorf("the other builds were not stopped:\n%s", log)
	}
	if got := nodes[2].lastErr(); !strings.HasPrefix(got, "not ") || !strings.HasSuffix(got, ": node b failed to build") {
		t.Errorf("c's error %q", got)
	}
}

// The case: b fails in wave 0, so a (deployed in the same wave) is
// rolled back and c (wave 1) is never activated.
func TestSchedulerFailureInWaveRollsBackAndSkips(t *testing.T) {
	nodes, log := fleetOf("a:0", "b:0", "c:1")
	nodes[1].activated = StatusRolledBack
	nodes[1].hook("activate", waitFor(log, "finish a deployed"))
	runSched(context.Background(), scheduler{parallel: 2}, nodes)
	if got, want := statusesOf(nodes), "a=rolled-back b=rolled-back c=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if !log.has("revert a (node b failed)") {
		t.Errorf("a was not reverted:\n%s", log)
	}
	if log.has("activate c") || log.has("revert b (node b failed)") {
		t.Errorf("c was activated, or b reverted by the scheduler:\n%s", log)
	}
	if got := nodes[2].lastErr(); !strings.HasPrefix(got, "not ") || !strings.HasSuffix(got, ": node b failed") {
		t.Errorf("c's error %q", got)
	}
}

// Waves order activations; copies run ahead of them.
func TestSchedulerWavesOrderActivations(t *testing.T) {
	nodes, log := fleetOf("late:2", "early:0", "mid:1", "early2:0")
	nodes[1].hook("activate", waitFor(log, "copy late"))
	runSched(context.Background(), scheduler{parallel: 4}, nodes)
	if got, want := statusesOf(nodes), "late=deployed early=deployed mid=deployed early2=deployed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	for _, pair := range [][2]string{{"early", "mid"}, {"early2", "mid"}, {"mid", "late"}} {
		before(t, log, "finish "+pair[0]+" deployed", "activate "+pair[1])
	}
	before(t, log, "copy late", "finish early deployed")
}

func TestSchedulerKeepGoing(t *testing.T) {
	nodes, log := fleetOf("a:0", "b:0", "c:1")
	nodes[1].activated = StatusRolledBack
	runSched(context.Background(), scheduler{parallel: 1, keepGoing: true}, nodes)
	if got, want := statusesOf(nodes), "a=deployed b=rolled-back c=deployed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	for _, l := range log.all() {
		if strings.HasPrefix(l, "revert") {
			t.Errorf("keep-going reverted a node: %s", l)
		}
	}
}

func TestSchedulerBuildFailureSkipsEveryNode(t *testing.T) {
	nodes, log := fleetOf("a", "b", "c")
	runSched(context.Background(), scheduler{parallel: 2}, nodes, "b")
	if got, want := statusesOf(nodes), "a=skipped b=failed c=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	for _, l := range log.all() {
		if strings.HasPrefix(l, "activate") || strings.HasPrefix(l, "copy b") {
			t.Errorf("a node was activated, or the failed build copied: %s", l)
		}
	}
	if got := nodes[0].lastErr(); !strings.HasSuffix(got, ": node b failed to build") {
		t.Errorf("a's error %q", got)
	}
}

func TestSchedulerBuildFailureWithKeepGoing(t *testing.T) {
	nodes, _ := fleetOf("a", "b", "c")
	runSched(context.Background(), scheduler{parallel: 2, keepGoing: true}, nodes, "b")
	if got, want := statusesOf(nodes), "a=deployed b=failed c=deployed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
}

// An unreachable node found while the others build stops the run before
// anything changed anywhere: the builds are stopped, nothing activated.
func TestSchedulerUnreachableNodeStopsTheRun(t *testing.T) {
	nodes, log := fleetOf("a", "b", "c")
	nodes[1].dialed = StatusUnreachable
	build := fakeBuild{gates: map[string]chan struct{}{"a": gateUntil(log, "finish b unreachable")}}
	scheduler{parallel: 1}.run(context.Background(), asStageList(nodes), build.of(nodes))
	if got, want := statusesOf(nodes), "a=skipped b=unreachable c=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	for _, l := range log.all() {
		if strings.HasPrefix(l, "activate") || strings.HasPrefix(l, "copy") {
			t.Errorf("a node was copied or activated after another was found unreachable: %s", l)
		}
	}
}

// A node found unreachable after others were activated: they go back.
func TestSchedulerUnreachableNodeRevertsTheActivatedOnes(t *testing.T) {
	nodes, log := fleetOf("a:0", "b:1")
	nodes[1].dialed = StatusUnreachable
	nodes[1].hook("dial", waitFor(log, "finish a deployed"))
	runSched(context.Background(), scheduler{parallel: 2}, nodes)
	if got, want := statusesOf(nodes), "a=rolled-back b=unreachable"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if log.has("activate b") {
		t.Error("an unreachable node was activated")
	}
}

func TestSchedulerUnreachableNodeWithKeepGoing(t *testing.T) {
	nodes, _ := fleetOf("a", "b", "c")
	nodes[1].dialed = StatusUnreachable
	runSched(context.Background(), scheduler{parallel: 1, keepGoing: true}, nodes)
	if got, want := statusesOf(nodes), "a=deployed b=unreachable c=deployed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
}

// A node whose contact was lost for good after its activation began is
// uncertain: the run stops, the others go back, and the uncertain node is
// not "reverted" (nobody knows what it runs).
func TestSchedulerLostNodeIsUncertain(t *testing.T) {
	nodes, log := fleetOf("a", "b", "c")
	nodes[1].activated = StatusUncertain
	nodes[1].hook("activate", waitFor(log, "finish a deployed"))
	nodes[2].hook("copy", waitFor(log, "finish b uncertain"))
	runSched(context.Background(), scheduler{parallel: 3}, nodes)
	if got, want := statusesOf(nodes), "a=rolled-back b=uncertain c=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if log.has("revert b (node b failed)") {
		t.Error("the uncertain node was reverted")
	}
}

func TestSchedulerRevertFailureIsUncertain(t *testing.T) {
	nodes, log := fleetOf("a", "b")
	nodes[0].reverted = StatusUncertain
	nodes[1].activated = StatusFailed
	nodes[1].hook("activate", waitFor(log, "finish a deployed"))
	runSched(context.Background(), scheduler{parallel: 2}, nodes)
	if got, want := statusesOf(nodes), "a=uncertain b=failed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
}

// An interrupt mid-wave: the node being activated runs to its own end
// (unconfirmed, so rolled back), nothing new starts, and since a node of
// the run went back, the nodes already deployed go back too: the fleet is
// not left half on the new release.
func TestSchedulerInterruptMidWave(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes, log := fleetOf("a:0", "b:0", "c:0", "d:1")
	nodes[1].hook("activate", func(context.Context) {
		log.wait("finish a deployed")
		cancel()
	})
	nodes[1].interrupted = StatusRolledBack
	nodes[2].hook("copy", func(ctx context.Context) { <-ctx.Done() })
	runSched(ctx, scheduler{parallel: 4}, nodes)
	if got, want := statusesOf(nodes), "a=rolled-back b=rolled-back c=skipped d=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if got := nodes[2].lastErr(); !strings.HasPrefix(got, "not ") || !strings.HasSuffix(got, ": node b failed") && !strings.HasSuffix(got, ": interrupted") {
		t.Errorf("c's error %q", got)
	}
	if log.has("activate c") || log.has("activate d") {
		t.Errorf("work started after the interrupt:\n%s", log)
	}
}

// An interrupt while a node copies: it is not activated.
func TestSchedulerInterruptBeforeActivation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	nodes, log := fleetOf("a", "b")
	nodes[0].hook("copy", func(context.Context) { cancel() })
	nodes[1].hook("copy", func(ctx context.Context) { <-ctx.Done() })
	runSched(ctx, scheduler{parallel: 2}, nodes)
	if got, want := statusesOf(nodes), "a=skipped b=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if log.has("activate a") {
		t.Error("a node was activated after the interrupt")
	}
	if got := nodes[0].lastErr(); got != "not activated: interrupted" {
		t.Errorf("a's error %q", got)
	}
}

// A node failing while another copies: the other is skipped before it is
// activated, and nothing of it needs reverting.
func TestSchedulerFailureWhileAnotherCopies(t *testing.T) {
	nodes, log := fleetOf("a", "b")
	nodes[0].hook("copy", waitFor(log, "finish b rolled-back"))
	nodes[1].activated = StatusRolledBack
	nodes[1].hook("activate", waitFor(log, "copy a"))
	runSched(context.Background(), scheduler{parallel: 2}, nodes)
	if got, want := statusesOf(nodes), "a=skipped b=rolled-back"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if log.has("activate a") || log.has("revert a (node b failed)") {
		t.Errorf("a was activated or reverted:\n%s", log)
	}
	if got := nodes[0].lastErr(); got != "not activated: node b failed" {
		t.Errorf("a's error %q", got)
	}
}

// Dry activations and nodes that needed no activation are never reverted.
func TestSchedulerDoesNotRevertDryActivations(t *testing.T) {
	nodes, log := fleetOf("a", "b")
	nodes[0].activated = StatusDryActivated
	nodes[1].activated = StatusFailed
	nodes[1].hook("activate", waitFor(log, "finish a dry-activated"))
	runSched(context.Background(), scheduler{parallel: 2}, nodes)
	if got, want := statusesOf(nodes), "a=dry-activated b=failed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if log.has("revert a (node b failed)") {
		t.Error("a dry activation was reverted")
	}
}

// A node whose copy failed (a full disk, a lock held by another deploy)
// stops the run like any failure.
func TestSchedulerFailedCopyStopsTheRun(t *testing.T) {
	nodes, log := fleetOf("a", "b", "c")
	nodes[0].copied = StatusFailed
	nodes[1].hook("copy", waitFor(log, "finish a failed"))
	nodes[2].hook("copy", waitFor(log, "finish a failed"))
	runSched(context.Background(), scheduler{parallel: 3}, nodes)
	if got, want := statusesOf(nodes), "a=failed b=skipped c=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
}

// Skipped nodes are not failures: a run whose nodes were only skipped (by
// an interrupt) reverts nothing.
func TestSchedulerSkippedIsNotAFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	nodes, log := fleetOf("a", "b")
	runSched(ctx, scheduler{parallel: 1}, nodes)
	if got, want := statusesOf(nodes), "a=skipped b=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	for _, l := range log.all() {
		if !strings.HasPrefix(l, "finish") && !strings.HasPrefix(l, "build stopped") {
			t.Errorf("work after an interrupt before the start: %s", l)
		}
	}
}

func TestSchedulerRespectsParallel(t *testing.T) {
	nodes, _ := fleetOf("a", "b", "c", "d", "e", "f")
	var mu sync.Mutex
	running := map[string]int{}
	peak := map[string]int{}
	busy := func(stage string) func(context.Context) {
		return func(context.Context) {
			mu.Lock()
			running[stage]++
			peak[stage] = max(peak[stage], running[stage])
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			running[stage]--
			mu.Unlock()
		}
	}
	for _, n := range nodes {
		n.hook("dial", busy("work"))
		n.hook("copy", busy("work"))
		n.hook("activate", busy("activate"))
	}
	runSched(context.Background(), scheduler{parallel: 2}, nodes)
	if peak["activate"] != 2 || peak["work"] != 2 {
		t.Errorf("at most %d nodes activated and %d connected or copied at once, want 2 and 2", peak["activate"], peak["work"])
	}
}

func TestStatusMethods(t *testing.T) {
	for _, tc := range []struct {
		s                 Status
		ok, failed, known bool
	}{
		{StatusPending, false, false, true},
		{StatusDeployed, true, false, true},
		{StatusRebootRequired, true, false, true},
		{StatusDryActivated, true, false, true},
		{StatusRolledBack, false, true, true},
		{StatusFailed, false, true, true},
		{StatusUnreachable, false, true, true},
		{StatusUncertain, false, true, true},
		{StatusSkipped, false, false, true},
		{"exploded", false, true, false},
	} {
		if tc.s.OK() != tc.ok || tc.s.Failed() != tc.failed || tc.s.Known() != tc.known {
			t.Errorf("%s: OK %v Failed %v Known %v, want %v %v %v", tc.s, tc.s.OK(), tc.s.Failed(), tc.s.Known(), tc.ok, tc.failed, tc.known)
		}
	}
}
