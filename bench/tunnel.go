//go:build linux

package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// benchTunnel counts the bytes that cross the tunnel (the relay in front
// of frame1) when rpi, reachable only through frame1, is updated from v1
// to v2 with a large new package in it: (a) built on the runner and
// copied through the tunnel, (b) built on frame1 with --build-host frame1
// and copied from frame1 to rpi over the LAN.
func benchTunnel(ctx context.Context, b *bench) (*section, error) {
	ballast := pick(b, int64(100<<20), int64(20<<20))
	t := &table{header: []string{"mode", "tunnel up", "tunnel down", "tunnel total", "of the v2 closure", "sent to rpi (NAR before compression)", "wall"}}
	sec := &section{
		setup: fmt.Sprintf("Home fleet, tunnel relay unshaped (bytes are what is measured). rpi's systems carry an incompressible ballast package of %s, "+
			"new in each release, so the v1 → v2 update has a large new path. Setup (not counted): `tether deploy` of v1 to all three nodes, "+
			"which also leaves tether's agent on frame1 and rpi. Then the counted run: `tether deploy rpi` for v2. "+
			"Tunnel bytes are the relay's counters (both directions, everything: SSH handshakes, queries, the copy), taken around that one command. "+
			"A fresh fleet for each mode.", bytesIEC(ballast)),
		tables: []*table{t},
	}

	a, closure, err := tunnelRun(ctx, b, ballast, nil)
	if err != nil {
		return nil, fmt.Errorf("(a) built on the runner: %w", err)
	}
	addTunnelRow(t, "(a) build on the runner, copy through the tunnel", a, closure)

	var bRun *tunnelResult
	if why := buildHostMissing(ctx, b); why != "" {
		t.add("(b) --build-host frame1", "not available", "", "", "", "", "")
		sec.notes = append(sec.notes, "(b) not available: "+why)
	} else if r, _, err := tunnelRun(ctx, b, ballast, []string{"--build-host", fixture.Frame1}); err != nil {
		t.add("(b) --build-host frame1", "not available (failed)", "", "", "", "", "")
		sec.notes = append(sec.notes, "(b) not available: the deploy with --build-host frame1 failed: "+firstLines(err.Error(), 12))
	} else {
		bRun = r
		addTunnelRow(t, "(b) --build-host frame1: build on frame1, copy frame1 → rpi on the LAN", r, closure)
	}
	sec.notes = append(sec.notes, fmt.Sprintf("rpi's v2 closure: %s (NAR, measured in the runner's store).", bytesIEC(closure)))
	if bRun != nil {
		tot := bRun.up + bRun.down
		sec.goals = append(sec.goals, fmt.Sprintf("(b) sends < 1%% of the closure over the tunnel: %s of %s = %s — %s",
			bytesIEC(tot), bytesIEC(closure), percent(tot, closure), verdict(tot*100 < closure)))
	} else {
		sec.goals = append(sec.goals, "(b) sends < 1% of the closure over the tunnel: not measured, --build-host not available")
	}
	return sec, nil
}

type tunnelResult struct {
	up, down int64
	stream   int64 // export stream bytes sent to rpi, from the report
	wall     time.Duration
}

func addTunnelRow(t *table, mode string, r *tunnelResult, closure int64) {
	t.add(mode, bytesIEC(r.up), bytesIEC(r.down), bytesIEC(r.up+r.down), percent(r.up+r.down, closure), bytesIEC(r.stream), secs(r.wall))
}

// tunnelRun sets up a fresh Home fleet on v1 and counts the tunnel bytes of
// the v2 update of rpi; it also returns rpi's v2 closure size.
func tunnelRun(ctx context.Context, b *bench, ballast int64, extra []string) (*tunnelResult, int64, error) {
	s, err := b.startSandbox(ctx, testhost.Home, map[string]int64{fixture.RPi: ballast})
	if err != nil {
		return nil, 0, err
	}
	defer s.close()
	defer b.dropLater(ctx, s, []string{fixture.RPi}, fixture.V1, fixture.V2)
	b.logf("tunnel: building and deploying v1 to the fleet (setup)")
	if _, err := s.prebuild(ctx, fixture.Hosts(), fixture.V1); err != nil {
		return nil, 0, err
	}
	if _, err := s.deploy(ctx, runOpts{}); err != nil {
		return nil, 0, err
	}
	if err := s.setVariant(fixture.V2, fixture.RPi); err != nil {
		return nil, 0, err
	}
	// The runner's build of v2 serves only to measure the closure; in (b)
	// the deploy builds it again on frame1, whose store lacks it.
	if _, err := s.prebuild(ctx, []string{fixture.RPi}, fixture.V2); err != nil {
		return nil, 0, err
	}
	top, err := s.outPath(ctx, fixture.ToplevelAttr(fixture.RPi))
	if err != nil {
		return nil, 0, err
	}
	closure, err := b.closureSize(ctx, top)
	if err != nil {
		return nil, 0, err
	}
	b.logf("tunnel: updating rpi to v2 %s", strings.Join(extra, " "))
	relay := s.fleet.Relay
	up0, down0 := relay.BytesUp(), relay.BytesDown()
	r, err := s.deploy(ctx, runOpts{}, append(append([]string(nil), extra...), fixture.RPi)...)
	if err != nil {
		return nil, 0, err
	}
	res := &tunnelResult{up: relay.BytesUp() - up0, down: relay.BytesDown() - down0, wall: r.wall}
	if nr, ok := r.result(fixture.RPi); ok {
		res.stream = nr.Copied.StreamBytes
	}
	return res, closure, expectVariant(s.fleet.Host(fixture.RPi), fixture.V2, top)
}

// buildHostMissing says why `tether deploy --build-host` cannot be used, ""
// when it can.
func buildHostMissing(ctx context.Context, b *bench) string {
	out, err := exec.CommandContext(ctx, b.bins.Tether, "deploy", "--help").CombinedOutput()
	if err != nil && len(out) == 0 {
		return fmt.Sprintf("tether deploy --help: %v", err)
	}
	if !strings.Contains(string(out), "--build-host") {
		return "tether deploy has no --build-host flag yet"
	}
	return ""
}

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, " / ")
}
