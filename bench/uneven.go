//go:build linux

package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// unevenJobs is the runner's max-jobs in the uneven benchmark: as many
// builds at once as the fleet has nodes, as NixOS and the CI installers
// configure (max-jobs = auto); with one job, nix builds the nodes one
// after the other whoever asks.
const unevenJobs = 4

// benchUneven deploys a fleet whose nodes take different times to build,
// where each node's copy can start as soon as its own closure is built,
// and compares it with the slowest node deployed alone and with building
// everything before copying anything.
func benchUneven(ctx context.Context, b *bench) (*section, error) {
	rounds := pick(b, 3, 1)
	// web on its own link, rpi and frame1 behind the tunnel, frame1
	// slowest to build.
	hosts := []string{fixture.Web, fixture.RPi, fixture.Frame1}
	seconds := pick(b, []int{2, 4, 8}, []int{1, 2, 4})
	ballast := int64(pick(b, 8<<20, 4<<20))
	slowest := hosts[len(hosts)-1]
	buildTime := func(salt string, shared int) fixture.BuildTime {
		bt := fixture.BuildTime{Salt: salt, Shared: shared, Seconds: map[string]int{}}
		for i, h := range hosts {
			bt.Seconds[h] = seconds[i]
		}
		return bt
	}
	s, err := b.startSandboxWith(ctx, testhost.Home, func(c *fixture.Config) {
		c.Ballast = map[string]int64{}
		for _, h := range hosts {
			c.Ballast[h] = ballast
		}
		bt := buildTime("prebuilt", 0)
		c.BuildTime = &bt
	})
	if err != nil {
		return nil, err
	}
	defer s.close()
	s.fleet.Relay.SetRate(homeRate)
	s.fleet.Relay.SetLatency(homeLatency)
	b.dropLater(ctx, s, hosts, fixture.V1, fixture.V2)
	env := fixture.WithNixConfig(b.env, fmt.Sprintf("max-jobs = %d\n", unevenJobs))
	// Every part of the systems but the slow builds is built once.
	if _, err := s.prebuild(ctx, hosts, fixture.V1, fixture.V2); err != nil {
		return nil, err
	}
	v1 := map[string]string{}
	for _, h := range hosts {
		if v1[h], err = s.outPath(ctx, fixture.ProfileAttr(h, fixture.V1)); err != nil {
			return nil, err
		}
	}
	// The nodes run v1 and have the agent.
	if _, err := s.deploy(ctx, runOpts{}, hosts...); err != nil {
		return nil, err
	}
	if err := s.setVariant(fixture.V2, hosts...); err != nil {
		return nil, err
	}
	// Salts unique to this run of the bench: the runner's store keeps what
	// earlier runs built.
	salt, run := 0, time.Now().UnixNano()
	// fresh starts a measurement: new slow builds, the hosts back on v1
	// without v2's paths.
	freshStart := func(shared int, hs ...string) error {
		salt++
		if err := fixture.SetBuildTime(s.dir, buildTime(fmt.Sprintf("%x-%d", run, salt), shared)); err != nil {
			return err
		}
		for _, h := range hs {
			if err := resetHost(ctx, s.fleet.Host(h), v1[h]); err != nil {
				return err
			}
		}
		return nil
	}

	var alone, fleet []*tetherRun
	var firstBuilds, firstDeploys []time.Duration
	for round := 1; round <= rounds; round++ {
		b.logf("uneven: round %d/%d, %s alone", round, rounds, slowest)
		if err := freshStart(0, slowest); err != nil {
			return nil, err
		}
		r, err := s.deploy(ctx, runOpts{env: env}, slowest)
		if err != nil {
			return nil, err
		}
		alone = append(alone, r)

		b.logf("uneven: round %d/%d, the fleet", round, rounds)
		if err := freshStart(0, hosts...); err != nil {
			return nil, err
		}
		if r, err = s.deploy(ctx, runOpts{env: env}, hosts...); err != nil {
			return nil, err
		}
		fleet = append(fleet, r)
		b.showTimeline("uneven", r)

		b.logf("uneven: round %d/%d, building everything first", round, rounds)
		if err := freshStart(0, hosts...); err != nil {
			return nil, err
		}
		args := []string{"build", "--no-link"}
		for _, h := range hosts {
			args = append(args, s.ref+"#"+fixture.ProfileAttr(h, fixture.V2))
		}
		start := time.Now()
		if _, err := b.nixEnv(ctx, env, "nix", args...); err != nil {
			return nil, err
		}
		firstBuilds = append(firstBuilds, time.Since(start))
		if r, err = s.deploy(ctx, runOpts{env: env}, hosts...); err != nil {
			return nil, err
		}
		firstDeploys = append(firstDeploys, r.wall)
	}

	t := newRoundsTable("deploy v1 → v2", rounds)
	row := t.row
	walls := func(runs []*tetherRun) []time.Duration {
		var out []time.Duration
		for _, r := range runs {
			out = append(out, r.wall)
		}
		return out
	}
	am := row(fmt.Sprintf("%s alone (builds %d s): tether deploy %s", slowest, seconds[len(seconds)-1], slowest), walls(alone))
	fm := row("the fleet, copies while building: tether deploy "+strings.Join(hosts, " "), walls(fleet))
	var sums []time.Duration
	for i := range firstBuilds {
		sums = append(sums, firstBuilds[i]+firstDeploys[i])
	}
	bm := row("the fleet, everything built first: nix build of the three, then tether deploy", sums)
	row("  ↳ nix build", firstBuilds)
	row("  ↳ tether deploy", firstDeploys)
	t.summary("fleet (copies while building) / "+slowest+" alone", ratio(fm, am))
	t.summary("fleet (everything built first) / "+slowest+" alone", ratio(bm, am))

	steps := &table{header: []string{"the fleet's run: node (build)", "built at", "copied at", "activated and confirmed at"}}
	for i, h := range hosts {
		at := func(prefix string) string {
			var ds []time.Duration
			for _, r := range fleet {
				if d, ok := r.at("[" + h + "] " + prefix); ok {
					ds = append(ds, d)
				}
			}
			if len(ds) == 0 {
				return "—"
			}
			return secs(median(ds))
		}
		steps.add(fmt.Sprintf("%s (%d s)", h, seconds[i]), at("build: built"), at("copy: copied"), at("done:"))
	}

	builds, err := buildProcesses(ctx, b, s, env, hosts, func() error { return freshStart(2) })
	if err != nil {
		return nil, err
	}
	return &section{
		setup: fmt.Sprintf("The Home fleet: %s on its own link, %s and %s behind the tunnel relay shaped to %d Mbit/s each way and %s one-way latency (their copies share it). "+
			"Their v2 systems take %s s to build (a sleeping derivation, new in every run) and hold a new %s incompressible package each; "+
			"the runner's nix runs up to %d build jobs (max-jobs, as `auto` gives a machine with that many cores). "+
			"Each run starts from the hosts on v1 without v2's paths; %d round(s), median. "+
			"*Everything built first* is the order before copies while building: the builds of all nodes, then the copies; here a `nix build` of the three systems, then `tether deploy`, which finds them built.",
			hosts[0], hosts[1], hosts[2], homeRate*8/1_000_000, homeLatency, joinInts(seconds, ", "), bytesIEC(ballast), unevenJobs, rounds),
		tables: []*table{t.table, steps, builds},
		goals: []string{fmt.Sprintf("the fleet within 10%% of its slowest node's build + copy + activation (that node deployed alone): %s — %s; everything built first: %s",
			ratio(fm, am), verdict(fm*10 <= am*11), ratio(bm, am))},
		notes: []string{"The third table is why tether builds a fleet in one nix process and watches each node's outputs become valid, " +
			"rather than running a nix process per node: processes that share a dependency wait on each other's locks and notice their release only at nix's next poll, seconds later."},
	}, nil
}

// buildProcesses measures, for the fleet's v2 systems with a 2 s
// dependency they all share, when each node's system is ready: built by
// one nix-store --realise (watched by polling validity, as tether does)
// or by one nix-store --realise per node at once.
func buildProcesses(ctx context.Context, b *bench, s *sandbox, env []string, hosts []string, fresh func() error) (*table, error) {
	t := &table{header: append(append([]string{"builds only, 2 s shared dependency: ready at"}, hosts...), "all")}
	for _, mode := range []string{"one nix-store --realise for the fleet", "one nix-store --realise per node, at once"} {
		if err := fresh(); err != nil {
			return nil, err
		}
		drvs, outs := make([]string, len(hosts)), make([]string, len(hosts))
		for i, h := range hosts {
			attr := s.ref + "#" + fixture.ProfileAttr(h, fixture.V2)
			d, err := b.nix(ctx, "nix", "eval", "--raw", attr+".drvPath")
			if err != nil {
				return nil, err
			}
			o, err := b.nix(ctx, "nix", "eval", "--raw", attr+".outPath")
			if err != nil {
				return nil, err
			}
			drvs[i], outs[i] = strings.TrimSpace(string(d)), strings.TrimSpace(string(o))
		}
		b.logf("uneven: builds only, %s", mode)
		ready := make([]time.Duration, len(hosts))
		start := time.Now()
		var err error
		if strings.HasPrefix(mode, "one nix-store --realise for") {
			err = realiseWatched(ctx, b, env, drvs, outs, start, ready)
		} else {
			var wg sync.WaitGroup
			errs := make([]error, len(hosts))
			for i := range hosts {
				wg.Go(func() {
					_, errs[i] = b.nixEnv(ctx, env, "nix-store", "--realise", drvs[i])
					ready[i] = time.Since(start)
				})
			}
			wg.Wait()
			for _, e := range errs {
				err = e
				if e != nil {
					break
				}
			}
		}
		if err != nil {
			return nil, err
		}
		cells := []string{mode}
		for _, d := range ready {
			cells = append(cells, secs(d))
		}
		t.add(append(cells, secs(slices.Max(ready)))...)
	}
	return t, nil
}

// realiseWatched runs one nix-store --realise of drvs and notes, polling
// every 50 ms, when each of outs became valid.
func realiseWatched(ctx context.Context, b *bench, env, drvs, outs []string, start time.Time, ready []time.Duration) error {
	done := make(chan error, 1)
	go func() {
		_, err := b.nixEnv(ctx, env, "nix-store", append([]string{"--realise"}, drvs...)...)
		done <- err
	}()
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
			finished = true
		case <-time.After(50 * time.Millisecond):
		}
		for i, o := range outs {
			if ready[i] != 0 {
				continue
			}
			if _, err := b.nixEnv(ctx, env, "nix-store", "--check-validity", o); err == nil {
				ready[i] = time.Since(start)
			}
		}
	}
	return nil
}

func joinInts(ns []int, sep string) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, sep)
}
