package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

var (
	// A NixOS system (bin/switch-to-configuration) deploys in two phases:
	// live first, committed (profile, boot default) once confirmed.
	evSuccess   = []string{"locked", "previous", "activating", "activated", "awaiting-confirmation", "confirmed", "committing", "profile-set", "activating", "committed", "done"}
	evNoConfirm = []string{"locked", "previous", "activating", "activated", "awaiting-confirmation", "rolling-back", "activating", "rolled-back", "done"}
	evFailed    = []string{"locked", "previous", "activating", "activation-failed", "rolling-back", "activating", "rolled-back", "done"}
	// Anything else (a profile with only an activation wrapper) in one:
	// the profile is set first.
	evSuccess1   = []string{"locked", "previous", "profile-set", "activating", "activated", "awaiting-confirmation", "confirmed", "done"}
	evNoConfirm1 = []string{"locked", "previous", "profile-set", "activating", "activated", "awaiting-confirmation", "rolling-back", "activating", "rolled-back", "done"}
)

func TestRun(t *testing.T) {
	ok := fakeSystem{}
	// kernels boots old, with old's kernel and new's as given and the
	// same systemd in both.
	kernels := func(oldKernel, newKernel string) func(*harness, string) {
		return func(h *harness, _ string) {
			h.booted(filepath.Join(h.store, "old"))
			h.bootLinks("old", oldKernel, "systemd-255")
			h.bootLinks("new", newKernel, "systemd-255")
		}
	}
	tests := []struct {
		name    string
		old     *fakeSystem // installed in the profile (and running) before; nil: fresh machine
		new     fakeSystem
		wrapper bool // new system has only the activation wrapper
		mod     func(*agent.Request)
		// confirm: "client" runs Confirm alongside; "instant" writes the
		// token inside the announcement itself; "none" lets the deadline
		// pass; "wrong" writes a wrong token, then lets it pass; "stop"
		// stops the agent while it waits.
		confirm string
		setup   func(h *harness, dir string)

		want        []string
		status      agent.Status
		activations []string
		gens        []int
		current     string // the profile's system afterwards; "" = no profile
		bootDefault string // the system the machine boots next; "" = never set
		reason      string // in Result.Reason
		errText     string // in Result.Error
		check       func(t *testing.T, h *harness, evs []agent.Event, res agent.Result)
	}{{
		name: "switch: live, confirmed, then committed", old: &ok, new: ok, confirm: "client",
		want: evSuccess, status: agent.StatusDeployed,
		activations: []string{"new test", "new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			if a, _ := findEvent(evs, agent.EventAwaitingConfirmation); a.Timeout.D() != agent.DefaultConfirmTimeout {
				t.Errorf("awaiting-confirmation timeout = %s, want the request's %s", a.Timeout.D(), agent.DefaultConfirmTimeout)
			}
			if ps, _ := findEvent(evs, agent.EventProfileSet); ps.Generation != 2 || !ps.Created {
				t.Errorf("profile-set = %+v, want generation 2, created", ps)
			}
			if !res.GenerationCreated || res.Running != filepath.Join(h.store, "new") {
				t.Errorf("result: created %v, running %q", res.GenerationCreated, res.Running)
			}
		},
	}, {
		name: "confirmation written the instant it is announced", old: &ok, new: ok, confirm: "instant",
		want: evSuccess, status: agent.StatusDeployed,
		activations: []string{"new test", "new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new",
	}, {
		name: "no confirmation: the previous system live again, nothing persistent to undo", old: &ok, new: ok, confirm: "none",
		want: evNoConfirm, status: agent.StatusRolledBack,
		activations: []string{"new test", "old test"}, gens: []int{1}, current: "old",
		reason: "no confirmation within 30s",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			rb, _ := findEvent(evs, agent.EventRolledBack)
			if rb.To != filepath.Join(h.store, "old") || rb.Generation != 1 {
				t.Errorf("rolled-back event = %+v, want to old, generation 1", rb)
			}
			if got := runningSystem(t, h); got != "old" {
				t.Errorf("running system = %s, want old", got)
			}
			if len(h.m.nixCalls) != 0 {
				t.Errorf("nix-env ran before any confirmation: %q", h.m.nixCalls)
			}
		},
	}, {
		name: "exit 2 rolls back", old: &ok, new: fakeSystem{code: 2, output: []string{"error: sshd.service failed"}},
		want: evFailed, status: agent.StatusRolledBack,
		activations: []string{"new test", "old test"}, gens: []int{1}, current: "old",
		reason: "exit status 2",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			var lines []string
			for _, e := range evs {
				if e.Type == agent.EventLog {
					lines = append(lines, e.Stream+": "+e.Line)
				}
			}
			if len(lines) != 1 || lines[0] != "stderr: error: sshd.service failed" {
				t.Errorf("activation output as log events = %q", lines)
			}
			if af, _ := findEvent(evs, agent.EventActivationFailed); af.ExitCode == nil || *af.ExitCode != 2 {
				t.Errorf("activation-failed exit code = %v, want 2", af.ExitCode)
			}
		},
	}, {
		name: "exit 2 without autoRollback stays live, not committed", old: &ok, new: fakeSystem{code: 2},
		mod:  func(r *agent.Request) { r.AutoRollback = false },
		want: []string{"locked", "previous", "activating", "activation-failed", "done"}, status: agent.StatusFailed,
		activations: []string{"new test"}, gens: []int{1}, current: "old",
		reason: "not committed",
	}, {
		name: "exit 4 rolls back", old: &ok, new: fakeSystem{code: 4},
		want: evFailed, status: agent.StatusRolledBack,
		activations: []string{"new test", "old test"}, gens: []int{1}, current: "old",
		reason: "units failed",
	}, {
		name: "exit 4 with allowFailedUnits is a deploy", old: &ok, new: fakeSystem{code: 4}, confirm: "client",
		mod:  func(r *agent.Request) { r.AllowFailedUnits = true },
		want: evSuccess, status: agent.StatusDeployed,
		activations: []string{"new test", "new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			if !res.UnitsFailed {
				t.Error("result does not say units failed")
			}
		},
	}, {
		name: "exit 100 is reboot-required, not a failure", old: &ok, new: fakeSystem{code: 100}, confirm: "client",
		want: evSuccess, status: agent.StatusRebootRequired,
		activations: []string{"new test", "new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			if a, _ := findEvent(evs, agent.EventActivated); !a.RebootRequired {
				t.Errorf("activated event = %+v, want rebootRequired", a)
			}
		},
	}, {
		name: "exit 100 still needs the confirmation", old: &ok, new: fakeSystem{code: 100}, confirm: "none",
		want: evNoConfirm, status: agent.StatusRolledBack,
		activations: []string{"new test", "old test"}, gens: []int{1}, current: "old",
	}, {
		name: "hanging activation is killed and rolled back", old: &ok, new: fakeSystem{hang: true},
		want: evFailed, status: agent.StatusRolledBack,
		activations: []string{"new test", "old test"}, gens: []int{1}, current: "old",
		reason: "did not finish within 4m0s",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			if af, _ := findEvent(evs, agent.EventActivationFailed); af.ExitCode != nil {
				t.Errorf("killed activation reports exit code %d", *af.ExitCode)
			}
		},
	}, {
		name: "a commit that fails puts the profile and the boot default back", old: &ok, new: fakeSystem{bootCode: 1}, confirm: "client",
		want: []string{"locked", "previous", "activating", "activated", "awaiting-confirmation", "confirmed", "committing", "profile-set",
			"activating", "activation-failed", "rolling-back", "activating", "activating", "rolled-back", "done"},
		status: agent.StatusRolledBack, activations: []string{"new test", "new boot", "old boot", "old test"}, gens: []int{1}, current: "old", bootDefault: "old",
		reason: "commit: making it the boot default failed: exit status 1",
	}, {
		name: "fresh profile deploys", new: ok, confirm: "client",
		want: evSuccess, status: agent.StatusDeployed,
		activations: []string{"new test", "new boot"}, gens: []int{1}, current: "new", bootDefault: "new",
	}, {
		name: "fresh machine cannot roll back, and nothing was made persistent", new: fakeSystem{code: 2},
		want:   []string{"locked", "previous", "activating", "activation-failed", "rolling-back", "rollback-failed", "done"},
		status: agent.StatusRollbackFailed, activations: []string{"new test"}, gens: nil, current: "",
		errText: "nothing was made persistent",
	}, {
		name: "wrong token is rejected and the deploy rolls back", old: &ok, new: ok, confirm: "wrong",
		want:   []string{"locked", "previous", "activating", "activated", "awaiting-confirmation", "confirm-rejected", "rolling-back", "activating", "rolled-back", "done"},
		status: agent.StatusRolledBack, activations: []string{"new test", "old test"}, gens: []int{1}, current: "old",
	}, {
		name: "confirmation left from before the activation is ignored", old: &ok, new: ok, confirm: "none",
		setup: func(h *harness, dir string) {
			// Written early with the right token, and an earlier deploy's
			// leftover with its own: neither may confirm this one.
			writeConfirmFile(h.t, dir, testToken)
			other := h.r.DeployDir("earlier-deploy")
			if err := os.Mkdir(other, 0o700); err != nil {
				h.t.Fatal(err)
			}
			writeConfirmFile(h.t, other, testToken)
		},
		want: evNoConfirm, status: agent.StatusRolledBack,
		activations: []string{"new test", "old test"}, gens: []int{1}, current: "old",
	}, {
		name: "agent stopped while waiting rolls back", old: &ok, new: ok, confirm: "stop",
		want: evNoConfirm, status: agent.StatusRolledBack,
		activations: []string{"new test", "old test"}, gens: []int{1}, current: "old",
		reason: "stopped before a confirmation",
	}, {
		name: "redeploying the current system reuses its generation", old: &ok, new: ok, confirm: "client",
		mod:  func(r *agent.Request) { r.Closure = filepath.Join(filepath.Dir(r.Closure), "old") },
		want: evSuccess, status: agent.StatusDeployed,
		activations: []string{"old test", "old boot"}, gens: []int{1}, current: "old", bootDefault: "old",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			if ps, _ := findEvent(evs, agent.EventProfileSet); ps.Generation != 1 || ps.Created {
				t.Errorf("profile-set = %+v, want nix's reused generation 1, not created", ps)
			}
		},
	}, {
		name: "boot sets the profile and needs no confirmation", old: &ok, new: ok,
		mod:  func(r *agent.Request) { r.Action = agent.ActionBoot },
		want: []string{"locked", "previous", "profile-set", "activating", "activated", "done"}, status: agent.StatusDeployed,
		activations: []string{"new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new",
	}, {
		name: "failed boot rolls the boot default back", old: &ok, new: fakeSystem{bootCode: 1},
		mod:  func(r *agent.Request) { r.Action = agent.ActionBoot },
		want: []string{"locked", "previous", "profile-set", "activating", "activation-failed", "rolling-back", "activating", "rolled-back", "done"}, status: agent.StatusRolledBack,
		activations: []string{"new boot", "old boot"}, gens: []int{1}, current: "old", bootDefault: "old",
	}, {
		name: "test leaves the profile alone", old: &ok, new: ok, confirm: "client",
		mod:  func(r *agent.Request) { r.Action = agent.ActionTest },
		want: []string{"locked", "previous", "activating", "activated", "awaiting-confirmation", "confirmed", "done"}, status: agent.StatusDeployed,
		activations: []string{"new test"}, gens: []int{1}, current: "old",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			if got := runningSystem(t, h); got != "new" {
				t.Errorf("running system = %s, want new", got)
			}
		},
	}, {
		name: "test rolls back by re-activating the recorded running system with test", old: &ok, new: ok, confirm: "none",
		mod:    func(r *agent.Request) { r.Action = agent.ActionTest },
		want:   []string{"locked", "previous", "activating", "activated", "awaiting-confirmation", "rolling-back", "activating", "rolled-back", "done"},
		status: agent.StatusRolledBack, activations: []string{"new test", "old test"}, gens: []int{1}, current: "old",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			if got := runningSystem(t, h); got != "old" {
				t.Errorf("running system = %s, want old", got)
			}
		},
	}, {
		name: "dry-activate changes nothing and logs the output", old: &ok,
		new:  fakeSystem{output: []string{"would restart the following units: sshd.service"}},
		mod:  func(r *agent.Request) { r.Action = agent.ActionDryActivate },
		want: []string{"locked", "previous", "activating", "activated", "done"}, status: agent.StatusDryActivated,
		activations: []string{"new dry-activate"}, gens: []int{1}, current: "old",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			if l, _ := findEvent(evs, agent.EventLog); l.Line != "would restart the following units: sshd.service" {
				t.Errorf("log event = %+v", l)
			}
		},
	}, {
		name: "wrapper-only profile: one phase, PROFILE and the mode flags", old: &ok, new: ok, wrapper: true, confirm: "client",
		want: evSuccess1, status: agent.StatusDeployed,
		activations: []string{"new switch"}, gens: []int{1, 2}, current: "new", bootDefault: "new",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			a, _ := findEvent(evs, agent.EventActivating)
			if want := []string{filepath.Join(h.profile, WrapperName)}; !reflect.DeepEqual(a.Argv, want) {
				t.Errorf("activation argv = %q, want %q", a.Argv, want)
			}
			env := h.m.activEnv[0]
			for k, want := range map[string]string{"PROFILE": h.profile, "DRY_ACTIVATE": "0", "BOOT": "0", "TEST": "0", "PATH": "/fake/bin"} {
				if got := envValue(env, k); got != want {
					t.Errorf("wrapper env %s=%q, want %q", k, got, want)
				}
			}
			if p, _ := findEvent(evs, agent.EventPrevious); p.TwoPhase {
				t.Error("previous event says two-phase for a wrapper-only profile")
			}
		},
	}, {
		name: "wrapper-only profile without a confirmation: profile and system put back", old: &ok, new: ok, wrapper: true, confirm: "none",
		want: evNoConfirm1, status: agent.StatusRolledBack,
		activations: []string{"new switch", "old switch"}, gens: []int{1}, current: "old", bootDefault: "old",
	}, {
		name: "wrapper dry-activate runs from the closure", old: &ok, new: ok, wrapper: true,
		mod:  func(r *agent.Request) { r.Action = agent.ActionDryActivate },
		want: []string{"locked", "previous", "activating", "activated", "done"}, status: agent.StatusDryActivated,
		activations: []string{"new dry-activate"}, gens: []int{1}, current: "old",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			env := h.m.activEnv[0]
			if envValue(env, "PROFILE") != filepath.Join(h.store, "new") || envValue(env, "DRY_ACTIVATE") != "1" {
				t.Errorf("wrapper env = %q", env)
			}
		},
	}, {
		name: "test refuses a wrapper-only system before touching anything", old: &ok, new: ok, wrapper: true,
		mod:  func(r *agent.Request) { r.Action = agent.ActionTest },
		want: []string{"locked", "previous", "done"}, status: agent.StatusFailed,
		activations: nil, gens: []int{1}, current: "old", errText: "test needs it",
	}, {
		name: "closure not on the machine", old: &ok, new: ok,
		mod:  func(r *agent.Request) { r.Closure = filepath.Join(filepath.Dir(r.Closure), "missing") },
		want: []string{"locked", "previous", "done"}, status: agent.StatusFailed,
		activations: nil, gens: []int{1}, current: "old", errText: "not on this machine",
	}, {
		name: "magicRollback off: committed once activated", old: &ok, new: ok,
		mod:  func(r *agent.Request) { r.MagicRollback = false; r.Token = "" },
		want: []string{"locked", "previous", "activating", "activated", "committing", "profile-set", "activating", "committed", "done"}, status: agent.StatusDeployed,
		activations: []string{"new test", "new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new",
	}, {
		name: "a new kernel is deployed and needs a reboot", old: &ok, new: ok, confirm: "client",
		setup: kernels("linux-6.1", "linux-6.6"),
		want:  evSuccess, status: agent.StatusRebootRequired,
		activations: []string{"new test", "new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new",
		check: func(t *testing.T, h *harness, evs []agent.Event, res agent.Result) {
			if want := []string{"kernel", "initrd", "kernel-modules"}; !reflect.DeepEqual(res.RebootFor, want) || !res.RebootRequired {
				t.Errorf("result: reboot required %v for %q, want for %q", res.RebootRequired, res.RebootFor, want)
			}
		},
	}, {
		name: "the same kernel, initrd, modules and systemd need no reboot", old: &ok, new: ok, confirm: "client",
		setup: kernels("linux-6.6", "linux-6.6"),
		want:  evSuccess, status: agent.StatusDeployed,
		activations: []string{"new test", "new boot"}, gens: []int{1, 2}, current: "new", bootDefault: "new",
	}}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.old != nil {
				old := h.system("old", *tc.old, false)
				h.installed(old)
				h.running(old)
			}
			newSys := h.system("new", tc.new, tc.wrapper)
			req := h.request("deploy-1", newSys)
			if tc.mod != nil {
				tc.mod(&req)
			}
			dir := h.prepare(req)
			if tc.setup != nil {
				tc.setup(h, dir)
			}
			h.m.nixCalls = nil

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h.r.observe = func(e agent.Event) {
				switch {
				case e.Type == agent.EventAwaitingConfirmation && tc.confirm == "instant":
					writeConfirmFile(t, dir, testToken)
				case e.Type == agent.EventAwaitingConfirmation && tc.confirm == "none":
					h.clock.Advance(agent.DefaultConfirmTimeout)
				case e.Type == agent.EventAwaitingConfirmation && tc.confirm == "wrong":
					writeConfirmFile(t, dir, strings.Repeat("ab", 32))
				case e.Type == agent.EventConfirmRejected && tc.confirm == "wrong":
					h.clock.Advance(agent.DefaultConfirmTimeout)
				case e.Type == agent.EventAwaitingConfirmation && tc.confirm == "stop":
					cancel()
				}
			}

			confirmErr := make(chan error, 1)
			switch tc.confirm {
			case "client":
				go func() { confirmErr <- h.r.Confirm(ctx, dir, testToken) }()
			case "instant", "none", "wrong", "stop", "":
				confirmErr <- nil
			default:
				t.Fatalf("bad confirm mode %q", tc.confirm)
			}
			// A lost confirmation would wait for a deadline only the test
			// moves: move it after a while so the case fails, not hangs.
			watchdog := time.AfterFunc(20*time.Second, func() { h.clock.Advance(time.Hour) })
			res, err := h.r.Run(ctx, dir)
			watchdog.Stop()
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if err := <-confirmErr; err != nil {
				t.Errorf("Confirm: %v", err)
			}
			evs := readEvents(t, dir)
			if got := agent.Steps(evs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("events:\n got %q\nwant %q", got, tc.want)
			}
			for i, e := range evs {
				if e.Seq != i+1 {
					t.Errorf("event %d has seq %d", i, e.Seq)
				}
			}
			if res.Status != tc.status {
				t.Errorf("status = %s, want %s (reason %q, error %q)", res.Status, tc.status, res.Reason, res.Error)
			}
			if done := evs[len(evs)-1]; done.Type != agent.EventDone || done.Status != tc.status || done.Result == nil {
				t.Errorf("last event = %+v, want done with status %s and a result", done, tc.status)
			}
			h.checkMachine(t, tc.activations, tc.gens, tc.current, tc.bootDefault)
			if !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("reason = %q, want it to mention %q", res.Reason, tc.reason)
			}
			if !strings.Contains(res.Error, tc.errText) {
				t.Errorf("error = %q, want it to mention %q", res.Error, tc.errText)
			}
			if last := h.last(); last.Status != tc.status || last.DeployID != "deploy-1" {
				t.Errorf("last.json = %+v", last)
			}
			h.checkNoSecretsLeft(dir)
			if tc.check != nil {
				tc.check(t, h, evs, res)
			}
		})
	}
}

func writeConfirmFile(t *testing.T, dir, token string) {
	t.Helper()
	if err := writeFileAtomic(filepath.Join(dir, confirmFile), []byte(token+"\n"), 0o600); err != nil {
		t.Error(err)
	}
}

func runningSystem(t *testing.T, h *harness) string {
	t.Helper()
	p, err := readLink(filepath.Join(h.root, "run/current-system"))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(p)
}

func TestRunLockHeld(t *testing.T) {
	h := newHarness(t)
	_, newSys := h.oldAndNew(fakeSystem{}, false)
	dir := h.prepare(h.request("second", newSys))

	holder := agent.LockInfo{DeployID: "first", Who: "alice@laptop", PID: 4242}
	lock, err := acquireLock(context.Background(), h.r.StateDir, holder, h.clock, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.release()

	res, err := h.r.Run(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, dir)
	if got, want := agent.Steps(evs), []string{"lock-held", "done"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("events = %q, want %q", got, want)
	}
	if evs[0].Holder == nil || evs[0].Holder.DeployID != "first" || evs[0].Holder.Who != "alice@laptop" {
		t.Errorf("lock-held holder = %+v", evs[0].Holder)
	}
	if res.Status != agent.StatusLockHeld || !strings.Contains(res.Error, "deploy first from alice@laptop in progress") {
		t.Errorf("result = %s %q", res.Status, res.Error)
	}
	if got := h.m.activated(); len(got) != 0 {
		t.Errorf("activations with the lock held elsewhere: %q", got)
	}
	if gens, cur := h.generations(); !reflect.DeepEqual(gens, []int{1}) || cur != "old" {
		t.Errorf("profile touched: %v %s", gens, cur)
	}
	if _, err := os.Stat(filepath.Join(h.r.StateDir, lastFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused deploy wrote last.json (err %v)", err)
	}
	if info, _ := probeLock(h.r.StateDir); info == nil || info.DeployID != "first" {
		t.Errorf("holder's lock disturbed: %+v", info)
	}
}

func TestRunRejectsRequestForOtherDir(t *testing.T) {
	h := newHarness(t)
	newSys := h.system("new", fakeSystem{}, false)
	dir := h.prepare(h.request("one", newSys))
	if err := os.Rename(dir, h.r.DeployDir("two")); err != nil {
		t.Fatal(err)
	}
	res, err := h.r.Run(context.Background(), h.r.DeployDir("two"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != agent.StatusFailed || !strings.Contains(res.Error, "not two") {
		t.Errorf("result = %s %q", res.Status, res.Error)
	}
	if len(h.m.activated()) != 0 {
		t.Error("activated anyway")
	}
}
