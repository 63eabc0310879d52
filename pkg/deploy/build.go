package deploy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
)

// buildAll builds every node's profiles where the node says: on the
// deployer, on a build host, or on the node itself, all at once. built is
// called for each node as soon as its own build has ended, with the
// build's error: the node's copy may start while the others still build.
// A node is not reported when ctx was cancelled before its build ended.
func (e *Engine) buildAll(ctx context.Context, runs []*nodeRun, opts Options, built func(*nodeRun, error)) {
	var local []*nodeRun
	remote := map[string][]*nodeRun{}
	var order []string
	for _, r := range runs {
		if b := builderName(r.node); b != "" {
			if remote[b] == nil {
				order = append(order, b)
			}
			remote[b] = append(remote[b], r)
		} else {
			local = append(local, r)
		}
	}
	var wg sync.WaitGroup
	for _, name := range order {
		group := remote[name]
		wg.Go(func() {
			b, err := e.buildOn(ctx, name, group, opts)
			for _, r := range group {
				r.builder = b
				if err == nil || ctx.Err() == nil {
					built(r, err)
				}
			}
		})
	}
	if len(local) > 0 {
		e.buildLocal(ctx, local, opts, built)
	}
	wg.Wait()
}

// buildPollFirst and buildPollMax pace buildLocal's look at which nodes'
// outputs are valid: often at first, when most builds are quick or
// already done, then at most every few seconds, which is little beside a
// build that long.
const (
	buildPollFirst = 200 * time.Millisecond
	buildPollMax   = 2 * time.Second
)

// buildLocal builds the nodes' profiles on the deployer in one nix-store
// --realise, so that nix schedules the fleet's builds together, within
// its max-jobs, and builds what they share once; and it hands each node on
// as soon as its own outputs are valid (a store path is valid only once
// everything it refers to is), while the others still build. A nix
// process per node would learn that way too, but each waits on the
// others' locks of shared derivations and notices their release only at
// its next poll, seconds later (bench/RESULTS.md, the uneven fleet).
//
// A node handed on early is GC-rooted first: the realisation roots its
// outputs only once all of them are built.
func (e *Engine) buildLocal(ctx context.Context, runs []*nodeRun, opts Options, built func(*nodeRun, error)) {
	fail := func(rs []*nodeRun, err error) {
		if ctx.Err() != nil {
			return
		}
		for _, r := range rs {
			built(r, err)
		}
	}
	if err := checkPlatforms(ctx, e.Nix, runs, "this machine"); err != nil {
		fail(runs, err)
		return
	}
	idx := newClosureIndex(e.Nix)
	for _, r := range runs {
		r.closures = idx
	}
	start := time.Now()
	w := &buildWatch{e: e, ctx: ctx, opts: opts, idx: idx, start: start, built: built, pending: runs}
	if err := w.check(); err != nil {
		fail(w.pending, err)
		return
	}
	if len(w.pending) == 0 {
		e.emit(Event{Phase: PhaseBuild, Message: fmt.Sprintf("%d profiles already built", len(profilePaths(runs, outPath)))})
		return
	}

	drvs := profilePaths(w.pending, func(p *fleet.Profile) string { return p.DrvPath })
	e.emit(Event{Phase: PhaseBuild, Message: fmt.Sprintf("building %d profiles", len(drvs))})
	done := make(chan error, 1)
	go func() {
		done <- e.Nix.RealiseWith(ctx, drvs, nix.RealiseOptions{GCRootDir: opts.GCRootDir, KeepGoing: opts.KeepGoing})
	}()
	wait := buildPollFirst
	var buildErr error
	for finished := false; !finished; {
		select {
		case buildErr = <-done:
			finished = true
		case <-time.After(wait):
			wait = min(wait*5/4, buildPollMax)
		}
		// A failed look is retried at the next; after the build, it is
		// the nodes' error.
		if err := w.check(); err != nil && finished {
			fail(w.pending, err)
			return
		}
	}
	took := time.Since(start).Round(time.Millisecond)
	if buildErr != nil {
		e.emit(Event{Phase: PhaseBuild, Message: "build failed"})
		fail(w.pending, fmt.Errorf("build: %w", buildErr))
		return
	}
	for _, r := range w.pending {
		fail([]*nodeRun{r}, fmt.Errorf("build: %s is not valid after its build succeeded", r.missing(w.invalid)))
	}
	e.emit(Event{Phase: PhaseBuild, Message: fmt.Sprintf("built in %s", took)})
}

// buildWatch hands nodes on as their outputs become valid.
type buildWatch struct {
	e     *Engine
	ctx   context.Context
	opts  Options
	idx   *closureIndex
	start time.Time
	built func(*nodeRun, error)
	// pending are the nodes not handed on yet; invalid the outputs the
	// last look found missing.
	pending []*nodeRun
	invalid map[string]bool
}

// check asks which pending nodes' outputs are all valid now, roots them
// and hands them on.
func (w *buildWatch) check() error {
	outs := profilePaths(w.pending, outPath)
	if len(outs) == 0 {
		w.handOn(w.pending)
		w.pending = nil
		return nil
	}
	missing, err := w.e.Nix.Missing(w.ctx, outs)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	invalid := make(map[string]bool, len(missing))
	for _, p := range missing {
		invalid[p] = true
	}
	w.invalid = invalid
	var ready, still []*nodeRun
	for _, r := range w.pending {
		if r.missing(invalid) != "" {
			still = append(still, r)
		} else {
			ready = append(ready, r)
		}
	}
	if len(ready) == 0 {
		return nil
	}
	if w.opts.GCRootDir != "" {
		if err := w.e.Nix.AddRoots(w.ctx, profilePaths(ready, outPath), w.opts.GCRootDir); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	w.pending = still
	w.handOn(ready)
	return nil
}

func (w *buildWatch) handOn(ready []*nodeRun) {
	took := time.Since(w.start)
	for _, r := range ready {
		r.res.Timings.Build = Seconds(took)
		w.idx.add(profilePaths([]*nodeRun{r}, outPath))
		r.emit(PhaseBuild, fmt.Sprintf("built (%s)", took.Round(time.Millisecond)))
		w.built(r, nil)
	}
}

func outPath(p *fleet.Profile) string { return p.OutPath }

// missing returns the first of the node's outputs in invalid, or "".
func (n *nodeRun) missing(invalid map[string]bool) string {
	for _, p := range n.node.Profiles {
		if p.OutPath != "" && invalid[p.OutPath] {
			return p.OutPath
		}
	}
	return ""
}
