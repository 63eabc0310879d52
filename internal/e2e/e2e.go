// Package e2e ties the sandbox hosts to the fixture fleet and the tether
// binaries, for the end-to-end tests, the demo and the benchmarks: it
// writes a fleet flake whose deploy.nodes reach the sandbox hosts the way a
// real home fleet is reached (frame1 through the tunnel, rpi only by
// jumping through frame1), and builds the binaries under test.
package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// HostConfs returns the deploy.nodes entries that reach the fleet's hosts:
// a relayed host at the relay's address, a host behind another through
// `-J` (sshOpts, as an existing deploy flake would say it), the others at
// their address.
func HostConfs(f *testhost.Fleet) (map[string]fixture.HostConf, error) {
	out := map[string]fixture.HostConf{}
	for name, h := range f.Hosts {
		host, port, err := net.SplitHostPort(h.SSHAddr)
		if err != nil {
			return nil, fmt.Errorf("host %s: address %q: %w", name, h.SSHAddr, err)
		}
		hc := fixture.HostConf{Hostname: host, SSHUser: "root"}
		if port != "22" {
			hc.SSHOpts = append(hc.SSHOpts, "-p", port)
		}
		if h.Via != "" {
			via := f.Hosts[h.Via]
			if via == nil {
				return nil, fmt.Errorf("host %s: jump host %s not in fleet", name, h.Via)
			}
			hc.SSHOpts = append(hc.SSHOpts, "-J", "root@"+via.SSHAddr)
		}
		out[name] = hc
	}
	return out, nil
}

// Binaries are the programs under test.
type Binaries struct {
	Tether    string // the deployer
	AgentsDir string // tether-agent-linux-<arch>
}

// Build compiles tether and the agent for this machine's architecture into
// dir. root is the module root.
func Build(ctx context.Context, root, dir string) (Binaries, error) {
	b := Binaries{Tether: filepath.Join(dir, "tether"), AgentsDir: filepath.Join(dir, "agents")}
	if err := goBuild(ctx, root, b.Tether, "./cmd/tether", nil); err != nil {
		return b, err
	}
	agent := filepath.Join(b.AgentsDir, "tether-agent-linux-"+runtime.GOARCH)
	if err := goBuild(ctx, root, agent, "./cmd/tether-agent", []string{"CGO_ENABLED=0"}); err != nil {
		return b, err
	}
	return b, nil
}

func goBuild(ctx context.Context, root, out, pkg string, env []string) error {
	// Built as releases are (scripts/build-agents.sh): stripped, so sizes
	// and upload times match what users get.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// ModuleRoot finds the directory holding go.mod, from the working
// directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}

// TetherEnv is the environment tether runs with against the sandbox: nix
// offline, and short SSH keepalives so a cut link is noticed in seconds.
func TetherEnv(environ []string) []string {
	env := fixture.NixEnv(environ)
	out := env[:0]
	for _, kv := range env {
		if strings.HasPrefix(kv, "TETHER_") || strings.HasPrefix(kv, "SSH_AUTH_SOCK=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "TETHER_SSH_KEEPALIVE=1s")
}
