package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
	"github.com/tetherdeploy/tether/pkg/transfer"
)

// Build realises the profiles of nodes in one nix invocation, GC-rooted in
// gcRootDir, without touching any node.
func (e *Engine) Build(ctx context.Context, nodes []*fleet.Node, gcRootDir string) error {
	runs := make([]*nodeRun, len(nodes))
	for i, n := range nodes {
		runs[i] = e.newRun(n, i, Options{})
	}
	return e.build(ctx, runs, Options{GCRootDir: gcRootDir})
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
