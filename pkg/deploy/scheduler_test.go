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
// stage it was asked to run, in one log shared by the fleet, so a test can
// assert the order across nodes.
type fakeNode struct {
	n    string
	w    int
	log  *stageLog
	st   Status
	errs []string

	// prepared and activated are the outcomes of those stages; "" means
	// success (StatusPending after prepare, StatusDeployed after activate).
	prepared  Status
	activated Status
	// reverted is the outcome of a revert; "" means StatusRolledBack.
	reverted Status
	// during, when set, runs inside activate before it returns (an
	// interrupt arriving mid-activation, a second node finishing first).
	during func(ctx context.Context)
	// activation is honoured like a real activation: cancelling ctx does
	// not cut it short, it ends on its own and is not confirmed.
	interrupted Status
	did         bool
}

type stageLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *stageLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
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

func (f *fakeNode) name() string   { return f.n }
func (f *fakeNode) wave() int      { return f.w }
func (f *fakeNode) status() Status { return f.st }
func (f *fakeNode) changed() bool  { return f.did }

func (f *fakeNode) prepare(ctx context.Context) (Status, error) {
	f.log.add("prepare %s", f.n)
	if f.prepared == "" {
		return StatusPending, nil
	}
	return f.prepared, fmt.Errorf("%s: %s", f.n, f.prepared)
}

func (f *fakeNode) activate(ctx context.Context) (Status, error) {
	f.log.add("activate %s", f.n)
	if f.during != nil {
		f.during(ctx)
	}
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
	f.st = s
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	f.errs = append(f.errs, msg)
	f.log.add("finish %s %s", f.n, s)
}

// lastErr is the error the node's outcome was recorded with.
func (f *fakeNode) lastErr() string {
	if len(f.errs) == 0 {
		return ""
	}
	return f.errs[len(f.errs)-1]
}

// fleetOf makes fake nodes "name:wave" sharing one log.
func fleetOf(specs ...string) ([]*fakeNode, *stageLog) {
	log := &stageLog{}
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
		parts = append(parts, n.n+"="+string(n.st))
	}
	return strings.Join(parts, " ")
}

// runSched runs the scheduler one node at a time (so the order is the
// test's to assert), with build marking the named nodes' builds failed.
func runSched(ctx context.Context, s scheduler, nodes []*fakeNode, buildFails ...string) {
	build := func(context.Context) {
		for _, n := range nodes {
			if slices.Contains(buildFails, n.n) {
				n.finish(StatusFailed, errors.New("build: exit 1"))
			}
		}
	}
	s.run(ctx, asStageList(nodes), build)
}

func TestSchedulerAllDeployed(t *testing.T) {
	nodes, log := fleetOf("a", "b", "c")
	runSched(context.Background(), scheduler{parallel: 1}, nodes)
	if got, want := statusesOf(nodes), "a=deployed b=deployed c=deployed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	want := []string{"prepare a", "activate a", "finish a deployed", "prepare b", "activate b", "finish b deployed",
		"prepare c", "activate c", "finish c deployed"}
	if got := log.all(); !slices.Equal(got, want) {
		t.Errorf("stages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The case: b fails in wave 0, so a (deployed in the same wave) is
// rolled back and c (wave 1) never starts.
func TestSchedulerFailureInWaveRollsBackAndSkips(t *testing.T) {
	nodes, log := fleetOf("a:0", "b:0", "c:1")
	nodes[1].activated = StatusRolledBack
	runSched(context.Background(), scheduler{parallel: 1}, nodes)
	if got, want := statusesOf(nodes), "a=rolled-back b=rolled-back c=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if !log.has("revert a (node b failed)") {
		t.Errorf("a was not reverted:\n%s", strings.Join(log.all(), "\n"))
	}
	if log.has("prepare c") || log.has("revert b (node b failed)") {
		t.Errorf("c was started, or b reverted by the scheduler:\n%s", strings.Join(log.all(), "\n"))
	}
	if got := nodes[2].lastErr(); got != "not started: node b failed" {
		t.Errorf("c's error %q", got)
	}
}

func TestSchedulerWavesRunInOrder(t *testing.T) {
	nodes, log := fleetOf("late:2", "early:0", "mid:1", "early2:0")
	runSched(context.Background(), scheduler{parallel: 4}, nodes)
	idx := func(line string) int { return slices.Index(log.all(), line) }
	for _, pair := range [][2]string{{"early", "mid"}, {"early2", "mid"}, {"mid", "late"}} {
		if idx("finish "+pair[0]+" deployed") > idx("prepare "+pair[1]) {
			t.Errorf("%s started before %s ended:\n%s", pair[1], pair[0], strings.Join(log.all(), "\n"))
		}
	}
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
		if strings.HasPrefix(l, "prepare") || strings.HasPrefix(l, "activate") {
			t.Errorf("a node was touched after a build failed: %s", l)
		}
	}
	if got := nodes[0].lastErr(); got != "not started: a build failed" {
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

func TestSchedulerUnreachableNodeStopsTheRun(t *testing.T) {
	nodes, log := fleetOf("a", "b", "c")
	nodes[1].prepared = StatusUnreachable
	runSched(context.Background(), scheduler{parallel: 1}, nodes)
	if got, want := statusesOf(nodes), "a=rolled-back b=unreachable c=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if log.has("activate b") {
		t.Error("an unreachable node was activated")
	}
}

func TestSchedulerUnreachableNodeWithKeepGoing(t *testing.T) {
	nodes, _ := fleetOf("a", "b", "c")
	nodes[1].prepared = StatusUnreachable
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
	runSched(context.Background(), scheduler{parallel: 1}, nodes)
	if got, want := statusesOf(nodes), "a=rolled-back b=uncertain c=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if log.has("revert b (node b failed)") {
		t.Error("the uncertain node was reverted")
	}
}

func TestSchedulerRevertFailureIsUncertain(t *testing.T) {
	nodes, _ := fleetOf("a", "b")
	nodes[0].reverted = StatusUncertain
	nodes[1].activated = StatusFailed
	runSched(context.Background(), scheduler{parallel: 1}, nodes)
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
	nodes[1].during = func(context.Context) { cancel() }
	nodes[1].interrupted = StatusRolledBack
	runSched(ctx, scheduler{parallel: 1, keepGoing: false}, nodes)
	if got, want := statusesOf(nodes), "a=rolled-back b=rolled-back c=skipped d=skipped"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if got := nodes[2].lastErr(); got != "not started: node b failed" && got != "not started: interrupted" {
		t.Errorf("c's error %q", got)
	}
	if log.has("prepare c") || log.has("prepare d") {
		t.Errorf("work started after the interrupt:\n%s", strings.Join(log.all(), "\n"))
	}
}

// An interrupt while a node copies: it is not activated.
func TestSchedulerInterruptBeforeActivation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	nodes, log := fleetOf("a", "b")
	p := &interruptingPrepare{fakeNode: nodes[0], cancel: cancel}
	s := scheduler{parallel: 1}
	s.run(ctx, []stages{p, nodes[1]}, nil)
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

type interruptingPrepare struct {
	*fakeNode
	cancel func()
}

func (p *interruptingPrepare) prepare(ctx context.Context) (Status, error) {
	st, err := p.fakeNode.prepare(ctx)
	p.cancel()
	return st, err
}

// A node failing while another copies: the other is skipped before it is
// activated, and nothing of it needs reverting.
func TestSchedulerFailureWhileAnotherCopies(t *testing.T) {
	nodes, log := fleetOf("a", "b")
	copying := make(chan struct{})
	failed := make(chan struct{})
	slow := &blockingPrepare{fakeNode: nodes[0], started: copying, release: failed}
	nodes[1].activated = StatusRolledBack
	nodes[1].during = func(context.Context) { <-copying }
	go func() {
		for !nodes[1].log.has("finish b rolled-back") {
			time.Sleep(time.Millisecond)
		}
		close(failed)
	}()
	scheduler{parallel: 2}.run(context.Background(), []stages{slow, nodes[1]}, nil)
	if got, want := statusesOf(nodes), "a=skipped b=rolled-back"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if log.has("activate a") || log.has("revert a (node b failed)") {
		t.Errorf("a was activated or reverted:\n%s", strings.Join(log.all(), "\n"))
	}
	if got := nodes[0].lastErr(); got != "not activated: node b failed" {
		t.Errorf("a's error %q", got)
	}
}

type blockingPrepare struct {
	*fakeNode
	started chan struct{}
	release chan struct{}
}

func (p *blockingPrepare) prepare(ctx context.Context) (Status, error) {
	close(p.started)
	<-p.release
	return p.fakeNode.prepare(ctx)
}

// Dry activations and nodes that needed no activation are never reverted.
func TestSchedulerDoesNotRevertDryActivations(t *testing.T) {
	nodes, log := fleetOf("a", "b")
	nodes[0].activated = StatusDryActivated
	nodes[1].activated = StatusFailed
	runSched(context.Background(), scheduler{parallel: 1}, nodes)
	if got, want := statusesOf(nodes), "a=dry-activated b=failed"; got != want {
		t.Errorf("statuses %s, want %s", got, want)
	}
	if log.has("revert a (node b failed)") {
		t.Error("a dry activation was reverted")
	}
}

// A node that failed to start (lock held by another deploy) stops the run
// like any failure.
func TestSchedulerFailedPrepareStopsTheRun(t *testing.T) {
	nodes, _ := fleetOf("a", "b", "c")
	nodes[0].prepared = StatusFailed
	runSched(context.Background(), scheduler{parallel: 1}, nodes)
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
		if !strings.HasPrefix(l, "finish") {
			t.Errorf("work after an interrupt before the start: %s", l)
		}
	}
}

func TestSchedulerRespectsParallel(t *testing.T) {
	nodes, _ := fleetOf("a", "b", "c", "d", "e", "f")
	var mu sync.Mutex
	running, peak := 0, 0
	for _, n := range nodes {
		n.during = func(context.Context) {
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			running--
			mu.Unlock()
		}
	}
	runSched(context.Background(), scheduler{parallel: 2}, nodes)
	if peak != 2 {
		t.Errorf("at most %d nodes activated at once, want 2", peak)
	}
}

func TestByWaveKeepsOrderWithinAWave(t *testing.T) {
	nodes, _ := fleetOf("z:1", "a:0", "y:1", "b:0", "q:3")
	var got []string
	for _, w := range byWave(asStageList(nodes)) {
		var names []string
		for _, n := range w {
			names = append(names, n.name())
		}
		got = append(got, strings.Join(names, ","))
	}
	if want := []string{"a,b", "z,y", "q"}; !slices.Equal(got, want) {
		t.Errorf("waves %q, want %q", got, want)
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
