//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// benchMemory deploys a system with a small and one with a large
// incompressible package to two fresh hosts and records the peak resident
// memory of the deployer, of the agent on the node, and of the processes
// doing the store work, so it shows whether transfer memory stays flat.
func benchMemory(ctx context.Context, b *bench) (*section, error) {
	small := int64(10 << 20)
	large := pick(b, int64(1<<30), int64(100<<20))
	need := pick(b, int64(5<<30), int64(1<<30))
	if msg := diskShortage(need); msg != "" {
		return &section{
			setup: "Skipped.",
			notes: []string{msg},
		}, nil
	}
	hSmall, hLarge := fixture.GenericHost(1), fixture.GenericHost(2)
	s, err := b.startSandbox(ctx, testhost.Direct(2), map[string]int64{hSmall: small, hLarge: large})
	if err != nil {
		return nil, err
	}
	defer s.close()
	defer b.dropLater(ctx, s, []string{hSmall, hLarge}, fixture.V1)

	t := &table{header: []string{"closure", "closure size", "build on the runner", "deploy wall", "sent",
		"tether peak RSS", "tether + reaped children (wait4)", "largest child", "agent peak RSS", "nix-store --import peak RSS"}}
	var selfPeaks, importPeaks []int64
	for _, c := range []struct {
		host  string
		bytes int64
	}{{hSmall, small}, {hLarge, large}} {
		b.logf("memory: building the system with %s of ballast", bytesIEC(c.bytes))
		build, err := s.prebuild(ctx, []string{c.host}, fixture.V1)
		if err != nil {
			return nil, err
		}
		top, err := s.outPath(ctx, fixture.ToplevelAttr(c.host))
		if err != nil {
			return nil, err
		}
		closure, err := b.closureSize(ctx, top)
		if err != nil {
			return nil, err
		}
		b.logf("memory: deploying %s to %s", bytesIEC(closure), c.host)
		r, err := s.deploy(ctx, runOpts{memHost: s.fleet.Host(c.host)}, c.host)
		if err != nil {
			return nil, err
		}
		if err := expectVariant(s.fleet.Host(c.host), fixture.V1, top); err != nil {
			return nil, err
		}
		selfPeaks = append(selfPeaks, r.mem.Self.KiB)
		importPeaks = append(importPeaks, r.mem.Import.KiB)
		child := r.mem.Children.String()
		if r.mem.Children.What != "" {
			child += " (" + r.mem.Children.What + ")"
		}
		t.add(fmt.Sprintf("v1 + %s ballast", bytesIEC(c.bytes)), bytesIEC(closure), secs(build), secs(r.wall), bytesIEC(sent(r)),
			r.mem.Self.String(), bytesIEC(r.treeRSS*1024), child, r.mem.Agent.String(), r.mem.Import.String())
	}
	grow := selfPeaks[1] - selfPeaks[0]
	flat := grow*5 <= selfPeaks[0] || grow <= 10<<10 // within 20% or 10 MiB
	var notes []string
	if importPeaks[1] >= 2*importPeaks[0] {
		notes = append(notes, "The node's `nix-store --import` grows with the largest store path: this Nix (see the machine line) "+
			"holds each path's whole NAR in memory while importing it. tether feeds it a stream and stays flat; a target with little RAM "+
			"needs room for its largest path at the import.")
	}
	return &section{
		notes: notes,
		setup: fmt.Sprintf("Direct fleet of two fresh hosts; each gets a v1 system with an incompressible ballast package (%s and %s), "+
			"built on the runner first (the build time is shown, not counted in the deploy). One `tether deploy <host>` each. "+
			"Peak RSS is each process's VmHWM from /proc, polled every %s while the deploy runs: *tether* is the deployer process alone; "+
			"*wait4* is the kernel's peak over tether and the children it reaped (nix evaluation, nix-store --export, …); "+
			"*agent* is the largest tether-agent process on the node (the sandbox hosts share the runner's PID namespace); "+
			"*nix-store --import* is the store import on the node, fed by the SSH session.", bytesIEC(small), bytesIEC(large), sampleEvery),
		tables: []*table{t},
		goals: []string{fmt.Sprintf("tether's memory stays flat with closure size: %s for %s vs %s for %s — %s",
			bytesIEC(selfPeaks[1]*1024), bytesIEC(large), bytesIEC(selfPeaks[0]*1024), bytesIEC(small), verdict(flat))},
	}, nil
}

// diskShortage says why the large closure cannot be deployed here, "" when
// there is room: it lives in the runner's store and in a sandbox host's.
func diskShortage(need int64) string {
	for _, dir := range []string{"/nix/store", testhost.BaseDir} {
		free, err := freeBytes(dir)
		if err != nil {
			return fmt.Sprintf("skipped: cannot tell the free space under %s: %v", dir, err)
		}
		if free < need {
			return fmt.Sprintf("skipped: only %s free under %s (df), the large closure needs %s", bytesIEC(free), dir, bytesIEC(need))
		}
	}
	return ""
}

// dropLater notes the systems of the hosts in the variants, and their
// ballast, for deletion from the runner's store when the benchmarks end,
// so a run does not leave gigabytes behind.
func (b *bench) dropLater(ctx context.Context, s *sandbox, hosts []string, variants ...string) {
	ctx = context.WithoutCancel(ctx)
	for _, h := range hosts {
		for _, v := range variants {
			top, err := s.outPath(ctx, fixture.VariantAttr(h, v))
			if err != nil {
				continue
			}
			b.drop = append(b.drop, top)
			if target, err := os.Readlink(filepath.Join(top, "ballast")); err == nil {
				b.drop = append(b.drop, target)
			}
		}
	}
}

// dropNow deletes what dropLater noted, systems before their ballast.
// A path still in use elsewhere stays; that is reported, not an error.
func (b *bench) dropNow(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	kept := 0
	for _, p := range b.drop {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if _, err := b.nix(ctx, "nix-store", "--delete", p); err != nil {
			kept++
		}
	}
	if kept > 0 {
		b.logf("%d ballast store paths could not be deleted from the runner's store (still in use)", kept)
	}
	b.drop = nil
}
