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

// before asserts that line a comes before line b in the log, both there.
func before(t *testing.T, log *stageLog, a, b string) {
	t.Helper()
	ia, ib := log.index(a), log.index(b)
	if ia < 0 || ib < 0 || ia > ib {
		t.Errorf("want %q before %q:\n%s", a, b, log)
	}
}

// schedCase is one run of the scheduler over fake nodes ("name:wave").
// outcomes scripts stages that do not succeed, by "stage node" ("dial b",
// "copy a", "activate b", "revert a", "interrupted b": the outcome of an
// activation that saw the interrupt); waits makes a stage, by "stage
// node", wait for a line of the log before it returns. build is the build
// (nil: every node built in order, those in fails failing); setup does
// what the fields cannot, and may cancel the run's context. want is the
// statuses the nodes end with ("" for not checked), check what else the
// case asserts.
type schedCase struct {
	name     string
	nodes    []string
	sched    scheduler
	outcomes map[string]Status
	waits    map[string]string
	fails    []string
	build    func(log *stageLog) fakeBuild
	setup    func(nodes []*fakeNode, log *stageLog, cancel context.CancelFunc)
	want     string
	check    func(t *testing.T, nodes []*fakeNode, log *stageLog)
}

func (tc schedCase) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes, log := fleetOf(tc.nodes...)
	for _, n := range nodes {
		for stage, st := range map[string]*Status{"dial": &n.dialed, "copy": &n.copied, "activate": &n.activated, "revert": &n.reverted, "interrupted": &n.interrupted} {
			*st = tc.outcomes[stage+" "+n.n]
		}
		for _, stage := range []string{"dial", "copy", "activate"} {
			if line, ok := tc.waits[stage+" "+n.n]; ok {
				n.hook(stage, waitFor(log, line))
			}
		}
	}
	build := fakeBuild{fails: tc.fails}
	if tc.build != nil {
		build = tc.build(log)
	}
	if tc.setup != nil {
		tc.setup(nodes, log, cancel)
	}
	tc.sched.run(ctx, asStageList(nodes), build.of(nodes))
	if got := statusesOf(nodes); tc.want != "" && got != tc.want {
		t.Errorf("statuses %s, want %s", got, tc.want)
	}
	if tc.check != nil {
		tc.check(t, nodes, log)
	}
}

// gated is a build that reports node only once the lines are in the log.
func gated(log *stageLog, node string, lines ...string) fakeBuild {
	return fakeBuild{gates: map[string]chan struct{}{node: gateUntil(log, lines...)}}
}

// noLine asserts that no line of the log starts with one of prefixes.
func noLine(t *testing.T, log *stageLog, what string, prefixes ...string) {
	t.Helper()
	for _, l := range log.all() {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				t.Errorf("%s: %s", what, l)
			}
		}
	}
}

// lastErrIs asserts node i's error; a want ending in "…" is a prefix, one
// starting with "…" a suffix, one with "…" inside both.
func lastErrIs(t *testing.T, nodes []*fakeNode, i int, want string) {
	t.Helper()
	got := nodes[i].lastErr()
	head, tail, cut := strings.Cut(want, "…")
	if !cut && got != want || cut && (!strings.HasPrefix(got, head) || !strings.HasSuffix(got, tail)) {
		t.Errorf("%s's error %q", nodes[i].n, got)
	}
}

func TestScheduler(t *testing.T) {
	for _, tc := range []schedCase{{
		name: "all deployed", nodes: []string{"a", "b", "c"}, sched: scheduler{parallel: 1},
		want: "a=deployed b=deployed c=deployed",
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) {
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
		},
	}, {
		// The point of building and copying at once: a node whose build
		// ended is connected to and copied while another node's build
		// still runs.
		name: "copies while others build", nodes: []string{"a", "b"}, sched: scheduler{parallel: 4},
		build: func(log *stageLog) fakeBuild { return gated(log, "b", "copy a", "dial b") },
		want:  "a=deployed b=deployed",
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) {
			before(t, log, "copy a", "built b")
			// Connecting does not wait for the build: b's build waits for it.
			if log.has("timed out waiting for dial b") {
				t.Errorf("b was not connected to before its build ended:\n%s", log)
			}
		},
	}, {
		// Without keep-going, no node is activated before every build has
		// ended: a late build failure must find every node as it was.
		name: "no activation before every build ended", nodes: []string{"a", "b"}, sched: scheduler{parallel: 4},
		build: func(log *stageLog) fakeBuild { return gated(log, "b", "copy a") },
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) { before(t, log, "built b", "activate a") },
	}, {
		// With keep-going a node's build failing later changes nothing for
		// the others, so a node activates as soon as it is copied.
		name: "keep-going activates before other builds end", nodes: []string{"a", "b"}, sched: scheduler{parallel: 4, keepGoing: true},
		build: func(log *stageLog) fakeBuild { return gated(log, "b", "finish a deployed") },
		want:  "a=deployed b=deployed",
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) { before(t, log, "finish a deployed", "built b") },
	}, {
		// A build failing after another node was copied: the copied node
		// is skipped, before anything on it changed.
		name: "late build failure skips copied nodes", nodes: []string{"a", "b"}, sched: scheduler{parallel: 4},
		build: func(log *stageLog) fakeBuild {
			b := gated(log, "b", "copy a")
			b.fails = []string{"b"}
			return b
		},
		want: "a=skipped b=failed",
		check: func(t *testing.T, nodes []*fakeNode, log *stageLog) {
			if !log.has("copy a") || log.has("activate a") || log.has("revert a (node b failed to build)") {
				t.Errorf("a was not copied, or was activated:\n%s", log)
			}
			lastErrIs(t, nodes, 0, "not activated: node b failed to build")
			lastErrIs(t, nodes, 1, "build: exit 1")
		},
	}, {
		// A failed build stops the builds still running: their nodes are
		// skipped.
		name: "build failure stops the other builds", nodes: []string{"a", "b", "c"}, sched: scheduler{parallel: 4},
		build: func(*stageLog) fakeBuild {
			return fakeBuild{order: []string{"b", "c", "a"}, fails: []string{"b"}, gates: map[string]chan struct{}{"c": make(chan struct{})}}
		},
		want: "a=skipped b=failed c=skipped",
		check: func(t *testing.T, nodes []*fakeNode, log *stageLog) {
			if !log.has("build stopped before c") {
				t.Errorf("the other builds were not stopped:\n%s", log)
			}
			lastErrIs(t, nodes, 2, "not …: node b failed to build")
		},
	}, {
		// The case: b fails in wave 0, so a (deployed in the same
		// wave) is rolled back and c (wave 1) is never activated.
		name: "failure in a wave rolls back and skips", nodes: []string{"a:0", "b:0", "c:1"}, sched: scheduler{parallel: 2},
		outcomes: map[string]Status{"activate b": StatusRolledBack},
		waits:    map[string]string{"activate b": "finish a deployed"},
		want:     "a=rolled-back b=rolled-back c=skipped",
		check: func(t *testing.T, nodes []*fakeNode, log *stageLog) {
			if !log.has("revert a (node b failed)") {
				t.Errorf("a was not reverted:\n%s", log)
			}
			if log.has("activate c") || log.has("revert b (node b failed)") {
				t.Errorf("c was activated, or b reverted by the scheduler:\n%s", log)
			}
			lastErrIs(t, nodes, 2, "not …: node b failed")
		},
	}, {
		// Waves order activations; copies run ahead of them.
		name: "waves order activations", nodes: []string{"late:2", "early:0", "mid:1", "early2:0"}, sched: scheduler{parallel: 4},
		waits: map[string]string{"activate early": "copy late"},
		want:  "late=deployed early=deployed mid=deployed early2=deployed",
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) {
			for _, pair := range [][2]string{{"early", "mid"}, {"early2", "mid"}, {"mid", "late"}} {
				before(t, log, "finish "+pair[0]+" deployed", "activate "+pair[1])
			}
			before(t, log, "copy late", "finish early deployed")
		},
	}, {
		name: "keep-going", nodes: []string{"a:0", "b:0", "c:1"}, sched: scheduler{parallel: 1, keepGoing: true},
		outcomes: map[string]Status{"activate b": StatusRolledBack},
		want:     "a=deployed b=rolled-back c=deployed",
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) {
			noLine(t, log, "keep-going reverted a node", "revert")
		},
	}, {
		name: "build failure skips every node", nodes: []string{"a", "b", "c"}, sched: scheduler{parallel: 2},
		fails: []string{"b"},
		want:  "a=skipped b=failed c=skipped",
		check: func(t *testing.T, nodes []*fakeNode, log *stageLog) {
			noLine(t, log, "a node was activated, or the failed build copied", "activate", "copy b")
			lastErrIs(t, nodes, 0, "…: node b failed to build")
		},
	}, {
		name: "build failure with keep-going", nodes: []string{"a", "b", "c"}, sched: scheduler{parallel: 2, keepGoing: true},
		fails: []string{"b"},
		want:  "a=deployed b=failed c=deployed",
	}, {
		// An unreachable node found while the others build stops the run
		// before anything changed anywhere: the builds are stopped,
		// nothing activated.
		name: "unreachable node stops the run", nodes: []string{"a", "b", "c"}, sched: scheduler{parallel: 1},
		outcomes: map[string]Status{"dial b": StatusUnreachable},
		build:    func(log *stageLog) fakeBuild { return gated(log, "a", "finish b unreachable") },
		want:     "a=skipped b=unreachable c=skipped",
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) {
			noLine(t, log, "a node was copied or activated after another was found unreachable", "activate", "copy")
		},
	}, {
		// A node found unreachable after others were activated: they go
		// back.
		name: "unreachable node reverts the activated ones", nodes: []string{"a:0", "b:1"}, sched: scheduler{parallel: 2},
		outcomes: map[string]Status{"dial b": StatusUnreachable},
		waits:    map[string]string{"dial b": "finish a deployed"},
		want:     "a=rolled-back b=unreachable",
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) {
			if log.has("activate b") {
				t.Error("an unreachable node was activated")
			}
		},
	}, {
		name: "unreachable node with keep-going", nodes: []string{"a", "b", "c"}, sched: scheduler{parallel: 1, keepGoing: true},
		outcomes: map[string]Status{"dial b": StatusUnreachable},
		want:     "a=deployed b=unreachable c=deployed",
	}, {
		// A node whose contact was lost for good after its activation
		// began is uncertain: the run stops, the others go back, and the
		// uncertain node is not "reverted" (nobody knows what it runs).
		name: "lost node is uncertain", nodes: []string{"a", "b", "c"}, sched: scheduler{parallel: 3},
		outcomes: map[string]Status{"activate b": StatusUncertain},
		waits:    map[string]string{"activate b": "finish a deployed", "copy c": "finish b uncertain"},
		want:     "a=rolled-back b=uncertain c=skipped",
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) {
			if log.has("revert b (node b failed)") {
				t.Error("the uncertain node was reverted")
			}
		},
	}, {
		name: "revert failure is uncertain", nodes: []string{"a", "b"}, sched: scheduler{parallel: 2},
		outcomes: map[string]Status{"revert a": StatusUncertain, "activate b": StatusFailed},
		waits:    map[string]string{"activate b": "finish a deployed"},
		want:     "a=uncertain b=failed",
	}, {
		// An interrupt mid-wave: the node being activated runs to its own
		// end (unconfirmed, so rolled back), nothing new starts, and since
		// a node of the run went back, the nodes already deployed go back
		// too: the fleet is not left half on the new release.
		name: "interrupt mid-wave", nodes: []string{"a:0", "b:0", "c:0", "d:1"}, sched: scheduler{parallel: 4},
		outcomes: map[string]Status{"interrupted b": StatusRolledBack},
		setup: func(nodes []*fakeNode, log *stageLog, cancel context.CancelFunc) {
			nodes[1].hook("activate", func(context.Context) {
				log.wait("finish a deployed")
				cancel()
			})
			nodes[2].hook("copy", func(ctx context.Context) { <-ctx.Done() })
		},
		want: "a=rolled-back b=rolled-back c=skipped d=skipped",
		check: func(t *testing.T, nodes []*fakeNode, log *stageLog) {
			if got := nodes[2].lastErr(); !strings.HasPrefix(got, "not ") || !strings.HasSuffix(got, ": node b failed") && !strings.HasSuffix(got, ": interrupted") {
				t.Errorf("c's error %q", got)
			}
			if log.has("activate c") || log.has("activate d") {
				t.Errorf("work started after the interrupt:\n%s", log)
			}
		},
	}, {
		// An interrupt while a node copies: it is not activated.
		name: "interrupt before activation", nodes: []string{"a", "b"}, sched: scheduler{parallel: 2},
		setup: func(nodes []*fakeNode, _ *stageLog, cancel context.CancelFunc) {
			nodes[0].hook("copy", func(context.Context) { cancel() })
			nodes[1].hook("copy", func(ctx context.Context) { <-ctx.Done() })
		},
		want: "a=skipped b=skipped",
		check: func(t *testing.T, nodes []*fakeNode, log *stageLog) {
			if log.has("activate a") {
				t.Error("a node was activated after the interrupt")
			}
			lastErrIs(t, nodes, 0, "not activated: interrupted")
		},
	}, {
		// A node failing while another copies: the other is skipped
		// before it is activated, and nothing of it needs reverting.
		name: "failure while another copies", nodes: []string{"a", "b"}, sched: scheduler{parallel: 2},
		outcomes: map[string]Status{"activate b": StatusRolledBack},
		waits:    map[string]string{"copy a": "finish b rolled-back", "activate b": "copy a"},
		want:     "a=skipped b=rolled-back",
		check: func(t *testing.T, nodes []*fakeNode, log *stageLog) {
			if log.has("activate a") || log.has("revert a (node b failed)") {
				t.Errorf("a was activated or reverted:\n%s", log)
			}
			lastErrIs(t, nodes, 0, "not activated: node b failed")
		},
	}, {
		// Dry activations and nodes that needed no activation are never
		// reverted.
		name: "dry activations are not reverted", nodes: []string{"a", "b"}, sched: scheduler{parallel: 2},
		outcomes: map[string]Status{"activate a": StatusDryActivated, "activate b": StatusFailed},
		waits:    map[string]string{"activate b": "finish a dry-activated"},
		want:     "a=dry-activated b=failed",
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) {
			if log.has("revert a (node b failed)") {
				t.Error("a dry activation was reverted")
			}
		},
	}, {
		// A node whose copy failed (a full disk, a lock held by another
		// deploy) stops the run like any failure.
		name: "failed copy stops the run", nodes: []string{"a", "b", "c"}, sched: scheduler{parallel: 3},
		outcomes: map[string]Status{"copy a": StatusFailed},
		waits:    map[string]string{"copy b": "finish a failed", "copy c": "finish a failed"},
		want:     "a=failed b=skipped c=skipped",
	}, {
		// Skipped nodes are not failures: a run whose nodes were only
		// skipped (by an interrupt) reverts nothing.
		name: "skipped is not a failure", nodes: []string{"a", "b"}, sched: scheduler{parallel: 1},
		setup: func(_ []*fakeNode, _ *stageLog, cancel context.CancelFunc) { cancel() },
		want:  "a=skipped b=skipped",
		check: func(t *testing.T, _ []*fakeNode, log *stageLog) {
			for _, l := range log.all() {
				if !strings.HasPrefix(l, "finish") && !strings.HasPrefix(l, "build stopped") {
					t.Errorf("work after an interrupt before the start: %s", l)
				}
			}
		},
	}} {
		t.Run(tc.name, tc.run)
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
	scheduler{parallel: 2}.run(context.Background(), asStageList(nodes), fakeBuild{}.of(nodes))
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
