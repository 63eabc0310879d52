package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
	"github.com/tetherdeploy/tether/pkg/transfer"
)

// Builds is the outcome of Engine.Build: where each node's new system was
// built, and access to its closure there.
type Builds interface {
	// Closure returns the closure of root (with NAR sizes) in the store
	// that built node, or why the node's build failed.
	Closure(ctx context.Context, node, root string) ([]nix.PathInfo, error)
	// BootLinks reads system's agent.BootLinks where node was built
	// (name → target; a link the system lacks is absent).
	BootLinks(ctx context.Context, node, system string) map[string]string
	// Close releases the build hosts' GC roots and connections.
	Close(ctx context.Context)
}

// Build realises the profiles of nodes in one nix invocation, GC-rooted in
// gcRootDir, without touching any node.
//
// Each node is built where a deploy would build it: on the deployer, its
// build host, or itself.
func (e *Engine) Build(ctx context.Context, nodes []*fleet.Node, opts Options) Builds {
	b := &built{stores: map[string]*nix.Runner{}, errs: map[string]error{}}
	runs := make([]*nodeRun, len(nodes))
	for i, n := range nodes {
		runs[i] = e.newRun(n, i, opts)
	}
	reported := map[*nodeRun]bool{}
	var mu sync.Mutex
	e.buildAll(ctx, runs, opts, func(r *nodeRun, err error) {
		mu.Lock()
		defer mu.Unlock()
		reported[r] = true
		if err != nil {
			b.errs[r.node.Name] = err
		}
	})
	seen := map[*builder]bool{}
	for _, r := range runs {
		name := r.node.Name
		switch {
		case b.errs[name] != nil:
		case !reported[r]:
			b.errs[name] = fmt.Errorf("not built: %w", context.Cause(ctx))
		case r.builder != nil:
			b.stores[name] = r.builder.store
		default:
			b.stores[name] = e.Nix
		}
		if r.builder != nil && !seen[r.builder] {
			seen[r.builder] = true
			b.builders = append(b.builders, r.builder)
		}
	}
	return b
}

// built is the Builds of Engine.Build.
type built struct {
	stores   map[string]*nix.Runner
	errs     map[string]error
	builders []*builder
}

// Closure implements Builds.
func (b *built) Closure(ctx context.Context, node, root string) ([]nix.PathInfo, error) {
	if err := b.errs[node]; err != nil {
		return nil, err
	}
	s := b.stores[node]
	if s == nil {
		return nil, fmt.Errorf("node %s was not built", node)
	}
	return s.Closure(ctx, []string{root})
}

// BootLinks implements Builds.
func (b *built) BootLinks(ctx context.Context, node, system string) map[string]string {
	s := b.stores[node]
	if s == nil {
		return nil
	}
	return readBootLinks(system, func(path string) (string, error) {
		var out strings.Builder
		err := s.Run(ctx, []string{"readlink", "-f", "--", path}, nil, &out)
		return strings.TrimSpace(out.String()), err
	})
}

// readBootLinks reads system's agent.BootLinks with readlink, resolved to
// the end: a profile that wraps a system links its links.
func readBootLinks(system string, readlink func(string) (string, error)) map[string]string {
	out := map[string]string{}
	for _, name := range agent.BootLinks {
		if t, err := readlink(system + "/" + name); err == nil && t != "" {
			out[name] = t
		}
	}
	return out
}

// Close implements Builds.
func (b *built) Close(ctx context.Context) {
	for _, bl := range b.builders {
		bl.close(ctx)
	}
}

// NodeState is what a node runs, learnt with read-only queries.
type NodeState struct {
	// Profile is the store path the node's first profile points at, ""
	// when the profile does not exist.
	Profile string
	// Running is the system the node runs (/run/current-system), "" when
	// none.
	Running string
	// Closure is the closure of Profile (or of Running when there is no
	// profile), with NAR sizes.
	Closure []nix.PathInfo
	// BootLinks are the agent.BootLinks of the system the node booted
	// (/run/booted-system), empty when it has none.
	BootLinks map[string]string
}

// ErrUnreachable wraps failures to connect to a node.
var ErrUnreachable = errors.New("unreachable")

// Inspect reads a node's current system and its closure. It runs only
// read-only commands (readlink, nix-store queries) and uploads nothing:
// planning a pull request must not change production machines.
func (e *Engine) Inspect(ctx context.Context, node *fleet.Node) (NodeState, error) {
	r := e.newRun(node, 0, Options{})
	defer r.conn.drop()
	if r.connErr != nil {
		return NodeState{}, r.connErr
	}
	c, err := r.conn.client(ctx)
	if err != nil {
		var hk *remote.HostKeyError
		if errors.As(err, &hk) {
			return NodeState{}, err
		}
		return NodeState{}, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	var st NodeState
	profile := agent.DefaultProfile
	if len(node.Profiles) > 0 {
		profile = node.Profiles[0].ProfilePath
	}
	st.Profile = readlink(ctx, c, profile)
	st.Running = readlink(ctx, c, "/run/current-system")
	if readlink(ctx, c, "/run/booted-system") != "" {
		st.BootLinks = readBootLinks("/run/booted-system", func(path string) (string, error) {
			out, err := c.Output(ctx, "readlink", "-f", "--", path)
			return strings.TrimSpace(string(out)), err
		})
	}
	root := st.Profile
	if root == "" {
		root = st.Running
	}
	if root == "" {
		return st, nil
	}
	st.Closure, err = transfer.RemoteStore(c, nil).Closure(ctx, []string{root})
	if err != nil {
		return st, fmt.Errorf("closure of %s: %w", root, err)
	}
	return st, nil
}

// readlink resolves a symlink chain on the node, "" when it does not exist.
func readlink(ctx context.Context, c *remote.Client, path string) string {
	out, err := c.Output(ctx, "readlink", "-f", "-e", path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
