package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// machine is what a sandbox host holds that a power cut must leave
// consistent: what it booted and runs, where its profile points, its
// generations and the boot loader's default.
type machine struct {
	booted, running string   // toplevels
	profile         string   // "system-N-link"
	gens            []string // system-N-link, sorted
	bootDefault     string   // the default entry's toplevel
}

func (s *sandbox) machine(ctx context.Context, host string) machine {
	s.t.Helper()
	h := s.fleet.Host(host)
	var m machine
	m.booted, _ = h.ReadLink(ctx, fixture.BootedSystem)
	m.running, _ = h.ReadLink(ctx, fixture.CurrentSystem)
	m.profile, _ = h.ReadLink(ctx, agent.DefaultProfile)
	m.gens = s.generations(ctx, host)
	out, err := h.Exec(ctx, "sh", "-c", `e=$(sed -n 's/^default //p' `+fixture.LoaderConf+`) && sed -n 's/^options init=\(.*\)\/init$/\1/p' `+fixture.LoaderDir+`/entries/"$e"`)
	if err == nil {
		m.bootDefault = strings.TrimSpace(string(out))
	}
	return m
}

// holdAt stops the host's next activation of variant at a hold point
// ("test", "switch" or "boot"; see fixture.HoldFile) and returns a wait
// for it to get there.
func (s *sandbox) holdAt(ctx context.Context, host, what, variant string) func() {
	s.t.Helper()
	h := s.fleet.Host(host)
	if _, err := h.Exec(ctx, "sh", "-c", "mkdir -p /run/fixture && touch "+fixture.HoldFile(what, variant)); err != nil {
		s.t.Fatal(err)
	}
	return func() {
		s.t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if _, err := h.Exec(ctx, "test", "-e", fixture.HeldFile(what, variant)); err == nil {
				return
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("%s: the %s activation of %s never reached its hold point", host, what, variant)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (s *sandbox) release(ctx context.Context, host, what, variant string) {
	s.t.Helper()
	if _, err := s.fleet.Host(host).Exec(ctx, "rm", "-f", fixture.HoldFile(what, variant)); err != nil {
		s.t.Fatal(err)
	}
}

// blockNix makes every nix command on host wait as it starts — its
// nix.conf includes a FIFO nobody writes — until the returned function
// opens the gate. It stops what no fixture script can: the agent's
// `nix-env --set` between the confirmation and the commit, or the copy.
func (s *sandbox) blockNix(host string) (open func()) {
	s.t.Helper()
	h := s.fleet.Host(host)
	conf := filepath.Join(h.Dir, "etc", "nix", "nix.conf")
	fifo := filepath.Join(h.Dir, "etc", "nix", "gate")
	orig, err := os.ReadFile(conf)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(conf, append(append([]byte(nil), orig...), []byte("!include "+fifo+"\n")...), 0o644); err != nil {
		s.t.Fatal(err)
	}
	opened := false
	open = func() {
		if opened {
			return
		}
		opened = true
		if err := os.WriteFile(conf, orig, 0o644); err != nil {
			s.t.Error(err)
		}
		// Let whoever waits read an empty include, until nobody does.
		for misses := 0; misses < 5; {
			f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				misses++
				time.Sleep(20 * time.Millisecond)
				continue
			}
			f.Close()
		}
		os.Remove(fifo)
	}
	s.t.Cleanup(open)
	return open
}

// deployDirs lists the deploy dirs on host, to tell the next one apart.
func (s *sandbox) deployDirs(ctx context.Context, host string) []string {
	s.t.Helper()
	out, _ := s.fleet.Host(host).Exec(ctx, "sh", "-c", "ls "+agent.StateDir("")+" 2>/dev/null || true")
	return strings.Fields(string(out))
}

// waitEvent waits until the deploy started on host after before has
// written an event of type typ, and returns the types it wrote so far.
func (s *sandbox) waitEvent(ctx context.Context, host string, before []string, typ agent.EventType) []string {
	s.t.Helper()
	h := s.fleet.Host(host)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for _, d := range s.deployDirs(ctx, host) {
			if slices.Contains(before, d) || !agent.ValidDeployID(d) {
				continue
			}
			b, _ := h.ReadFile(ctx, agent.DeployDir(agent.StateDir(""), d)+"/events.jsonl")
			var types []string
			for _, line := range strings.SplitAfter(string(b), "\n") {
				if e, err := agent.ParseEvent([]byte(line)); err == nil && e.Type != agent.EventLog {
					types = append(types, string(e.Type))
				}
			}
			if slices.Contains(types, string(typ)) {
				return types
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: no %s event within 2m", host, typ)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSSH waits until the host accepts SSH connections again.
func (s *sandbox) waitSSH(ctx context.Context, host string) {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for s.sshReachable(ctx, host) != nil {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: no SSH after booting", host)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPowerCutAtEachPhase pulls the plug on a machine at each phase of a
// deploy and switches it back on. Each time the machine must boot a
// confirmed system, its profile, generations and boot default must agree,
// the deployer must say what happened — within seconds of the machine
// coming back, not after minutes of reconnecting — and the next deploy
// must work. Before the confirmation nothing persisted, so the machine
// boots the previous system and that is the whole rollback; after it, the
// commit is finished and the new system boots next.
func TestPowerCutAtEachPhase(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{topology: testhost.Direct(6), timeout: 20 * time.Minute})
	hosts := []string{"h01", "h02", "h03", "h04", "h05", "h06"}
	if r := s.tether(ctx, append([]string{"deploy"}, hosts...)...); r.code != exitOK {
		t.Fatalf("deploy v1: %s", r)
	}

	type phase struct {
		name, host, variant string
		// reach gets the deploy to the phase; lines are the deployer's.
		reach func(t *testing.T, lines <-chan string, before []string) (unblock func())
		// confirmed: the power goes after the confirmation.
		confirmed bool
		status    deploy.Status
		reason    string // in the report's error or reason
	}
	phases := []phase{{
		name: "copying", host: "h01", variant: fixture.V2,
		reach: func(t *testing.T, lines <-chan string, before []string) func() {
			// Armed before the deploy starts: the copy's first nix command
			// on the node waits.
			return nil
		},
		status: deploy.StatusFailed, reason: "copy",
	}, {
		name: "activating", host: "h02", variant: fixture.V2,
		reach: func(t *testing.T, lines <-chan string, before []string) func() {
			s.holdAt(ctx, "h02", "test", fixture.V2)()
			return nil
		},
		status: deploy.StatusRolledBack, reason: "rolled back by a reboot before confirmation",
	}, {
		// The case: a release whose activation stops sshd, so no
		// confirmation can arrive, and the plug is pulled while the node
		// waits for one.
		name: "awaiting confirmation", host: "h03", variant: fixture.CutSSH,
		reach: func(t *testing.T, lines <-chan string, before []string) func() {
			s.waitEvent(ctx, "h03", before, agent.EventAwaitingConfirmation)
			waitLine(t, lines, "confirmation attempt 1 failed", time.Minute)
			return nil
		},
		status: deploy.StatusRolledBack, reason: "rolled back by a reboot before confirmation",
	}, {
		name: "between confirmation and commit", host: "h04", variant: fixture.V2, confirmed: true,
		reach: func(t *testing.T, lines <-chan string, before []string) func() {
			s.holdAt(ctx, "h04", "test", fixture.V2)()
			open := s.blockNix("h04")
			s.release(ctx, "h04", "test", fixture.V2)
			s.waitEvent(ctx, "h04", before, agent.EventCommitting)
			time.Sleep(500 * time.Millisecond)
			if types := s.waitEvent(ctx, "h04", before, agent.EventCommitting); slices.Contains(types, string(agent.EventProfileSet)) {
				t.Fatalf("the profile was set already: %q", types)
			}
			return open
		},
		status: deploy.StatusRebootRequired, reason: "rebooted after the confirmation",
	}, {
		name: "during the commit", host: "h05", variant: fixture.V2, confirmed: true,
		reach: func(t *testing.T, lines <-chan string, before []string) func() {
			s.holdAt(ctx, "h05", "boot", fixture.V2)()
			if types := s.waitEvent(ctx, "h05", before, agent.EventProfileSet); !slices.Contains(types, string(agent.EventConfirmed)) {
				t.Fatalf("held before the confirmation: %q", types)
			}
			return nil
		},
		status: deploy.StatusRebootRequired, reason: "rebooted after the confirmation",
	}, {
		name: "during the rollback", host: "h06", variant: fixture.Fail,
		reach: func(t *testing.T, lines <-chan string, before []string) func() {
			s.holdAt(ctx, "h06", "test", fixture.V1)()
			if types := s.waitEvent(ctx, "h06", before, agent.EventRollingBack); !slices.Contains(types, string(agent.EventActivationFailed)) {
				t.Fatalf("rolling back for no failure: %q", types)
			}
			return nil
		},
		status: deploy.StatusRolledBack, reason: "exit status 2",
	}}

	for _, ph := range phases {
		t.Run(ph.name, func(t *testing.T) {
			s.t = t
			h := s.fleet.Host(ph.host)
			v1 := s.running(ctx, ph.host).Toplevel
			before := s.machine(ctx, ph.host)
			if before.bootDefault != v1 || before.running != v1 {
				t.Fatalf("before: %+v; want v1 %s running and the boot default", before, v1)
			}
			dirs := s.deployDirs(ctx, ph.host)
			s.setVariant(ph.host, ph.variant)
			var open func()
			if ph.name == "copying" {
				open = s.blockNix(ph.host)
			}
			p, lines, wait := s.startTether(ctx, "deploy", "--confirm-timeout", "20s", "--activation-timeout", "30s", ph.host)
			if ph.name == "copying" {
				waitLine(t, lines, "checking agent", time.Minute)
				time.Sleep(time.Second)
			}
			if o := ph.reach(t, lines, dirs); o != nil {
				open = o
			}

			if err := h.PowerCut(ctx); err != nil {
				t.Fatal(err)
			}
			if open != nil {
				open()
			}
			on := time.Now()
			if err := h.PowerOn(ctx); err != nil {
				t.Fatal(err)
			}
			r := wait()
			took := time.Since(on)
			_ = p
			t.Logf("power cut %s: the deployer reported %s after power-on", ph.name, took.Round(10*time.Millisecond))
			if took > 45*time.Second {
				t.Errorf("the deployer took %s after power-on to report", took)
			}

			// The machine booted a confirmed system: the one it ran before
			// (nothing new was ever the boot default before it was
			// confirmed and committed). The deployer may have given up
			// before the boot finished (a cut during the copy ends it at
			// once), so the boot is waited for first.
			s.waitSSH(ctx, ph.host)
			after := s.machine(ctx, ph.host)
			if after.booted != v1 || after.running != v1 {
				t.Errorf("after the cut: booted %s, runs %s; want v1 %s", after.booted, after.running, v1)
			}
			res := result(t, r, ph.host)
			if res.Status != ph.status || !strings.Contains(res.Error+" "+res.Reason, ph.reason) {
				t.Errorf("report: %s, error %q, reason %q; want %s saying %q", res.Status, res.Error, res.Reason, ph.status, ph.reason)
			}
			if ph.status != deploy.StatusFailed && (!res.Rebooted || res.Current != v1) {
				t.Errorf("report: rebooted %v, runs %q; want it to say the node rebooted and runs v1", res.Rebooted, res.Current)
			}

			s.waitSSH(ctx, ph.host)
			st := s.tether(ctx, "status", "--json", ph.host)
			if ph.confirmed {
				// The commit was finished: the new system is the profile's
				// and the boot default, one generation more.
				want := append(slices.Clone(before.gens), after.profile)
				if after.bootDefault == v1 || slices.Contains(before.gens, after.profile) || !slices.Equal(sorted(after.gens), sorted(want)) {
					t.Errorf("after a confirmed deploy: %+v (before %+v); want one new generation, current and the boot default", after, before)
				}
				// The next boot runs it.
				if err := h.Reset(ctx); err != nil {
					t.Fatal(err)
				}
				s.waitSSH(ctx, ph.host)
				if again := s.machine(ctx, ph.host); again.running == v1 || again.running != after.bootDefault || again.booted != again.running {
					t.Errorf("second boot: %+v; want the committed system", again)
				}
			} else if after.profile != before.profile || !slices.Equal(after.gens, before.gens) || after.bootDefault != v1 {
				t.Errorf("after an unconfirmed deploy: %+v; want exactly as before: %+v", after, before)
			}
			if st.code != exitOK || strings.Contains(st.stdout, `"inProgress"`) {
				t.Errorf("status after the cut:\n%s", st)
			}

			// And the next deploy works.
			s.setVariant(ph.host, fixture.V2)
			if r := s.tether(ctx, "deploy", ph.host); r.code != exitOK {
				t.Fatalf("deploy after the power cut: %s", r)
			}
			s.wantRunning(ctx, ph.host, fixture.V2)
			if m := s.machine(ctx, ph.host); m.bootDefault != m.running {
				t.Errorf("after the next deploy: %+v; want v2 running and the boot default", m)
			}
		})
	}
}

func sorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}

// TestDeployerKilledAtEachPhase kills the deployer (SIGKILL: no chance to
// say anything to the node) at each phase it was not killed at before
// (during the copy and while awaiting the confirmation are in
// rollback_test.go). The node goes on alone: before the confirmation it
// rolls back to the previous system, after it the commit completes; either
// way profile, generations and boot default agree, and status says how the
// deploy ended.
func TestDeployerKilledAtEachPhase(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{topology: testhost.Direct(4), timeout: 20 * time.Minute})
	hosts := []string{"h01", "h02", "h03", "h04"}
	if r := s.tether(ctx, append([]string{"deploy"}, hosts...)...); r.code != exitOK {
		t.Fatalf("deploy v1: %s", r)
	}
	// heldAt reaches a phase by holding host's activation at stage of
	// variant, and resumes by releasing it.
	heldAt := func(host, stage, variant string) func([]string) func() {
		return func([]string) func() {
			s.holdAt(ctx, host, stage, variant)()
			return func() { s.release(ctx, host, stage, variant) }
		}
	}
	phases := []struct {
		name, host, variant string
		reach               func(before []string) (resume func())
		endsOn              string // variant
		status              agent.Status
	}{{
		name: "activating", host: "h01", variant: fixture.V2,
		reach:  heldAt("h01", "test", fixture.V2),
		endsOn: fixture.V1, status: agent.StatusRolledBack,
	}, {
		name: "between confirmation and commit", host: "h02", variant: fixture.V2,
		reach: func(before []string) func() {
			s.holdAt(ctx, "h02", "test", fixture.V2)()
			open := s.blockNix("h02")
			s.release(ctx, "h02", "test", fixture.V2)
			s.waitEvent(ctx, "h02", before, agent.EventCommitting)
			return open
		},
		endsOn: fixture.V2, status: agent.StatusDeployed,
	}, {
		name: "during the commit", host: "h03", variant: fixture.V2,
		reach:  heldAt("h03", "boot", fixture.V2),
		endsOn: fixture.V2, status: agent.StatusDeployed,
	}, {
		name: "during the rollback", host: "h04", variant: fixture.Fail,
		reach:  heldAt("h04", "test", fixture.V1),
		endsOn: fixture.V1, status: agent.StatusRolledBack,
	}}
	for _, ph := range phases {
		t.Run(ph.name, func(t *testing.T) {
			s.t = t
			before := s.machine(ctx, ph.host)
			dirs := s.deployDirs(ctx, ph.host)
			s.setVariant(ph.host, ph.variant)
			p, _, wait := s.startTether(ctx, "deploy", "--confirm-timeout", short, ph.host)
			resume := ph.reach(dirs)
			if err := p.Kill(); err != nil {
				t.Fatal(err)
			}
			wait()
			resume()
			s.waitRunning(ctx, ph.host, ph.endsOn, time.Minute)
			// Settled: the agent's lock is free once status answers
			// without a deploy in progress.
			deadline := time.Now().Add(time.Minute)
			var st run
			for {
				st = s.tether(ctx, "status", "--json", ph.host)
				if st.code == exitOK && !strings.Contains(st.stdout, `"inProgress"`) || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Second)
			}
			if !strings.Contains(st.stdout, `"status": "`+string(ph.status)+`"`) && !strings.Contains(st.stdout, `"status":"`+string(ph.status)+`"`) {
				t.Errorf("status does not report the deploy %s:\n%s", ph.status, st)
			}
			after := s.machine(ctx, ph.host)
			if after.bootDefault != after.running {
				t.Errorf("after: %+v; want the running system as the boot default", after)
			}
			switch ph.endsOn {
			case fixture.V1:
				if !slices.Equal(after.gens, before.gens) || after.profile != before.profile {
					t.Errorf("rolled back: %+v; want the profile as before: %+v", after, before)
				}
			default:
				if len(after.gens) != len(before.gens)+1 {
					t.Errorf("deployed: %+v; want one new generation (before %+v)", after, before)
				}
			}
		})
	}
}
