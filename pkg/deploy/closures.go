package deploy

import (
	"context"
	"slices"
	"sync"

	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
)

// closureIndex asks nix for the closures of the profiles built on the
// deployer as few times as it can, and hands each node the part its roots
// reach. Asking per node cost two nix processes a node: on a 2-core runner
// that was most of the deployer's CPU for a fleet update. Nodes are built
// at different times now, so one query for the fleet would wait for the
// slowest build: a query asks for every root built so far and not yet
// asked about, so the nodes whose builds ended together share one.
type closureIndex struct {
	nix *nix.Runner

	query sync.Mutex // one query at a time; who waits may find its answer
	mu    sync.Mutex
	// pending are the roots built and not yet asked about; known the
	// roots whose closures infos holds.
	pending []string
	known   map[string]bool
	infos   map[string]nix.PathInfo
}

func newClosureIndex(n *nix.Runner) *closureIndex {
	return &closureIndex{nix: n, known: map[string]bool{}, infos: map[string]nix.PathInfo{}}
}

// profilePaths lists one store path of every profile of the runs (its
// derivation, say), leaving out the empty ones.
func profilePaths(runs []*nodeRun, path func(*fleet.Profile) string) []string {
	var out []string
	for _, r := range runs {
		for _, p := range r.node.Profiles {
			if s := path(p); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// add tells the index that roots are built: the next query asks for
// them too.
func (c *closureIndex) add(roots []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, roots...)
}

// of returns the closure of roots, references first.
func (c *closureIndex) of(ctx context.Context, roots []string) ([]nix.PathInfo, error) {
	if infos, ok := c.lookup(roots); ok {
		return nix.Subclosure(infos, roots)
	}
	c.query.Lock()
	defer c.query.Unlock()
	if infos, ok := c.lookup(roots); ok { // asked while we waited
		return nix.Subclosure(infos, roots)
	}
	c.mu.Lock()
	ask := append(c.pending, roots...)
	c.pending = nil
	c.mu.Unlock()
	got, err := c.nix.Closure(ctx, ask)
	if err != nil {
		c.add(slices.DeleteFunc(ask, func(r string) bool { return slices.Contains(roots, r) }))
		return nil, err
	}
	c.mu.Lock()
	for _, in := range got {
		c.infos[in.Path] = in
	}
	for _, r := range ask {
		c.known[r] = true
	}
	c.mu.Unlock()
	infos, _ := c.lookup(roots)
	return nix.Subclosure(infos, roots)
}

// lookup returns what the index holds when it knows the closure of every
// root.
func (c *closureIndex) lookup(roots []string) ([]nix.PathInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range roots {
		if !c.known[r] {
			return nil, false
		}
	}
	infos := make([]nix.PathInfo, 0, len(c.infos))
	for _, in := range c.infos {
		infos = append(infos, in)
	}
	return infos, true
}
