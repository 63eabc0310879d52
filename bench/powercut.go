//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/tetherdeploy/tether/internal/e2e"
	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// benchPowerCut measures what two-phase activation costs and what it buys.
//
// The cost: the same v1 ↔ v2 switches deployed by this tether (live
// first, committed once confirmed) and by the tether of onePhaseCommit
// (one phase: profile set, switch-to-configuration switch), built from
// `git archive` of that commit, on two
// hosts of one direct fleet, alternating, closures already copied.
//
// What it buys: a release whose activation stops sshd, and the power cut
// while the node waits for the confirmation; the time from power-on to
// tether's report (rolled back by the reboot).
func benchPowerCut(ctx context.Context, b *bench) (*section, error) {
	runs := pick(b, 7, 3)
	s, err := b.startSandbox(ctx, testhost.Direct(3), nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	hosts := []string{"h01", "h02", "h03"}
	if _, err := s.prebuild(ctx, hosts, fixture.V1, fixture.V2, fixture.CutSSH); err != nil {
		return nil, err
	}
	if _, err := s.deploy(ctx, runOpts{}, hosts...); err != nil {
		return nil, err
	}

	var sec section
	base, rev, err := b.baseline(ctx)
	if err != nil {
		sec.notes = append(sec.notes, "no comparison with one phase: "+err.Error())
	} else {
		t, note, err := phaseCost(ctx, s, base, rev, runs)
		if err != nil {
			return nil, err
		}
		sec.tables = append(sec.tables, t)
		sec.notes = append(sec.notes, note)
	}

	t := &table{header: []string{"run", "power-on → tether's report", "status", "reason"}}
	var took []time.Duration
	h := s.fleet.Host("h03")
	if err := s.setVariant(fixture.CutSSH, "h03"); err != nil {
		return nil, err
	}
	for i := range runs {
		b.logf("powercut: run %d/%d", i+1, runs)
		d, res, err := powerCutRun(ctx, s, h)
		if err != nil {
			return nil, fmt.Errorf("power cut run %d: %w", i+1, err)
		}
		took = append(took, d)
		t.add(fmt.Sprint(i+1), millis(d), string(res.Status), res.Reason)
	}
	sec.tables = append(sec.tables, t)
	sec.setup = "Direct fleet of 3, closures prebuilt and copied. Cost: h01 and h02 switch v1 ↔ v2 in turn, " +
		"one with this tether (two phases: `switch-to-configuration test`, the confirmation, then profile and `switch-to-configuration boot`), " +
		"the other with the tether of the last commit before two-phase activation (one phase: profile, `switch-to-configuration switch`, the confirmation); the time is tether's wall time " +
		"for `tether deploy <host>`, and activate + confirm are its report's timings. Power cut: h03 gets a release whose activation stops sshd " +
		"(`--confirm-timeout 60s`); once it waits for the confirmation its power is cut (every process SIGKILLed, /run lost), and after a second " +
		"switched on (a new boot ID; the boot loader's default, v2, boots); the time is from power-on to tether's exit."
	sec.notes = append(sec.notes, fmt.Sprintf("Median power-on → report: %s over %d runs (every run: rolled-back, "+
		"\"rolled back by a reboot before confirmation\"); most of it is tether's one-second pause between reconnection attempts. Before two phases the node booted the release that cut sshd, and tether reconnected "+
		"until its settle deadline (about 9 minutes with the default timeouts) before calling it uncertain.", millis(median(took)), len(took)))
	return &sec, nil
}

// onePhaseCommit is the last commit whose tether activated in one phase:
// the first parent of the merge that brought two-phase activation. A
// comparison with the merge base of the branch under test would compare
// main with itself once the branch is merged.
const onePhaseCommit = "203520410cbf8dfe04e9eda0102e734d17ec9c5f"

// baseline builds tether and its agent as they were at onePhaseCommit, and
// names that commit.
func (b *bench) baseline(ctx context.Context) (e2e.Binaries, string, error) {
	root, err := e2e.ModuleRoot()
	if err != nil {
		return e2e.Binaries{}, "", err
	}
	rev := onePhaseCommit
	src := filepath.Join(b.work, "baseline-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return e2e.Binaries{}, "", err
	}
	archive := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, rev, src)
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	if err := archive.Run(); err != nil {
		return e2e.Binaries{}, "", fmt.Errorf("git archive %s: %v: %s", rev, err, stderr.String())
	}
	b.logf("building the baseline tether (%.12s)", rev)
	bins, err := e2e.Build(ctx, src, filepath.Join(b.work, "baseline-bin"))
	return bins, rev, err
}

// phaseCost deploys v1 ↔ v2 alternately with both tethers.
func phaseCost(ctx context.Context, s *sandbox, base e2e.Binaries, rev string, runs int) (*table, string, error) {
	t := &table{header: []string{"run", "to", "two phases: wall", "activate + confirm", "one phase (base): wall", "activate + confirm"}}
	var two, one, twoAct, oneAct []time.Duration
	variant := fixture.V2
	for i := range runs + 1 {
		if err := s.setVariant(variant, "h01", "h02"); err != nil {
			return nil, "", err
		}
		r2, err := s.deploy(ctx, runOpts{}, "h01")
		if err != nil {
			return nil, "", err
		}
		r1, err := s.deployWith(ctx, base, "h02")
		if err != nil {
			return nil, "", err
		}
		act := func(r *tetherRun, node string) time.Duration {
			res, _ := r.result(node)
			return time.Duration(res.Timings.Activate) + time.Duration(res.Timings.Confirm)
		}
		if i > 0 { // the first round copies v2 and warms up
			two, one = append(two, r2.wall), append(one, r1.wall)
			twoAct, oneAct = append(twoAct, act(r2, "h01")), append(oneAct, act(r1, "h02"))
			t.add(fmt.Sprint(i), variant, millis(r2.wall), millis(act(r2, "h01")), millis(r1.wall), millis(act(r1, "h02")))
		}
		if variant == fixture.V2 {
			variant = fixture.V1
		} else {
			variant = fixture.V2
		}
	}
	note := fmt.Sprintf("Two phases, this tether against %.12s, the last commit before two-phase activation (one phase): %+d ms on a deploy "+
		"(median wall %s against %s); activate + confirm %s against %s. The difference holds every change made since that commit as well, "+
		"so it is not the cost of the two phases alone: that was measured when they landed, on their branch against its base, "+
		"at -11 ms (837 ms against 848 ms median), within the noise. The fixture's switch-to-configuration does next to nothing; "+
		"on a real machine phase 2 adds one more start of switch-to-configuration, and installing the boot loader entries, which `boot` does, "+
		"is work `switch` did as well.",
		rev, (median(two) - median(one)).Milliseconds(), millis(median(two)), millis(median(one)), millis(median(twoAct)), millis(median(oneAct)))
	return t, note, nil
}

// deployWith runs another tether build's `deploy`.
func (s *sandbox) deployWith(ctx context.Context, bins e2e.Binaries, args ...string) (*tetherRun, error) {
	saved := s.b.bins
	s.b.bins = bins
	defer func() { s.b.bins = saved }()
	return s.deploy(ctx, runOpts{}, args...)
}

// powerCutRun deploys the release that stops sshd to h, cuts h's power
// while it waits for the confirmation, switches it on and times tether's
// report from there.
func powerCutRun(ctx context.Context, s *sandbox, h *testhost.Host) (time.Duration, deploy.Result, error) {
	done := make(chan *tetherRun, 1)
	errc := make(chan error, 1)
	go func() {
		r, err := s.tether(ctx, runOpts{}, "deploy", "--confirm-timeout", "60s", h.Name)
		if err != nil {
			errc <- err
			return
		}
		done <- r
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if g, err := generation(h); err == nil && g.Variant == fixture.CutSSH {
			break
		}
		if time.Now().After(deadline) {
			return 0, deploy.Result{}, fmt.Errorf("%s never ran the release", h.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if err := h.PowerCut(ctx); err != nil {
		return 0, deploy.Result{}, err
	}
	time.Sleep(time.Second)
	on := time.Now()
	if err := h.PowerOn(ctx); err != nil {
		return 0, deploy.Result{}, err
	}
	var r *tetherRun
	select {
	case r = <-done:
	case err := <-errc:
		return 0, deploy.Result{}, err
	}
	took := r.started.Add(r.wall).Sub(on)
	res, ok := r.result(h.Name)
	if !ok || res.Status != deploy.StatusRolledBack || !res.Rebooted {
		return took, res, fmt.Errorf("want rolled back by the reboot: %s", r)
	}
	if g, err := generation(h); err != nil || g.Variant == fixture.CutSSH {
		return took, res, fmt.Errorf("%s runs %v after the power cut (%v)", h.Name, g, err)
	}
	return took, res, nil
}
