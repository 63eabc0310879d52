//go:build linux

package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// benchParallel deploys the Home fleet (frame1 through the tunnel, rpi
// through frame1, web direct) with the default parallelism and with
// --parallel 1, each on fresh hosts: first the v1 install, then the
// v1 → v2 update.
func benchParallel(ctx context.Context, b *bench) (*section, error) {
	rounds := pick(b, 3, 1)
	modes := []struct {
		name string
		args []string
	}{
		{"default parallelism", nil},
		{"--parallel 1", []string{"--parallel", "1"}},
	}
	install := map[string][]time.Duration{}
	update := map[string][]time.Duration{}
	loads := map[string][]string{}
	for round := 1; round <= rounds; round++ {
		for _, m := range modes {
			b.logf("parallel: round %d/%d, %s", round, rounds, m.name)
			first, upd, err := parallelRound(ctx, b, m.args)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m.name, err)
			}
			install[m.name] = append(install[m.name], first.wall)
			update[m.name] = append(update[m.name], upd.wall)
			loads[m.name] = append(loads[m.name], load(first)+" / "+load(upd))
		}
	}
	t := &table{header: []string{"mode", "install v1 (3 nodes)", "update v1 → v2 (3 nodes)", "runs", "CPU load (install / update, per run)"}}
	for _, m := range modes {
		t.add(m.name, secs(median(install[m.name])), secs(median(update[m.name])), fmt.Sprint(rounds), strings.Join(loads[m.name], ", "))
	}
	seqName, parName := modes[1].name, modes[0].name
	t.add("sequential / parallel",
		ratio(median(install[seqName]), median(install[parName])),
		ratio(median(update[seqName]), median(update[parName])), "", "")
	return &section{
		setup: fmt.Sprintf("`tether deploy` of the whole Home fleet (frame1 through the tunnel relay, unshaped; rpi only through frame1; web direct), "+
			"fresh sandbox hosts for each mode and round, closures pre-built on the runner. Wall time of the tether process, median of %d round(s). "+
			"CPU load: CPU time the whole machine was busy (/proc/stat) over wall × CPUs.", rounds),
		tables: []*table{t},
	}, nil
}

// parallelRound times the v1 install and the v2 update on a fresh Home fleet.
func parallelRound(ctx context.Context, b *bench, extra []string) (install, update *tetherRun, err error) {
	s, err := b.startSandbox(ctx, testhost.Home, nil)
	if err != nil {
		return nil, nil, err
	}
	defer s.close()
	hosts := fixture.Hosts()
	if _, err := s.prebuild(ctx, hosts, fixture.V1, fixture.V2); err != nil {
		return nil, nil, err
	}
	if install, err = s.deploy(ctx, runOpts{}, extra...); err != nil {
		return nil, nil, err
	}
	if err := s.setVariant(fixture.V2, hosts...); err != nil {
		return nil, nil, err
	}
	if update, err = s.deploy(ctx, runOpts{}, extra...); err != nil {
		return nil, nil, err
	}
	return install, update, nil
}
