package runner

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

const (
	bootBefore = "11111111-1111-1111-1111-111111111111"
	bootAfter  = "22222222-2222-2222-2222-222222222222"
)

// setBootID gives the fake machine a boot ID, as Linux does at each boot.
func (h *harness) setBootID(id string) {
	h.t.Helper()
	p := filepath.Join(h.root, "proc/sys/kernel/random/boot_id")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(id+"\n"), 0o444); err != nil {
		h.t.Fatal(err)
	}
}

// onOld is a machine of boot bootBefore that runs and booted old
// (generation 1), with new in the store (a wrapper-only profile when
// wrapper).
func onOld(t *testing.T, wrapper bool) (*harness, string, string) {
	t.Helper()
	h := newHarness(t)
	h.setBootID(bootBefore)
	old, newSys := h.oldAndNew(fakeSystem{}, wrapper)
	h.running(old)
	h.booted(old)
	return h, old, newSys
}

// reboot is the fake machine losing power and booting path: a new boot ID,
// a fresh /run with the booted system running, and no process left.
func (h *harness) reboot(path string) {
	h.t.Helper()
	h.setBootID(bootAfter)
	_ = os.Remove(filepath.Join(h.root, "run/current-system"))
	h.running(path)
	h.booted(path)
}

// crashed lays out what a runner that died leaves behind: its deploy dir
// with the request (the token taken out, as the runner does at once), the
// events it had written, and lock.json still naming it.
func (h *harness) crashed(req agent.Request, evs ...agent.Event) string {
	h.t.Helper()
	dir := h.prepare(req)
	if err := stripToken(dir); err != nil {
		h.t.Fatal(err)
	}
	log, err := openEventLog(filepath.Join(dir, eventsFile), h.clock.Now, testWriter{h.t})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range evs {
		log.emit(e)
	}
	log.close()
	info := agent.LockInfo{DeployID: req.DeployID, Who: req.Who, PID: 999999, BootID: bootBefore}
	if err := writeJSONAtomic(filepath.Join(h.r.StateDir, lockInfoFile), info); err != nil {
		h.t.Fatal(err)
	}
	return dir
}

// The journal of a two-phase deploy of new over old (generation 1), up to
// a point.
func (h *harness) twoPhaseLog(upTo agent.EventType) []agent.Event {
	old, newSys := filepath.Join(h.store, "old"), filepath.Join(h.store, "new")
	all := []agent.Event{
		{Type: agent.EventLocked, DeployID: "deploy-1", BootID: bootBefore},
		{Type: agent.EventPrevious, Path: old, Generation: 1, LastGeneration: 1, Running: old, TwoPhase: true},
		{Type: agent.EventActivating, Argv: []string{newSys + "/bin/switch-to-configuration", "test"}},
		{Type: agent.EventActivated},
		{Type: agent.EventAwaitingConfirmation, Timeout: agent.Duration(time.Minute)},
		{Type: agent.EventConfirmed},
		{Type: agent.EventCommitting, Path: newSys},
		{Type: agent.EventProfileSet, Generation: 2, Path: newSys, Created: true},
	}
	for i, e := range all {
		if e.Type == upTo {
			return all[:i+1]
		}
	}
	h.t.Fatalf("no event %s", upTo)
	return nil
}

func TestReconcile(t *testing.T) {
	// upTo is a dead runner's log of a two-phase deploy up to an event;
	// runningNew leaves the machine running new, as the runner did.
	upTo := func(e agent.EventType) func(*harness) []agent.Event {
		return func(h *harness) []agent.Event { return h.twoPhaseLog(e) }
	}
	runningNew := func(h *harness) { h.running(filepath.Join(h.store, "new")) }
	tests := []struct {
		name string
		// log is what the dead runner wrote; state puts the machine where
		// the runner left it before any reboot.
		log      func(h *harness) []agent.Event
		state    func(h *harness)
		rebooted bool // the machine rebooted (into old) since
		wrapper  bool // new is a wrapper-only (single-phase) profile

		want        []string // events appended to the dead deploy's log
		status      agent.Status
		activations []string
		gens        []int
		current     string
		bootDefault string
		running     string
		reason      string
	}{{
		name:     "power cut while waiting for the confirmation: the reboot rolled it back",
		log:      upTo(agent.EventAwaitingConfirmation),
		state:    runningNew,
		rebooted: true,
		want:     []string{"booted", "rolling-back", "rolled-back", "done"},
		status:   agent.StatusRolledBack, activations: nil, gens: []int{1}, current: "old", running: "old",
		reason: "rolled back by a reboot before confirmation",
	}, {
		name:     "power cut during the activation: the reboot rolled it back",
		log:      upTo(agent.EventActivating),
		state:    runningNew,
		rebooted: true,
		want:     []string{"booted", "rolling-back", "rolled-back", "done"},
		status:   agent.StatusRolledBack, activations: nil, gens: []int{1}, current: "old", running: "old",
		reason: "rolled back by a reboot before confirmation",
	}, {
		name:   "runner killed while waiting, no reboot: the previous system activated live",
		log:    upTo(agent.EventAwaitingConfirmation),
		state:  runningNew,
		want:   []string{"warning", "rolling-back", "activating", "rolled-back", "done"},
		status: agent.StatusRolledBack, activations: []string{"old test"}, gens: []int{1}, current: "old", running: "old",
		reason: "stopped before a confirmation",
	}, {
		name:     "power cut between the confirmation and the commit: the commit is finished",
		log:      upTo(agent.EventConfirmed),
		state:    runningNew,
		rebooted: true,
		want:     []string{"booted", "committing", "profile-set", "activating", "committed", "done"},
		status:   agent.StatusRebootRequired, activations: []string{"new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new", running: "old",
		reason: "the commit was finished, so the new system runs from the next boot",
	}, {
		name: "power cut during the commit, profile already set: the commit is finished, no second generation",
		log:  upTo(agent.EventProfileSet),
		state: func(h *harness) {
			h.running(filepath.Join(h.store, "new"))
			h.installed(filepath.Join(h.store, "new"))
		},
		rebooted: true,
		want:     []string{"booted", "committing", "profile-set", "activating", "committed", "done"},
		status:   agent.StatusRebootRequired, activations: []string{"new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new", running: "old",
	}, {
		name:   "runner killed during the commit, no reboot: the commit is finished and runs",
		log:    upTo(agent.EventCommitting),
		state:  runningNew,
		want:   []string{"warning", "committing", "profile-set", "activating", "committed", "done"},
		status: agent.StatusDeployed, activations: []string{"new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new", running: "new",
	}, {
		name: "power cut during the rollback: the reboot finished it",
		log: func(h *harness) []agent.Event {
			return append(h.twoPhaseLog(agent.EventAwaitingConfirmation),
				agent.Event{Type: agent.EventRollingBack, Reason: "no confirmation within 1m0s", To: filepath.Join(h.store, "old")})
		},
		state:    runningNew,
		rebooted: true,
		want:     []string{"booted", "rolling-back", "rolled-back", "done"},
		status:   agent.StatusRolledBack, activations: nil, gens: []int{1}, current: "old", running: "old",
		reason: "no confirmation within 1m0s",
	}, {
		name:    "single phase, power cut while waiting: profile put back and the previous system activated",
		wrapper: true,
		log: func(h *harness) []agent.Event {
			old, newSys := filepath.Join(h.store, "old"), filepath.Join(h.store, "new")
			return []agent.Event{
				{Type: agent.EventLocked, DeployID: "deploy-1", BootID: bootBefore},
				{Type: agent.EventPrevious, Path: old, Generation: 1, LastGeneration: 1, Running: old},
				{Type: agent.EventProfileSet, Generation: 2, Path: newSys, Created: true},
				{Type: agent.EventActivating, Argv: []string{h.profile + "/" + WrapperName}},
				{Type: agent.EventActivated},
				{Type: agent.EventAwaitingConfirmation, Timeout: agent.Duration(time.Minute)},
			}
		},
		state: func(h *harness) {
			h.installed(filepath.Join(h.store, "new"))
			h.running(filepath.Join(h.store, "new"))
		},
		rebooted: true,
		want:     []string{"booted", "rolling-back", "activating", "rolled-back", "done"},
		status:   agent.StatusRolledBack, activations: []string{"old switch"}, gens: []int{1}, current: "old", bootDefault: "old", running: "old",
		reason: "rolled back by a reboot before confirmation",
	}, {
		name: "the runner died before it recorded anything: nothing changed",
		log: func(h *harness) []agent.Event {
			return []agent.Event{{Type: agent.EventLocked, DeployID: "deploy-1", BootID: bootBefore}}
		},
		rebooted: true,
		want:     []string{"booted", "done"},
		status:   agent.StatusFailed, activations: nil, gens: []int{1}, current: "old", running: "old",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, old, newSys := onOld(t, tc.wrapper)
			evs := tc.log(h)
			dir := h.crashed(h.request("deploy-1", newSys), evs...)
			_ = os.Remove(filepath.Join(h.root, "run/current-system"))
			if tc.state != nil {
				tc.state(h)
			} else {
				h.running(old)
			}
			if tc.rebooted {
				h.reboot(old)
			}
			h.m.nixCalls = nil

			res, err := h.r.Reconcile(context.Background(), "")
			if err != nil || res == nil {
				t.Fatalf("Reconcile = %+v, %v", res, err)
			}
			all := readEvents(t, dir)
			if got := agent.Steps(all[len(evs):]); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("events appended:\n got %q\nwant %q", got, tc.want)
			}
			done := all[len(all)-1]
			if res.Status != tc.status || done.Status != tc.status || done.Result == nil || !done.Result.Reconciled || done.Result.Rebooted != tc.rebooted {
				t.Errorf("result %s (reason %q, error %q), done %+v; want %s, reconciled, rebooted %v", res.Status, res.Reason, res.Error, done, tc.status, tc.rebooted)
			}
			if !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason %q, want it to mention %q", res.Reason, tc.reason)
			}
			h.checkMachine(t, tc.activations, tc.gens, tc.current, tc.bootDefault)
			if filepath.Base(res.Running) != tc.running {
				t.Errorf("result says it runs %q, want %s", res.Running, tc.running)
			}
			if last := h.last(); last.DeployID != "deploy-1" || last.Status != tc.status {
				t.Errorf("last.json = %+v", last)
			}
			h.checkNoSecretsLeft(dir)

			// Ended once: nothing is left to end.
			if res, err := h.r.Reconcile(context.Background(), ""); res != nil || err != nil {
				t.Errorf("second Reconcile = %+v, %v", res, err)
			}
		})
	}
}

// A deploy that finds an earlier one unfinished ends it first, says so in
// its own log, and deploys from the state that holds afterwards.
func TestRunEndsAnUnfinishedDeployFirst(t *testing.T) {
	h, old, newSys := onOld(t, false)
	stale := h.crashed(h.request("deploy-1", newSys), h.twoPhaseLog(agent.EventAwaitingConfirmation)...)
	h.reboot(old)

	res := h.runConfirmed(h.request("deploy-2", newSys))
	if res.Status != agent.StatusDeployed || res.Previous != old || res.Generation != 2 {
		t.Fatalf("second deploy: %s (previous %s, generation %d) %s %s", res.Status, res.Previous, res.Generation, res.Reason, res.Error)
	}
	evs := readEvents(t, h.r.DeployDir("deploy-2"))
	rec, ok := findEvent(evs, agent.EventReconciled)
	if !ok || rec.DeployID != "deploy-1" || rec.Status != agent.StatusRolledBack || !strings.Contains(rec.Reason, "reboot before confirmation") {
		t.Errorf("reconciled event = %+v", rec)
	}
	if got := agent.Steps(evs)[:3]; !reflect.DeepEqual(got, []string{"locked", "reconciled", "previous"}) {
		t.Errorf("second deploy's first events %q", got)
	}
	if done := readEvents(t, stale); done[len(done)-1].Type != agent.EventDone || done[len(done)-1].Status != agent.StatusRolledBack {
		t.Errorf("the unfinished deploy's log does not end in done rolled-back: %+v", done[len(done)-1])
	}
}

// follow and status find a deploy whose runner died and start a runner
// (reconcile) that ends it; follow then streams its end. Their waits for
// that runner end by the file watch alone and by polling alone (waitModes).
func TestFollowAndStatusTakeUpAnUnfinishedDeploy(t *testing.T) {
	for _, mode := range waitModes {
		for _, via := range []string{"follow", "status"} {
			t.Run(mode.name+"/"+via, func(t *testing.T) {
				h := newHarness(t)
				mode.setup(t, h.r)
				ctx := waitCtx(t)
				h.setBootID(bootBefore)
				old, newSys := h.oldAndNew(fakeSystem{}, false)
				h.booted(old)
				dir := h.crashed(h.request("deploy-1", newSys), h.twoPhaseLog(agent.EventAwaitingConfirmation)...)
				h.reboot(old)

				var launched []string
				var runner sync.WaitGroup
				h.r.Spawn = func(_ context.Context, argv, _ []string, _ string) error {
					launched = argv
					runner.Go(func() {
						d := ""
						if argv[2] == "--dir" {
							d = argv[3]
						}
						if _, err := h.r.Reconcile(ctx, d); err != nil {
							t.Errorf("Reconcile: %v", err)
						}
					})
					return nil
				}
				switch via {
				case "follow":
					var out bytes.Buffer
					if err := h.r.Follow(ctx, dir, 0, &out); err != nil {
						t.Fatalf("Follow: %v", err)
					}
					if !strings.Contains(out.String(), `"type":"done"`) || !strings.Contains(out.String(), "reboot before confirmation") {
						t.Errorf("follow printed %s", out.String())
					}
					if want := []string{"/fake/tether-agent", "reconcile", "--dir", dir}; !reflect.DeepEqual(launched, want) {
						t.Errorf("launched %q, want %q", launched, want)
					}
				case "status":
					rep, err := h.r.Status(ctx, h.profile)
					if err != nil {
						t.Fatal(err)
					}
					if rep.Last == nil || rep.Last.DeployID != "deploy-1" || rep.Last.Status != agent.StatusRolledBack || !rep.Last.Rebooted {
						t.Errorf("status last = %+v", rep.Last)
					}
					if rep.BootID != bootAfter || rep.InProgress != nil || rep.Warning != "" {
						t.Errorf("status = %+v", rep)
					}
				}
				runner.Wait()
				if ctx.Err() != nil {
					t.Error("a wait ended only with the test's context")
				}
			})
		}
	}
}

// A confirmation checks the token's hash; a wall clock an hour off either
// way changes nothing, since the wait is measured on the monotonic clock
// and announced as a duration.
func TestConfirmationIgnoresTheWallClock(t *testing.T) {
	for _, skew := range []time.Duration{time.Hour, -time.Hour} {
		h := newHarness(t)
		h.clock.now = time.Now().Add(skew)
		old, newSys := h.oldAndNew(fakeSystem{}, false)
		h.running(old)
		res := h.runConfirmed(h.request("deploy-1", newSys))
		if res.Status != agent.StatusDeployed {
			t.Errorf("skew %s: %s %s", skew, res.Status, res.Reason)
		}
		a, _ := findEvent(readEvents(t, h.r.DeployDir("deploy-1")), agent.EventAwaitingConfirmation)
		b, _ := os.ReadFile(filepath.Join(h.r.DeployDir("deploy-1"), eventsFile))
		if a.Timeout.D() != agent.DefaultConfirmTimeout || strings.Contains(string(b), `"deadline"`) {
			t.Errorf("skew %s: awaiting-confirmation %+v; want the wait as a duration only", skew, a)
		}
	}
}
