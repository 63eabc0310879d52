//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// The home-like tunnel of the overhead benchmark: 20 Mbit/s each way and
// 30 ms one way.
const (
	homeRate    = 2_500_000 // bytes per second
	homeLatency = 30 * time.Millisecond
)

// profilePath is the system profile on the node.
const profilePath = "/nix/var/nix/profiles/system"

// benchOverhead compares `tether deploy frame1` with the least a person
// would type to do the same by hand: nix copy over OpenSSH, nix-env --set,
// switch-to-configuration switch. Each side installs v1 onto a fresh Home
// fleet whose tunnel is shaped like a home uplink, then updates it to v2.
func benchOverhead(ctx context.Context, b *bench) (*section, error) {
	runs := pick(b, 3, 1)
	var tethers, hands [2][]sideRun // [install, update][run]
	for i := 1; i <= runs; i++ {
		b.logf("overhead: run %d/%d, tether", i, runs)
		t, err := overheadTether(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("tether side: %w", err)
		}
		b.logf("overhead: run %d/%d, by hand", i, runs)
		h, err := overheadByHand(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("by hand: %w", err)
		}
		for p := range 2 {
			tethers[p] = append(tethers[p], t[p])
			hands[p] = append(hands[p], h[p])
		}
	}

	sec := &section{
		setup: fmt.Sprintf("Node frame1 of the Home fleet, reached through the tunnel relay shaped to %d Mbit/s each way and %s one-way latency. "+
			"Each side installs v1 onto a fresh fleet (closures pre-built on the runner), then updates it to v2; %d run(s) each, median. "+
			"tether: `tether deploy frame1` with magic rollback, so its time includes the confirmation over a fresh connection; "+
			"on a fresh node it also uploads its agent (%s, once per node and agent version). "+
			"By hand, with the OpenSSH client (`-i <fleet key> -o UserKnownHostsFile=<fleet known_hosts> -p <relay port>`, via NIX_SSHOPTS for nix): "+
			"`nix build` (finds the toplevel; already built), `nix copy --to ssh://root@127.0.0.1 <toplevel>`, "+
			"`ssh … nix-env -p %s --set <toplevel>`, `ssh … <toplevel>/bin/switch-to-configuration switch`.",
			homeRate*8/1_000_000, homeLatency, runs, agentSize(b), profilePath),
	}
	for p, phase := range []string{"install v1 on a fresh node", "update v1 → v2"} {
		header := []string{phase}
		for i := 1; i <= runs; i++ {
			header = append(header, fmt.Sprintf("run %d", i))
		}
		t := &table{header: append(header, "median")}
		row := func(name string, get func(sideRun) time.Duration, side []sideRun) time.Duration {
			cells := []string{name}
			var ds []time.Duration
			for _, r := range side {
				ds = append(ds, get(r))
				cells = append(cells, secs(get(r)))
			}
			t.add(append(cells, secs(median(ds)))...)
			return median(ds)
		}
		bytesRow := func(name string, side []sideRun) {
			cells := []string{name}
			for _, r := range side {
				cells = append(cells, bytesIEC(r.tunnel))
			}
			t.add(append(cells, "")...)
		}
		tm := row("tether deploy frame1 (wall)", func(r sideRun) time.Duration { return r.total }, tethers[p])
		row("  ↳ build (its report; evaluation, no-op build)", func(r sideRun) time.Duration { return r.eval }, tethers[p])
		row("  ↳ copy (its report)", func(r sideRun) time.Duration { return r.copy }, tethers[p])
		// The report's activate phase runs to the commit, so it holds the
		// wait for the confirmation as well: confirm is a part of it.
		row("  ↳ activate, to the commit (its report)", func(r sideRun) time.Duration { return r.activate }, tethers[p])
		row("    ↳ of which confirm (its report)", func(r sideRun) time.Duration { return r.confirm }, tethers[p])
		row("  ↳ the rest: loading the flake, connecting, agent check/upload", func(r sideRun) time.Duration {
			return r.total - r.eval - r.copy - r.activate
		}, tethers[p])
		bytesRow("  ↳ bytes over the tunnel", tethers[p])
		row("by hand: nix build", func(r sideRun) time.Duration { return r.eval }, hands[p])
		row("by hand: nix copy --to ssh://", func(r sideRun) time.Duration { return r.copy }, hands[p])
		row("by hand: ssh nix-env --set", func(r sideRun) time.Duration { return r.set }, hands[p])
		row("by hand: ssh switch-to-configuration switch", func(r sideRun) time.Duration { return r.activate }, hands[p])
		hm := row("by hand: copy + activate", func(r sideRun) time.Duration { return r.copy + r.set + r.activate }, hands[p])
		hem := row("by hand: all four", func(r sideRun) time.Duration { return r.total }, hands[p])
		bytesRow("  ↳ bytes over the tunnel", hands[p])
		ratioRow := func(name, r string) {
			cells := make([]string, runs+2)
			cells[0], cells[runs+1] = name, r
			t.add(cells...)
		}
		ratioRow("tether / by hand (copy + activate)", ratio(tm, hm))
		ratioRow("tether / by hand (all four)", ratio(tm, hem))
		sec.tables = append(sec.tables, t)
		sec.goals = append(sec.goals, fmt.Sprintf("%s: tether ≤ 1.3× by hand: %s of copy + activate, %s of all four steps — %s",
			phase, ratio(tm, hm), ratio(tm, hem), verdict(tm*10 <= hm*13)))
	}
	return sec, nil
}

// sideRun is one deploy, by tether or by hand. For tether the phases come
// from its JSON report and total is the process's wall time; by hand each
// is a command's wall time and total their sum.
type sideRun struct {
	eval, copy, set, activate, confirm, total time.Duration
	tunnel                                    int64
}

// agentSize is the size of the agent tether uploads to this machine's
// architecture.
func agentSize(b *bench) string {
	ents, err := os.ReadDir(b.bins.AgentsDir)
	if err != nil || len(ents) == 0 {
		return "size unknown"
	}
	info, err := ents[0].Info()
	if err != nil {
		return "size unknown"
	}
	return bytesIEC(info.Size())
}

// homeFleet starts a Home fleet with the home-like tunnel and frame1's v1
// built on the runner.
func homeFleet(ctx context.Context, b *bench) (*sandbox, error) {
	s, err := b.startSandbox(ctx, testhost.Home, nil)
	if err != nil {
		return nil, err
	}
	if _, err := s.prebuild(ctx, []string{fixture.Frame1}, fixture.V1); err != nil {
		s.close()
		return nil, err
	}
	s.fleet.Relay.SetRate(homeRate)
	s.fleet.Relay.SetLatency(homeLatency)
	return s, nil
}

func tunnelBytes(r *testhost.Relay) int64 { return r.BytesUp() + r.BytesDown() }

// overheadSide installs v1 then updates to v2 on a fresh Home fleet, the
// same way for both sides: open prepares the side on the fleet and returns
// its step, which takes frame1 to the variant just set and says how long each phase
// took and which toplevel frame1 must end on ("" for any). The bytes that
// crossed the tunnel are counted here, around each step.
func overheadSide(ctx context.Context, b *bench, open func(s *sandbox) (overheadStep, error)) ([2]sideRun, error) {
	var out [2]sideRun
	s, err := homeFleet(ctx, b)
	if err != nil {
		return out, err
	}
	defer s.close()
	step, err := open(s)
	if err != nil {
		return out, err
	}
	for p, variant := range []string{fixture.V1, fixture.V2} {
		if err := s.setVariant(variant, fixture.Frame1); err != nil {
			return out, err
		}
		before := tunnelBytes(s.fleet.Relay)
		run, toplevel, err := step(ctx)
		if err != nil {
			return out, err
		}
		run.tunnel = tunnelBytes(s.fleet.Relay) - before
		if err := expectVariant(s.fleet.Host(fixture.Frame1), variant, toplevel); err != nil {
			return out, err
		}
		out[p] = run
	}
	return out, nil
}

// overheadStep takes frame1 to the flake's variant (see overheadSide).
type overheadStep func(ctx context.Context) (run sideRun, toplevel string, err error)

// overheadTether installs v1 then updates to v2 with tether.
func overheadTether(ctx context.Context, b *bench) ([2]sideRun, error) {
	return overheadSide(ctx, b, func(s *sandbox) (overheadStep, error) {
		return func(ctx context.Context) (sideRun, string, error) {
			r, err := s.deploy(ctx, runOpts{}, fixture.Frame1)
			if err != nil {
				return sideRun{}, "", err
			}
			res, _ := r.result(fixture.Frame1)
			return sideRun{
				eval: time.Duration(res.Timings.Build), copy: time.Duration(res.Timings.Copy),
				activate: time.Duration(res.Timings.Activate), confirm: time.Duration(res.Timings.Confirm),
				total: r.wall,
			}, "", nil
		}, nil
	})
}

// overheadByHand installs v1 then updates to v2 by hand.
func overheadByHand(ctx context.Context, b *bench) ([2]sideRun, error) {
	return overheadSide(ctx, b, func(s *sandbox) (overheadStep, error) {
		hand, err := s.byHand(s.fleet.Host(fixture.Frame1))
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) (h sideRun, toplevel string, err error) {
			start := time.Now()
			built, err := b.nix(ctx, "nix", "build", "--no-link", "--json", s.ref+"#"+fixture.ToplevelAttr(fixture.Frame1))
			h.eval = time.Since(start)
			if err != nil {
				return h, "", err
			}
			var res []struct {
				Outputs map[string]string `json:"outputs"`
			}
			if err := json.Unmarshal(built, &res); err != nil || len(res) != 1 || res[0].Outputs["out"] == "" {
				return h, "", fmt.Errorf("nix build --json: %v: %s", err, built)
			}
			toplevel = res[0].Outputs["out"]
			if h.copy, err = hand.copy(ctx, toplevel); err != nil {
				return h, "", err
			}
			if h.set, h.activate, err = hand.switchTo(ctx, toplevel); err != nil {
				return h, "", err
			}
			h.total = h.eval + h.copy + h.set + h.activate
			return h, toplevel, nil
		}, nil
	})
}

// expectVariant checks from the host's own state that it runs the variant
// (and, when given, that toplevel).
func expectVariant(h *testhost.Host, variant, toplevel string) error {
	g, err := generation(h)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	if g.Variant != variant || (toplevel != "" && g.Toplevel != toplevel) {
		return fmt.Errorf("%s runs %s %s, want %s %s", h.Name, g.Variant, g.Toplevel, variant, toplevel)
	}
	return nil
}
