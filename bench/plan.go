//go:build linux

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// benchPlan times `tether plan` of the whole Home fleet against the deploy
// it describes: the plan only reads each node's current closure, the
// deploy copies, activates and confirms.
func benchPlan(ctx context.Context, b *bench) (*section, error) {
	rounds := pick(b, 3, 1)
	var plans, dryPlans, deploys []time.Duration
	for round := 1; round <= rounds; round++ {
		b.logf("plan: round %d/%d", round, rounds)
		s, err := b.startSandbox(ctx, testhost.Home, nil)
		if err != nil {
			return nil, err
		}
		hosts := fixture.Hosts()
		err = func() error {
			defer s.close()
			if _, err := s.prebuild(ctx, hosts, fixture.V1, fixture.V2); err != nil {
				return err
			}
			if _, err := s.deploy(ctx, runOpts{}); err != nil {
				return err
			}
			if err := s.setVariant(fixture.V2, hosts...); err != nil {
				return err
			}
			for _, args := range [][]string{{"--format", "json"}, {"--format", "json", "--dry-activate"}} {
				r, err := s.tether(ctx, runOpts{}, "plan", args...)
				if err != nil {
					return err
				}
				if r.code != 0 {
					return fmt.Errorf("plan failed: %s", r)
				}
				if len(args) == 2 {
					plans = append(plans, r.wall)
				} else {
					dryPlans = append(dryPlans, r.wall)
				}
			}
			r, err := s.deploy(ctx, runOpts{})
			if err != nil {
				return err
			}
			deploys = append(deploys, r.wall)
			return nil
		}()
		if err != nil {
			return nil, err
		}
	}
	t := &table{header: []string{"command (3 nodes, v1 → v2)", "median wall", "vs deploy"}}
	d := median(deploys)
	t.add("tether plan", secs(median(plans)), ratio(median(plans), d))
	t.add("tether plan --dry-activate", secs(median(dryPlans)), ratio(median(dryPlans), d))
	t.add("tether deploy", secs(d), "1.00×")
	return &section{
		setup: fmt.Sprintf("Home fleet (frame1 through the unshaped tunnel relay, rpi through frame1, web direct) on v1; the flake changed to v2. "+
			"`tether plan` (read-only queries of each node's current closure, the diff on the runner), `tether plan --dry-activate` "+
			"(also copies the closures and runs the dry activation), then the `tether deploy` the plan describes. Closures pre-built on the runner; "+
			"median of %d round(s), a fresh fleet per round.", rounds),
		tables: []*table{t},
	}, nil
}
