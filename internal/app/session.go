package app

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

	"github.com/tetherdeploy/tether/internal/agentbin"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// App runs tether's operations. The zero value is not usable: Getenv is
// required; the other fields are seams that tests fill and the front ends
// leave nil.
type App struct {
	// Getenv reads the environment (os.Getenv, or a test's map).
	Getenv func(string) string
	// Log receives messages that belong to no node (nix's evaluation
	// errors); nil discards them.
	Log io.Writer
	// Nix runs the nix CLI; nil runs the real one.
	Nix nix.Executor
	// Eval evaluates the flake; nil evaluates with Nix.
	Eval fleet.Evaluator
	// Engine makes the engine a session's operations run on; nil makes a
	// *deploy.Engine wired to the session.
	Engine func(s *Session, events deploy.Sink) Engine
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Engine is what the operations run on: a *deploy.Engine, or a fake.
type Engine interface {
	Deploy(ctx context.Context, nodes []*fleet.Node, opts deploy.Options) *deploy.Report
	Rollback(ctx context.Context, nodes []*fleet.Node, opts deploy.RollbackOptions) *deploy.Report
	Status(ctx context.Context, nodes []*fleet.Node, parallel int) []deploy.NodeStatus
	Build(ctx context.Context, nodes []*fleet.Node, opts deploy.Options) deploy.Builds
	Inspect(ctx context.Context, node *fleet.Node) (deploy.NodeState, error)
}

// Session is one run's view of the fleet: the loaded configuration, the
// selected nodes, how to reach them, and a GC-root directory that keeps
// the run's builds alive until Close.
type Session struct {
	app   *App
	t     Target
	Fleet *fleet.Fleet
	Nodes []*fleet.Node
	Nix   *nix.Runner
	// Dialer, Auth and Agents are set once the session is connected.
	Dialer *remote.Dialer
	Auth   *remote.Auth
	Agents deploy.AgentSource
	// GCRoots holds the run's GC roots.
	GCRoots string
	// DeployID names the run on the nodes; Who says who runs it.
	DeployID, Who string
}

func (a *App) getenv(k string) string {
	if a.Getenv == nil {
		return ""
	}
	return a.Getenv(k)
}

func (a *App) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func (a *App) log() io.Writer {
	if a.Log == nil {
		return io.Discard
	}
	return a.Log
}

// open loads the fleet and selects the nodes. Its errors are usage errors:
// nothing has been touched.
func (a *App) open(ctx context.Context, t Target) (*Session, error) {
	dir, ref, err := flakeLocation(t.Dir, t.Flake)
	if err != nil {
		return nil, Usage(err)
	}
	exec := a.Nix
	if exec == nil {
		exec = nix.Local{}
	}
	s := &Session{app: a, t: t, Nix: &nix.Runner{Exec: exec, Log: a.log()}}
	if t.Progress.BuildLog != nil {
		s.Nix.Log = t.Progress.BuildLog
	}
	ev := a.Eval
	if ev == nil {
		ev = s.Nix
	}
	f, err := fleet.Load(ctx, ev, fleet.LoadOptions{
		Dir: dir, Flake: ref, ConfigFile: t.Config, LocalUser: a.localUser(),
	})
	if err != nil {
		return nil, Usage(err)
	}
	s.Fleet = f
	s.Nodes, err = fleet.Select(f, t.Nodes)
	if err != nil {
		return nil, Usage(err)
	}
	if len(s.Nodes) == 0 {
		return nil, Usage(errors.New("no nodes to act on: the flake defines none"))
	}
	if t.BuildHost != "" {
		s.buildOn(t.BuildHost)
	}
	s.DeployID = newDeployID(a.now())
	s.Who = t.Who
	if s.Who == "" {
		s.Who = a.who()
	}
	if t.Progress.Selected != nil {
		t.Progress.Selected(s.names())
	}
	return s, nil
}

// Close removes the GC roots and lets go of the credentials.
func (s *Session) Close() {
	if s.GCRoots != "" {
		os.RemoveAll(s.GCRoots)
	}
	if s.Auth != nil {
		s.Auth.Close()
	}
}

// buildOn makes every selected node build on host (a node, an address, or
// deploy.Local), overriding the configuration.
func (s *Session) buildOn(host string) {
	for _, n := range s.Nodes {
		n.BuildHost, n.Settings.RemoteBuild = host, false
	}
}

func (s *Session) names() []string {
	out := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		out[i] = n.Name
	}
	return out
}

// parallel is the request's parallelism, else the configuration's.
func (s *Session) parallel() int {
	if s.t.Parallel > 0 {
		return s.t.Parallel
	}
	return s.Fleet.Concurrency
}

// gcRoots makes the directory holding the run's GC roots.
func (s *Session) gcRoots() (string, error) {
	if s.GCRoots == "" {
		d, err := os.MkdirTemp("", "tether-gcroots-")
		if err != nil {
			return "", fmt.Errorf("GC root directory: %w", err)
		}
		s.GCRoots = d
	}
	return s.GCRoots, nil
}

// engine makes the engine the session's operations run on.
func (s *Session) engine(events deploy.Sink) Engine {
	if s.app.Engine != nil {
		return s.app.Engine(s, events)
	}
	e := &deploy.Engine{Nix: s.Nix, Agents: s.Agents, Sink: events, Fleet: s.Fleet}
	if s.Dialer != nil { // a session that never connected dials nothing
		e.Dialer = s.Dialer
		e.ForwardAgent = s.Auth.Agent()
	}
	return e
}

// connect loads the SSH credentials and pins the host keys. Host keys come
// only from pinned sources: the request, the environment, tether.toml, the
// nodes' sshOpts, and ~/.ssh/known_hosts when nothing else names any.
func (s *Session) connect(ctx context.Context) error {
	a, t := s.app, s.t
	home := a.getenv("HOME")
	src := remote.AuthSources{KeyFiles: t.KeyFiles, PrivateKeys: t.Keys, Home: home, AgentSocket: a.getenv("SSH_AUTH_SOCK")}
	if k := a.getenv("TETHER_SSH_KEY"); k != "" && len(t.Keys) == 0 {
		src.PrivateKeys = append(src.PrivateKeys, []byte(k))
	}
	hk := remote.NewHostKeys()
	files := append([]string(nil), t.KnownHostsFiles...)
	if s.Fleet.KnownHosts != "" {
		files = append(files, s.Fleet.KnownHosts)
	}
	known := t.KnownHosts
	if kh := a.getenv("TETHER_KNOWN_HOSTS"); kh != "" {
		known = append(known, []byte(kh))
	}
	for i, kh := range known {
		if err := hk.AddKnownHosts(kh, fmt.Sprintf("known hosts #%d", i+1)); err != nil {
			return Usage(err)
		}
	}
	for _, n := range s.Nodes {
		conn, err := deploy.ConnectionFor(n)
		if err != nil {
			return Usage(err)
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
			return Usage(err)
		}
	}
	auth, err := remote.LoadAuth(src)
	if err != nil {
		return Usage(fmt.Errorf("ssh credentials: %w", err))
	}
	s.Auth = auth
	s.Dialer = &remote.Dialer{Auth: auth.Methods(), HostKeys: hk, DefaultUser: a.localUser()}
	if d := a.getenv("TETHER_SSH_KEEPALIVE"); d != "" {
		if v, err := time.ParseDuration(d); err == nil {
			s.Dialer.KeepaliveInterval = v
		}
	}
	agentsDir := t.AgentsDir
	if agentsDir == "" {
		agentsDir = a.getenv("TETHER_AGENTS_DIR")
	}
	s.Agents, err = agentbin.Find(ctx, agentbin.Options{Dir: agentsDir, Getenv: a.getenv, Log: a.Log})
	if err != nil {
		return Usage(err)
	}
	return nil
}

// flakeLocation splits the flake argument into the directory holding
// flake.nix and tether.toml, and the reference nix evaluates.
func flakeLocation(base, arg string) (dir, ref string, err error) {
	if arg == "" {
		arg = "."
	}
	switch {
	case strings.HasPrefix(arg, "path:"):
		dir = strings.TrimPrefix(arg, "path:")
		if i := strings.IndexAny(dir, "?#"); i >= 0 {
			dir = dir[:i]
		}
		ref = arg
	case strings.Contains(arg, ":"):
		return "", "", fmt.Errorf("flake %q: only local flakes (a directory or path:DIR) can be deployed", arg)
	default:
		dir = arg
		if base != "" && !filepath.IsAbs(dir) {
			dir = filepath.Join(base, dir)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", err
	}
	if _, err := os.Stat(filepath.Join(abs, "flake.nix")); err != nil {
		return "", "", fmt.Errorf("flake %s: no flake.nix there", arg)
	}
	if ref == "" {
		ref = abs
	}
	return abs, ref, nil
}

func (a *App) localUser() string {
	if u := a.getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// who says, on the targets, who runs this deploy.
func (a *App) who() string {
	host, _ := os.Hostname()
	w := a.localUser() + "@" + host
	if run := a.getenv("GITHUB_RUN_ID"); run != "" {
		w += " (" + a.getenv("GITHUB_REPOSITORY") + " run " + run + ")"
	}
	return w
}

// newDeployID names a run: sortable by time, unique, and valid as a
// directory and systemd unit name on the targets.
func newDeployID(now time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return strings.ToLower(now.UTC().Format("20060102t150405")) + "-" + hex.EncodeToString(b[:])
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
