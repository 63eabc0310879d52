package deploy

import (
	"context"
	"sync"

	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
)

// closureIndex asks nix once for the closure of every profile built on the
// deployer, and hands each node the part its roots reach. Asking per node
// cost two nix processes a node: on a 2-core runner that was most of the
// deployer's CPU for a fleet update.
type closureIndex struct {
	nix   *nix.Runner
	roots []string

	once  sync.Once
	infos []nix.PathInfo
	err   error
}

func newClosureIndex(n *nix.Runner, runs []*nodeRun) *closureIndex {
	return &closureIndex{nix: n, roots: profilePaths(runs, func(p *fleet.Profile) string { return p.OutPath })}
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

// of returns the closure of roots, references first.
func (c *closureIndex) of(ctx context.Context, roots []string) ([]nix.PathInfo, error) {
	c.once.Do(func() {
		c.infos, c.err = c.nix.Closure(ctx, c.roots)
	})
	if c.err != nil {
		return nil, c.err
	}
	return nix.Subclosure(c.infos, roots)
}
