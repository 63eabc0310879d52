package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"
)

// stages is one node's pipeline as the scheduler sees it. *nodeRun
// implements it on real machines; the scheduler's tests use a fake, so the
// policy (waves, abort and roll back, keep going, build failures,
// interrupts) is tested in milliseconds without a machine.
type stages interface {
	name() string
	wave() int
	// status is the node's outcome so far; StatusPending until finished.
	status() Status
	// prepare connects to the node, installs the agent and copies the
	// closure: the node's store gains paths, nothing else changes. It
	// returns StatusPending when the node is ready to activate, else the
	// node's outcome (failed, unreachable, or skipped when interrupted).
	prepare(ctx context.Context) (Status, error)
	// activate activates the node's profiles under magic rollback and
	// follows them to their end.
	activate(ctx context.Context) (Status, error)
	// changed reports whether this run activated something on the node
	// that revert would take back.
	changed() bool
	// revert takes the node back to what it ran before the run, because
	// another node failed.
	revert(ctx context.Context, reason string) (Status, error)
	// finish records the node's outcome.
	finish(Status, error)
}

// scheduler is the deploy policy: which nodes run when, and what happens
// to the others when one fails.
//
//   - Waves run in order: every node of a lower wave ends before a node of
//     the next one starts. Within a wave at most parallel nodes run at once.
//   - A failed build fails its nodes; without keepGoing every other node is
//     skipped, before anything on any node changed.
//   - Without keepGoing, the first node that fails stops the run: nodes not
//     yet started, or copied but not yet activated, are skipped, and once
//     the running ones have ended, the nodes this run already activated are
//     reverted, so the fleet is not left half on the new release.
//   - An interrupt (ctx cancelled) starts nothing new; a node being
//     activated is followed to its end (it rolls back by itself, since
//     nobody confirms it).
type scheduler struct {
	parallel  int
	keepGoing bool
}

// run drives nodes through build, prepare, activate and, when a node
// failed, the revert of the others. build marks the nodes whose build
// failed (finish with their failure).
func (s scheduler) run(ctx context.Context, nodes []stages, build func(context.Context)) {
	if build != nil {
		build(ctx)
	}
	if !s.keepGoing && anyFinished(nodes) {
		for _, n := range nodes {
			if n.status() == StatusPending {
				n.finish(StatusSkipped, errors.New("not started: a build failed"))
			}
		}
		return
	}

	var mu sync.Mutex
	failed := "" // the node whose failure stops the run
	stopped := func() string {
		mu.Lock()
		defer mu.Unlock()
		return failed
	}
	fail := func(n stages) {
		if s.keepGoing {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if failed == "" {
			failed = n.name()
		}
	}
	// skip says why a node must not go on to its next stage, if it must not.
	skip := func(what string) error {
		if f := stopped(); f != "" {
			return fmt.Errorf("not %s: node %s failed", what, f)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("not %s: interrupted", what)
		}
		return nil
	}

	for _, wave := range byWave(nodes) {
		g := new(errgroup.Group)
		g.SetLimit(parallel(s.parallel))
		for _, n := range wave {
			if n.status() != StatusPending {
				continue // its build failed
			}
			g.Go(func() error {
				if err := skip("started"); err != nil {
					n.finish(StatusSkipped, err)
					return nil
				}
				if st, err := n.prepare(ctx); st != StatusPending {
					n.finish(st, err)
					if st.Failed() {
						fail(n)
					}
					return nil
				}
				if err := skip("activated"); err != nil {
					n.finish(StatusSkipped, err)
					return nil
				}
				st, err := n.activate(ctx)
				n.finish(st, err)
				if st.Failed() {
					fail(n)
				}
				return nil
			})
		}
		g.Wait()
	}

	if f := stopped(); f != "" {
		s.revert(ctx, nodes, fmt.Sprintf("node %s failed", f))
	}
}

// revert takes back, all at once, the nodes this run activated.
func (s scheduler) revert(ctx context.Context, nodes []stages, reason string) {
	g := new(errgroup.Group)
	for _, n := range nodes {
		if !n.changed() || !n.status().OK() || n.status() == StatusDryActivated {
			continue
		}
		g.Go(func() error {
			n.finish(n.revert(ctx, reason))
			return nil
		})
	}
	g.Wait()
}

func anyFinished(nodes []stages) bool {
	for _, n := range nodes {
		if n.status() != StatusPending {
			return true
		}
	}
	return false
}

// byWave groups nodes by wave, lowest first, keeping their order within a
// wave.
func byWave(nodes []stages) [][]stages {
	byWave := map[int][]stages{}
	var order []int
	for _, n := range nodes {
		w := n.wave()
		if _, ok := byWave[w]; !ok {
			order = append(order, w)
		}
		byWave[w] = append(byWave[w], n)
	}
	sort.Ints(order)
	out := make([][]stages, len(order))
	for i, w := range order {
		out[i] = byWave[w]
	}
	return out
}

func parallel(n int) int {
	if n <= 0 {
		return DefaultParallel
	}
	return n
}
