package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tetherdeploy/tether/internal/agentbin"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// fleetFlags select the configuration and the nodes.
func fleetFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "flake", Value: ".", Usage: "flake directory or `REF` (path:DIR, a directory holding flake.nix)"},
		&ucli.StringFlag{Name: "config", Usage: "tether.toml to read (default: tether.toml beside flake.nix, if present)", TakesFile: true},
	}
}

// connFlags say how to reach the nodes.
func connFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringSliceFlag{Name: "ssh-key", Usage: "private key `FILE` (repeatable); default: $TETHER_SSH_KEY, ssh-agent, ~/.ssh/id_*", TakesFile: true},
		&ucli.StringSliceFlag{Name: "known-hosts", Usage: "known_hosts `FILE` pinning the nodes' host keys (repeatable); default ~/.ssh/known_hosts", TakesFile: true},
		&ucli.StringFlag{Name: "agents-dir", Usage: "directory holding tether-agent-linux-<arch> (default: $TETHER_AGENTS_DIR, those inside a release build, agents/ beside the binary, else built once from tether's source)", TakesFile: true},
		&ucli.IntFlag{Name: "parallel", Usage: "nodes handled at once (default: tether.toml's concurrency, else 16)"},
	}
}

// setup is what every command that touches nodes needs.
type setup struct {
	// ctx is the command's, for work started lazily on its behalf (agents
	// built on first use).
	ctx    context.Context
	env    Env
	stderr io.Writer
	fleet  *fleet.Fleet
	nodes  []*fleet.Node
	nix    *nix.Runner
	dialer *remote.Dialer
	auth   *remote.Auth
	agents deploy.AgentSource
	params params
}

// buildOn makes every selected node build on host (a node, an address, or
// deploy.Local), overriding the configuration.
func (s *setup) buildOn(host string) {
	for _, n := range s.nodes {
		n.BuildHost, n.Settings.RemoteBuild = host, false
	}
}

func (s *setup) Close() {
	if s.auth != nil {
		s.auth.Close()
	}
}

// flakeLocation splits --flake into the directory holding flake.nix and
// tether.toml, and the reference nix evaluates.
func flakeLocation(arg string) (dir, ref string, err error) {
	switch {
	case strings.HasPrefix(arg, "path:"):
		dir = strings.TrimPrefix(arg, "path:")
		if i := strings.IndexAny(dir, "?#"); i >= 0 {
			dir = dir[:i]
		}
		ref = arg
	case strings.Contains(arg, ":"):
		return "", "", fmt.Errorf("--flake %q: only local flakes (a directory or path:DIR) can be deployed", arg)
	default:
		dir, ref = arg, ""
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	if _, err := os.Stat(filepath.Join(abs, "flake.nix")); err != nil {
		return "", "", fmt.Errorf("--flake %s: no flake.nix there", arg)
	}
	if ref == "" {
		ref = abs
	}
	return abs, ref, nil
}

func localUser(env Env) string {
	if u := env.Get("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// params say which fleet to load and how to reach it, from flags or from
// the Action's inputs.
type params struct {
	flake, config string
	nodes         []string
	keyFiles      []string
	keys          [][]byte // private keys' contents
	knownFiles    []string
	known         [][]byte // known_hosts contents
	agentsDir     string
}

func flagParams(c *ucli.Context) params {
	return params{
		flake: c.String("flake"), config: c.String("config"), nodes: c.Args().Slice(),
		keyFiles: c.StringSlice("ssh-key"), knownFiles: c.StringSlice("known-hosts"), agentsDir: c.String("agents-dir"),
	}
}

// loadFleet reads the configuration and selects the nodes named on the
// command line. Its errors are usage errors: nothing has been touched.
func loadFleet(ctx context.Context, c *ucli.Context, env Env, stderr io.Writer, over fleet.Overrides) (*setup, error) {
	return loadFleetWith(ctx, flagParams(c), env, stderr, over)
}

func loadFleetWith(ctx context.Context, p params, env Env, stderr io.Writer, over fleet.Overrides) (*setup, error) {
	dir, ref, err := flakeLocation(p.flake)
	if err != nil {
		return nil, usageError(err)
	}
	s := &setup{ctx: ctx, env: env, stderr: stderr, params: p}
	s.nix = &nix.Runner{Exec: nix.Local{}, Log: stderr}
	f, err := fleet.Load(ctx, s.nix, fleet.LoadOptions{
		Dir: dir, Flake: ref, ConfigFile: p.config, LocalUser: localUser(env), Overrides: over,
	})
	if err != nil {
		return nil, usageError(err)
	}
	s.fleet = f
	s.nodes, err = fleet.Select(f, p.nodes)
	if err != nil {
		return nil, usageError(err)
	}
	if len(s.nodes) == 0 {
		return nil, usageError(errors.New("no nodes to act on: the flake defines none"))
	}
	return s, nil
}

// connectWith prepares the SSH dialer and the agent source for the
// selected nodes. Host keys come only from pinned sources: flags and
// inputs, tether.toml, the nodes' sshOpts, and ~/.ssh/known_hosts.
func (s *setup) connectWith() error {
	p := s.params
	home := s.env.Get("HOME")
	src := remote.AuthSources{KeyFiles: p.keyFiles, PrivateKeys: p.keys, Home: home, AgentSocket: s.env.Get("SSH_AUTH_SOCK")}
	if k := s.env.Get("TETHER_SSH_KEY"); k != "" && len(p.keys) == 0 {
		src.PrivateKeys = append(src.PrivateKeys, []byte(k))
	}
	hk := remote.NewHostKeys()
	files := append([]string(nil), p.knownFiles...)
	if s.fleet.KnownHosts != "" {
		files = append(files, s.fleet.KnownHosts)
	}
	known := p.known
	if kh := s.env.Get("TETHER_KNOWN_HOSTS"); kh != "" {
		known = append(known, []byte(kh))
	}
	for i, kh := range known {
		if err := hk.AddKnownHosts(kh, fmt.Sprintf("known hosts #%d", i+1)); err != nil {
			return usageError(err)
		}
	}
	for _, n := range s.nodes {
		conn, err := deploy.ConnectionFor(n)
		if err != nil {
			return usageError(err)
		}
		for _, f := range conn.IdentityFiles {
			src.KeyFiles = append(src.KeyFiles, remote.ExpandHome(f, home))
		}
		for _, f := range conn.KnownHostsFiles {
			files = append(files, remote.ExpandHome(f, home))
		}
	}
	if len(files) == 0 && len(known) == 0 && home != "" {
		if def := filepath.Join(home, ".ssh", "known_hosts"); fileExists(def) {
			files = append(files, def)
		}
	}
	for _, f := range dedupe(files) {
		if err := hk.AddKnownHostsFile(f); err != nil {
			return usageError(err)
		}
	}
	auth, err := remote.LoadAuth(src)
	if err != nil {
		return usageError(fmt.Errorf("ssh credentials: %w", err))
	}
	s.auth = auth
	s.dialer = &remote.Dialer{Auth: auth.Methods(), HostKeys: hk, DefaultUser: localUser(s.env)}
	if d := s.env.Get("TETHER_SSH_KEEPALIVE"); d != "" {
		if v, err := time.ParseDuration(d); err == nil {
			s.dialer.KeepaliveInterval = v
		}
	}
	agentsDir := p.agentsDir
	if agentsDir == "" {
		agentsDir = s.env.Get("TETHER_AGENTS_DIR")
	}
	s.agents, err = agentbin.Find(s.ctx, agentbin.Options{Dir: agentsDir, Getenv: s.env.Get, Log: s.stderr})
	if err != nil {
		return usageError(err)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func dedupe(ss []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// newDeployID names a run: sortable by time, unique, and valid as a
// directory and systemd unit name on the targets.
func newDeployID(now time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return strings.ToLower(now.UTC().Format("20060102t150405")) + "-" + hex.EncodeToString(b[:])
}

// who says, on the targets, who runs this deploy.
func who(env Env) string {
	host, _ := os.Hostname()
	w := localUser(env) + "@" + host
	if run := env.Get("GITHUB_RUN_ID"); run != "" {
		w += " (" + env.Get("GITHUB_REPOSITORY") + " run " + run + ")"
	}
	return w
}

func parallelism(c *ucli.Context, f *fleet.Fleet) int {
	if p := c.Int("parallel"); p > 0 {
		return p
	}
	return f.Concurrency
}
