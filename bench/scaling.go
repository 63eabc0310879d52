//go:build linux

package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// benchScaling deploys the same release to groups of 1, 8 and 16 fresh
// hosts of one direct fleet (each host on its own link from the runner),
// then updates each group to v2. Every group is deployed on its own, so a
// group's hosts start from empty stores.
func benchScaling(ctx context.Context, b *bench) (*section, error) {
	sizes := pick(b, []int{1, 8, 16}, []int{1, 8})
	total := 0
	for _, n := range sizes {
		total += n
	}
	s, err := b.startSandbox(ctx, testhost.Direct(total), nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	groups := make([][]string, len(sizes))
	next := 1
	for i, n := range sizes {
		groups[i] = hostNames(next, n)
		next += n
	}
	all := hostNames(1, total)
	b.logf("scaling: pre-building v1 and v2 for %d hosts", total)
	if _, err := s.prebuild(ctx, all, fixture.V1, fixture.V2); err != nil {
		return nil, err
	}

	phases := []string{"install v1 onto empty stores", "update v1 → v2"}
	runs := make([][]*tetherRun, len(phases))
	for p, phase := range phases {
		if p == 1 {
			if err := s.setVariant(fixture.V2, all...); err != nil {
				return nil, err
			}
		}
		for _, g := range groups {
			b.logf("scaling: %s, %d host(s)", phase, len(g))
			r, err := s.deploy(ctx, runOpts{}, g...)
			if err != nil {
				return nil, err
			}
			runs[p] = append(runs[p], r)
		}
	}

	// Real activations take seconds (services restart); the fixture's are
	// instant, which leaves only CPU work and makes the shared machine the
	// bottleneck. The same groups switch back to v1 (nothing to copy) with
	// each activation taking 5 s, by default and with --parallel 16.
	const delay = 5
	for _, h := range all {
		if _, err := s.fleet.Host(h).Exec(ctx, "sh", "-c", `mkdir -p /run/fixture && echo "$1" > /run/fixture/activation-delay`, "sh", fmt.Sprint(delay)); err != nil {
			return nil, err
		}
	}
	if err := s.setVariant(fixture.V1, all...); err != nil {
		return nil, err
	}
	slowPhase := fmt.Sprintf("v2 → v1, %d s activations", delay)
	var slowRuns []*tetherRun
	var slowLabels []string
	for i, g := range groups {
		extra := [][]string{nil}
		if i == len(groups)-1 && len(g) > 8 {
			extra = append(extra, []string{"--parallel", "8"})
		}
		for _, x := range extra {
			if x != nil {
				// Back to v2 first, so this run switches too.
				if err := s.setVariant(fixture.V2, g...); err != nil {
					return nil, err
				}
				if _, err := s.deploy(ctx, runOpts{}, g...); err != nil {
					return nil, err
				}
				if err := s.setVariant(fixture.V1, g...); err != nil {
					return nil, err
				}
			}
			b.logf("scaling: %s, %d host(s) %v", slowPhase, len(g), x)
			r, err := s.deploy(ctx, runOpts{}, append(append([]string{}, x...), g...)...)
			if err != nil {
				return nil, err
			}
			label := fmt.Sprint(len(g))
			if x != nil {
				label += " (" + strings.Join(x, " ") + ")"
			}
			slowRuns = append(slowRuns, r)
			slowLabels = append(slowLabels, label)
		}
	}

	t := &table{header: []string{"phase", "hosts", "wall", "vs 1 host", "slowest node", "sent", "machine CPU busy", "per host", "CPU load", "tether CPU"}}
	for p, phase := range phases {
		for i, n := range sizes {
			r := runs[p][i]
			t.add(phase, fmt.Sprint(n), secs(r.wall), ratio(r.wall, runs[p][0].wall), secs(slowest(r)),
				bytesIEC(sent(r)), secs(r.busy), secs(r.busy/time.Duration(n)), load(r), secs(r.cpu))
		}
	}
	for i, r := range slowRuns {
		n := len(r.report.Results)
		t.add(slowPhase, slowLabels[i], secs(r.wall), ratio(r.wall, slowRuns[0].wall), secs(slowest(r)),
			bytesIEC(sent(r)), secs(r.busy), secs(r.busy/time.Duration(max(n, 1))), load(r), secs(r.cpu))
	}
	last := len(sizes) - 1
	install, update := runs[0][last].wall, runs[1][last].wall
	goal := fmt.Sprintf("%d hosts ≤ 2× one host: install %s, update %s — %s",
		sizes[last], ratio(install, runs[0][0].wall), ratio(update, runs[1][0].wall),
		verdict(install <= 2*runs[0][0].wall && update <= 2*runs[1][0].wall))
	// The default-parallelism run of the largest group.
	lastSlow, lastLabel := slowRuns[0], slowLabels[0]
	for i, l := range slowLabels {
		if l == fmt.Sprint(sizes[last]) {
			lastSlow, lastLabel = slowRuns[i], l
		}
	}
	slowGoal := fmt.Sprintf("with %d s activations, %s hosts ≤ 2× one host: %s — %s",
		delay, lastLabel, ratio(lastSlow.wall, slowRuns[0].wall), verdict(lastSlow.wall <= 2*slowRuns[0].wall))
	return &section{
		setup: fmt.Sprintf("One direct fleet of %d sandbox hosts (each on its own veth link from the runner, no shaping). "+
			"Each group of fresh hosts is deployed by one `tether deploy h..` with the default parallelism (16): first v1 onto empty stores, then the v1 → v2 update. "+
			"Closures pre-built on the runner, so the times are evaluation, copy, activation and confirmation. "+
			"*wall*: the tether process; *slowest node*: the largest per-node total in its JSON report; *sent*: bytes on the wire to all nodes (zstd); "+
			"*machine CPU busy*: CPU time the whole machine spent during the run (/proc/stat: the deployer, every sandbox host's sshd, nix and activation, and anything else running); "+
			"*CPU load*: that over wall × %d CPUs; *tether CPU*: user + system time of the tether process and the local processes it ran (rusage of its tree), "+
			"the only part of the work a real fleet's machines do not bring their own CPUs for.", total, runtime.NumCPU()),
		tables: []*table{t},
		goals:  []string{goal, slowGoal},
		notes: []string{"The runner and every target share this machine's CPUs: a deploy costs the machine about the CPU time per host shown, " +
			"most of it on the target side (sshd, nix-store --import, the activation's processes) and in the kernel, " +
			"so N hosts cannot take less than N × that / CPUs however tether schedules them. Where the CPU load nears 100% the fleet is bound by the machine; " +
			"on a real fleet each target brings its own CPU.",
			"The last rows give every activation the few seconds a real machine's takes (the fixture host sleeps before activating): " +
				"then the machine is no longer saturated and the rows show how much of the per-node work tether overlaps."},
	}, nil
}

// load is the share of the machine's CPUs busy during a run.
func load(r *tetherRun) string {
	if r.wall <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", 100*r.busy.Seconds()/(r.wall.Seconds()*float64(runtime.NumCPU())))
}

// slowest is the largest per-node total time in a run's report.
func slowest(r *tetherRun) time.Duration {
	var m time.Duration
	if r.report != nil {
		for _, res := range r.report.Results {
			m = max(m, time.Duration(res.Timings.Total))
		}
	}
	return m
}

// sent sums the bytes sent to every node of a run.
func sent(r *tetherRun) int64 {
	var n int64
	if r.report != nil {
		for _, res := range r.report.Results {
			n += res.Copied.Bytes
		}
	}
	return n
}
