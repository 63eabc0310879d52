package deploy

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// stages is one node's pipeline as the scheduler sees it. *nodeRun
// implements it on real machines; the scheduler's tests use a fake, so the
// policy (copies while building, waves, abort and roll back, keep going,
// build failures, interrupts) is tested in milliseconds without a machine.
type stages interface {
	name() string
	wave() int
	// status is the node's outcome so far; StatusPending until finished.
	status() Status
	// dial connects to the node and starts checking its agent. It needs
	// nothing built, so it runs while the builds do; on the node nothing
	// changes but, at most, the agent's file. It returns StatusPending
	// when connected, else the node's outcome (unreachable, failed).
	dial(ctx context.Context) (Status, error)
	// copy copies the node's built closure and waits for the agent check:
	// the node's store gains paths, nothing else changes. It returns
	// StatusPending when the node is ready to activate, else the node's
	// outcome (failed, or skipped when interrupted).
	copy(ctx context.Context) (Status, error)
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

// buildFunc builds every node's closure. It calls built once per node as
// soon as that node's build has ended, with the build's error (nil: the
// closure is ready to copy), and returns when no build runs any more. A
// node it never reported was not built: the run stopped (ctx was
// cancelled) first.
type buildFunc func(ctx context.Context, built func(n stages, err error))

// scheduler is the deploy policy: when each node's steps run, and what
// happens to the others when one fails.
//
//   - The builds start at once, and meanwhile every node is connected to
//     and its agent checked. A node's closure is copied as soon as its own
//     build has ended: a copy changes nothing but the node's store, so it
//     waits neither for the other builds nor for its wave. At most
//     parallel nodes connect or copy at once.
//   - Activations wait: without keepGoing until every build has ended (a
//     build failing late must find every node as it was), and always
//     until every node of a lower wave has ended. At most parallel nodes
//     activate at once.
//   - Without keepGoing, the first node that fails (its build included)
//     stops the run: the builds still running are stopped, nodes not yet
//     activated are skipped, and once the running activations have ended
//     the nodes this run already activated are reverted, so the fleet is
//     not left half on the new release.
//   - An interrupt (ctx cancelled) starts nothing new; a node being
//     activated is followed to its end (it rolls back by itself, since
//     nobody confirms it).
type scheduler struct {
	parallel  int
	keepGoing bool
}

// run drives the nodes through build, dial, copy, activate and, when a node
// failed, the revert of the others.
func (s scheduler) run(ctx context.Context, nodes []stages, build buildFunc) {
	r := &schedRun{
		s:        s,
		ctx:      ctx,
		nodes:    nodes,
		built:    make(map[stages]*nodeBuild, len(nodes)),
		allBuilt: make(chan struct{}),
		ended:    make(map[stages]chan struct{}, len(nodes)),
		work:     make(chan struct{}, parallel(s.parallel)),
		act:      make(chan struct{}, parallel(s.parallel)),
	}
	for _, n := range nodes {
		r.built[n] = &nodeBuild{done: make(chan struct{})}
		r.ended[n] = make(chan struct{})
	}
	bctx, stopBuilds := context.WithCancel(ctx)
	defer stopBuilds()
	r.stopBuilds = stopBuilds
	go r.build(bctx, build)

	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(r.ended[n])
			r.node(n)
		}()
	}
	wg.Wait()
	<-r.allBuilt

	if why := r.stopped(); why != "" {
		s.revert(ctx, nodes, why)
	}
}

// schedRun is one run of the scheduler.
type schedRun struct {
	s     scheduler
	ctx   context.Context
	nodes []stages

	built    map[stages]*nodeBuild
	allBuilt chan struct{} // closed when the build has returned
	// ended is closed when a node's goroutine is done with it: the
	// gate of the next waves' activations.
	ended      map[stages]chan struct{}
	stopBuilds context.CancelFunc
	// work bounds the nodes connecting or copying; act the nodes
	// activating.
	work, act chan struct{}

	mu     sync.Mutex
	reason string // why the run stops: "node b failed"; "" while it goes on
}

// nodeBuild is what the build said of one node; the run's mu guards it.
type nodeBuild struct {
	done   chan struct{} // closed when reported, or when the build returned
	closed bool
	ok     bool
	err    error
}

func (r *schedRun) build(ctx context.Context, build buildFunc) {
	defer close(r.allBuilt)
	defer func() {
		for _, n := range r.nodes {
			r.settle(n, false, nil)
		}
	}()
	if build == nil {
		for _, n := range r.nodes {
			r.report(n, nil)
		}
		return
	}
	build(ctx, r.report)
}

// report records the end of n's build. A failed build stops the run
// unless keepGoing.
func (r *schedRun) report(n stages, err error) { r.settle(n, err == nil, err) }

// settle records, once, what became of n's build. A failure stops the run
// (unless keepGoing) in the same step, so that the node itself never
// sees the run stopped without its own failure.
func (r *schedRun) settle(n stages, ok bool, err error) {
	b := r.built[n]
	if b == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if b.closed {
		return
	}
	b.closed, b.ok, b.err = true, ok, err
	if err != nil {
		r.stop(fmt.Sprintf("node %s failed to build", n.name()))
	}
	close(b.done)
}

// node runs one node's pipeline up to its outcome (a revert aside).
func (r *schedRun) node(n stages) {
	ctx := r.ctx
	if r.halt(n, "started", r.work) {
		return
	}
	st, err := n.dial(ctx)
	r.release(r.work)
	if st != StatusPending {
		r.end(n, st, err)
		return
	}

	b := r.built[n]
	<-b.done
	if !b.ok && b.err == nil { // the build stopped before it
		if err := r.skip("built"); err != nil {
			n.finish(StatusSkipped, err)
		} else {
			r.end(n, StatusFailed, errors.New("build: ended without building it"))
		}
		return
	}
	if r.halt(n, "copied", r.work) {
		return
	}
	st, err = n.copy(ctx)
	r.release(r.work)
	if st != StatusPending {
		r.end(n, st, err)
		return
	}

	if !r.s.keepGoing {
		<-r.allBuilt
	}
	for _, m := range r.nodes {
		if m.wave() < n.wave() {
			<-r.ended[m]
		}
	}
	if r.halt(n, "activated", r.act) {
		return
	}
	st, err = n.activate(ctx)
	r.end(n, st, err)
	r.release(r.act)
}

// halt takes a slot of sem for the node's next step, unless the node
// must stop before it: its own build failed (it fails), or the run was
// stopped or interrupted (it is skipped). It reports whether it stopped
// the node; otherwise the caller holds the slot.
func (r *schedRun) halt(n stages, step string, sem chan struct{}) bool {
	acquired := r.acquire(sem)
	b := r.built[n]
	r.mu.Lock()
	buildErr := b.err
	why := r.reason
	r.mu.Unlock()
	if acquired && buildErr == nil && why == "" && r.ctx.Err() == nil {
		return false
	}
	if acquired {
		r.release(sem)
	}
	if buildErr != nil {
		r.end(n, StatusFailed, buildErr)
	} else {
		n.finish(StatusSkipped, r.skip(step))
	}
	return true
}

// end records a node's outcome; a failure stops the run unless keepGoing.
func (r *schedRun) end(n stages, st Status, err error) {
	if st.Failed() {
		// Before the outcome is out: who sees it must see the run
		// stopped.
		r.fail(fmt.Sprintf("node %s failed", n.name()))
	}
	n.finish(st, err)
}

// fail stops the run, unless keepGoing, for the first reason given.
func (r *schedRun) fail(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stop(reason)
}

// stop is fail with r.mu held.
func (r *schedRun) stop(reason string) {
	if !r.s.keepGoing && r.reason == "" {
		r.reason = reason
		r.stopBuilds()
	}
}

func (r *schedRun) stopped() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reason
}

// skip says why a node must not go on to its next step, if it must not.
func (r *schedRun) skip(what string) error {
	if why := r.stopped(); why != "" {
		return fmt.Errorf("not %s: %s", what, why)
	}
	if r.ctx.Err() != nil {
		return fmt.Errorf("not %s: interrupted", what)
	}
	return nil
}

// acquire takes a slot of sem; false when the run was interrupted first.
func (r *schedRun) acquire(sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	case <-r.ctx.Done():
		return false
	}
}

func (r *schedRun) release(sem chan struct{}) { <-sem }

// revert takes back, all at once, the nodes this run activated.
func (s scheduler) revert(ctx context.Context, nodes []stages, reason string) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		if !n.changed() || !n.status().OK() || n.status() == StatusDryActivated {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.finish(n.revert(ctx, reason))
		}()
	}
	wg.Wait()
}

func parallel(n int) int {
	if n <= 0 {
		return DefaultParallel
	}
	return n
}
