//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// byHand is the least a person would type to deploy one sandbox host: the
// OpenSSH client and `nix copy --to ssh://`, with the fleet's key and
// pinned host keys, and nothing of tether's.
type byHand struct {
	b       *bench
	sshOpts []string
	dest    string
}

// byHand prepares the hand-made side for host h of the sandbox.
func (s *sandbox) byHand(h *testhost.Host) (*byHand, error) {
	host, port, err := net.SplitHostPort(h.SSHAddr)
	if err != nil {
		return nil, err
	}
	return &byHand{b: s.b, dest: "root@" + host, sshOpts: []string{"-F", "none", "-i", s.fleet.ClientKeyPath,
		"-o", "UserKnownHostsFile=" + s.fleet.KnownHostsPath, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-p", port}}, nil
}

// ssh runs argv on the host over a new OpenSSH connection and returns how
// long it took.
func (h *byHand) ssh(ctx context.Context, argv ...string) (time.Duration, error) {
	args := append(append([]string(nil), h.sshOpts...), h.dest, remote.Quote(argv))
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.Env = h.b.env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ssh %s: %v\n%s", strings.Join(argv, " "), err, tailLines(string(out), 20))
	}
	return time.Since(start), nil
}

// copy runs `nix copy --to ssh://… path` and returns how long it took.
func (h *byHand) copy(ctx context.Context, path string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "nix", "copy", "--no-check-sigs", "--to", "ssh://"+h.dest, path)
	cmd.Env = append(append([]string(nil), h.b.env...), "NIX_SSHOPTS="+strings.Join(h.sshOpts, " "))
	start := time.Now()
	if msg, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("nix copy: %v\n%s", err, tailLines(string(msg), 20))
	}
	return time.Since(start), nil
}

// switchTo makes toplevel the host's system the way a person does after
// copying it: `nix-env --set`, then `switch-to-configuration switch`, each
// over its own connection.
func (h *byHand) switchTo(ctx context.Context, toplevel string) (set, activate time.Duration, err error) {
	if set, err = h.ssh(ctx, "nix-env", "-p", profilePath, "--set", toplevel); err != nil {
		return 0, 0, err
	}
	activate, err = h.ssh(ctx, toplevel+"/bin/switch-to-configuration", "switch")
	return set, activate, err
}
