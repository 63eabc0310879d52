package deploy

import (
	"context"
	"errors"
	"fmt"
	"github.com/tetherdeploy/tether/internal/testenv"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/remote"
	"github.com/tetherdeploy/tether/pkg/remote/remotetest"
)

// The pipeline tests drive a node's pipeline — agent install, activation,
// confirmation over a fresh connection, rollback — against the real agent
// binary, run by an in-process SSH server on this machine. They need no
// root, no nix and no sandbox host: the "node" is a temporary directory
// holding the agent's state, a profile kept by a small nix-env stand-in,
// and systems whose switch-to-configuration records what it was asked.

var (
	agentOnce sync.Once
	agentBin  string
	agentErr  error
)

// builtAgent builds tether-agent for this machine once per test binary.
func builtAgent(t *testing.T) string {
	t.Helper()
	goBin := testenv.GoCommand(t)
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tether-deploy-test-agent-")
		if err != nil {
			agentErr = err
			return
		}
		agentBin = filepath.Join(dir, agent.AgentFileName(runtime.GOARCH))
		cmd := exec.Command(goBin, "build", "-trimpath", "-o", agentBin, "github.com/tetherdeploy/tether/cmd/tether-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("build tether-agent: %v\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentBin
}

// fakeNixEnv keeps a profile as nix-env does: P -> P-N-link -> the store
// path, --set making generation last+1, --switch-generation and
// --delete-generations as their names say.
const fakeNixEnv = `#!/bin/sh
set -e
[ "$1" = -p ] || { echo "nix-env stand-in: want -p PROFILE" >&2; exit 2; }
p=$2; op=$3; shift 3
dir=$(dirname "$p"); base=$(basename "$p")
gens() { ls "$dir" | sed -n "s/^$base-\([0-9]*\)-link\$/\1/p" | sort -n; }
case $op in
--set)
	mkdir -p "$dir"
	last=$(gens | tail -n 1)
	n=$(( ${last:-0} + 1 ))
	ln -s "$1" "$dir/$base-$n-link"
	ln -sfn "$base-$n-link" "$p" ;;
--switch-generation)
	[ -L "$dir/$base-$1-link" ] || { echo "generation $1 does not exist" >&2; exit 1; }
	ln -sfn "$base-$1-link" "$p" ;;
--delete-generations)
	cur=$(readlink "$p")
	for n in "$@"; do
		[ "$cur" != "$base-$n-link" ] || { echo "cannot delete the current generation" >&2; exit 1; }
		rm -f "$dir/$base-$n-link"
	done ;;
*) echo "nix-env stand-in: unknown $op" >&2; exit 2 ;;
esac
`

// node is one pipeline node: an SSH server and the directory it stands in
// for.
type pipeNode struct {
	t       *testing.T
	srv     *remotetest.Server
	dir     string
	history string
	e       *Engine
	node    *fleet.Node
	dials   atomic.Int32
	// refuseDialsAfter, when positive, makes every dial after that many
	// fail, as a firewall that lets old connections live and refuses new
	// ones.
	refuseDialsAfter atomic.Int32
	events           []Event
	mu               sync.Mutex
}

func newPipeNode(t *testing.T) *pipeNode {
	t.Helper()
	dir := privateDir(t)
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "nix-env"), []byte(fakeNixEnv), 0o755); err != nil {
		t.Fatal(err)
	}
	signer, _ := remotetest.NewKey(t)
	srv := remotetest.NewServer(t, remotetest.Options{
		Name:           "node",
		AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()},
		Env:            []string{"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin", "HOME=" + dir},
		Dir:            dir,
	})
	p := &pipeNode{t: t, srv: srv, dir: dir, history: filepath.Join(dir, "history")}
	d := trustingDialer(t, srv, signer, "deployer")
	p.e = &Engine{
		Dialer: dialFunc(func(ctx context.Context, tg remote.Target) (*remote.Client, error) {
			n := p.dials.Add(1)
			if lim := p.refuseDialsAfter.Load(); lim > 0 && n > lim {
				return nil, errors.New("connection refused (test firewall)")
			}
			return d.Dial(ctx, tg)
		}),
		Agents: &AgentDir{Dir: filepath.Dir(builtAgent(t))},
		Sink: func(ev Event) {
			p.mu.Lock()
			p.events = append(p.events, ev)
			p.mu.Unlock()
		},
	}
	settings := fleet.Settings{SSHUser: "deployer", User: "deployer", MagicRollback: true, AutoRollback: true,
		ConfirmTimeout: 5 * time.Second, ActivationTimeout: 20 * time.Second, TempPath: filepath.Join(dir, "var")}
	p.node = &fleet.Node{Name: "node", Hostname: "127.0.0.1", Port: srv.Port(), Settings: settings,
		Profiles: []*fleet.Profile{{Name: "system", ProfilePath: filepath.Join(dir, "profiles", "system"), Settings: settings}}}
	if err := os.MkdirAll(settings.TempPath, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// privateDir is a temporary directory no other user can write to, nor to
// any directory above it: the deployer refuses to keep an agent under a
// world-writable directory such as /tmp.
func privateDir(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(cache, "tether-test")
	if err := os.MkdirAll(base, 0o700); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(base, "pipeline-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

type dialFunc func(context.Context, remote.Target) (*remote.Client, error)

func (f dialFunc) Dial(ctx context.Context, t remote.Target) (*remote.Client, error) {
	return f(ctx, t)
}

// system makes a system whose switch-to-configuration appends "<name>
// <action>" to the history and exits with code (for switch and test).
func (p *pipeNode) system(name string, code int) string {
	p.t.Helper()
	dir := filepath.Join(p.dir, "store", name)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		p.t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\necho \"%s $1\" >>'%s'\necho \"%s: $1\"\ncase $1 in switch|test) exit %d;; esac\n", name, p.history, name, code)
	if err := os.WriteFile(filepath.Join(dir, "bin", "switch-to-configuration"), []byte(script), 0o755); err != nil {
		p.t.Fatal(err)
	}
	return dir
}

// run deploys system (already on the node) through connect and activate,
// as the scheduler would after the copy, and returns the outcome.
func (p *pipeNode) run(ctx context.Context, system string, opts Options) (*nodeRun, Status, error) {
	p.t.Helper()
	p.node.Profiles[0].OutPath = system
	if opts.DeployID == "" {
		opts.DeployID = fmt.Sprintf("t%d", time.Now().UnixNano())
	}
	r := p.e.newRun(p.node, 0, opts)
	defer r.conn.drop()
	if st, err := r.connect(ctx); err != nil {
		return r, st, err
	}
	st, err := r.activate(ctx)
	r.finish(st, err)
	return r, st, err
}

// deploy deploys system as run does, with the default options, and stops
// the test unless the node ends on it; it returns system.
func (p *pipeNode) deploy(system string) string {
	p.t.Helper()
	if _, st, err := p.run(context.Background(), system, Options{}); st != StatusDeployed {
		p.t.Fatalf("deploy %s: %s %v", filepath.Base(system), st, err)
	}
	return system
}

// profileIs asserts that the profile points at system.
func (p *pipeNode) profileIs(system string) {
	p.t.Helper()
	if got := p.profile(); got != system {
		p.t.Errorf("profile points at %q, want %s", got, system)
	}
}

func (p *pipeNode) profile() string {
	p.t.Helper()
	target, err := filepath.EvalSymlinks(p.node.Profiles[0].ProfilePath)
	if err != nil {
		return ""
	}
	return target
}

func (p *pipeNode) historyLines() []string {
	b, _ := os.ReadFile(p.history)
	return strings.Fields(strings.ReplaceAll(string(b), "\n", " | "))
}

func (p *pipeNode) said(substr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range p.events {
		if strings.Contains(ev.Message, substr) {
			return true
		}
	}
	return false
}

func TestPipelineDeploysAndConfirmsOverAFreshConnection(t *testing.T) {
	p := newPipeNode(t)
	v1 := p.system("v1", 0)
	r, st, err := p.run(context.Background(), v1, Options{})
	if st != StatusDeployed || err != nil {
		t.Fatalf("deploy: %s %v", st, err)
	}
	p.profileIs(v1)
	if r.res.Generation != 1 || r.res.Current != v1 {
		t.Errorf("result %+v", r.res)
	}
	// One connection for the work, at least one fresh one to confirm.
	if n := p.srv.Connections(); n < 2 {
		t.Errorf("%d connections: the confirmation did not use a fresh one", n)
	}
	if !p.said("confirmed over a fresh connection") {
		t.Error("no confirmation event")
	}
}

func TestPipelineUploadsTheAgentOnce(t *testing.T) {
	p := newPipeNode(t)
	uploads := func() int {
		n := 0
		for _, e := range p.srv.Execs() {
			if strings.Contains(e.Command, "gzip -dc") {
				n++
			}
		}
		return n
	}
	p.deploy(p.system("v1", 0))
	if uploads() != 1 {
		t.Fatalf("%d uploads for the first deploy", uploads())
	}
	p.deploy(p.system("v2", 0))
	if uploads() != 1 {
		t.Errorf("the agent was uploaded again although the node had it (%d uploads)", uploads())
	}
}

func TestPipelineTamperedAgentIsReplaced(t *testing.T) {
	p := newPipeNode(t)
	r, st, err := p.run(context.Background(), p.system("v1", 0), Options{})
	if st != StatusDeployed {
		t.Fatalf("deploy: %s %v", st, err)
	}
	// Replaced as someone would who could write there: a new file renamed
	// over it (the running agent's text cannot be written in place).
	fake := r.first().path + ".fake"
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho pwned\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fake, r.first().path); err != nil {
		t.Fatal(err)
	}
	p.deploy(p.system("v2", 0))
	local, _ := os.ReadFile(builtAgent(t))
	remoteAgent, _ := os.ReadFile(r.first().path)
	if string(local) != string(remoteAgent) {
		t.Error("the node's agent is not the deployer's after a deploy")
	}
}

func TestPipelineFailedActivationRollsBack(t *testing.T) {
	p := newPipeNode(t)
	v1 := p.deploy(p.system("v1", 0))
	r, st, err := p.run(context.Background(), p.system("broken", 2), Options{})
	if st != StatusRolledBack || err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("broken release: %s %v, want rolled back naming the exit status", st, err)
	}
	p.profileIs(v1)
	if r.res.Previous != v1 {
		t.Errorf("previous %q, want %s", r.res.Previous, v1)
	}
	h := strings.Join(p.historyLines(), " ")
	if !strings.Contains(h, "broken") || !strings.HasSuffix(strings.TrimSuffix(h, " |"), "v1 switch") && !strings.Contains(h, "v1 test") {
		t.Errorf("activations: %s; want the broken one, then v1 again", h)
	}
}

// A node that keeps its old connection but refuses new ones (a firewall
// the release turned on) cannot be confirmed, so it rolls back by itself.
func TestPipelineUnconfirmableNodeRollsBack(t *testing.T) {
	p := newPipeNode(t)
	v1 := p.deploy(p.system("v1", 0))
	p.dials.Store(0)
	p.refuseDialsAfter.Store(1) // the work connection, and no more
	start := time.Now()
	_, st, err := p.run(context.Background(), p.system("firewalled", 0), Options{ConfirmTimeout: 2 * time.Second})
	if st != StatusRolledBack {
		t.Fatalf("%s %v, want rolled back", st, err)
	}
	if err == nil || !strings.Contains(err.Error(), "could not confirm") {
		t.Errorf("error %v, want it to say the deployer could not confirm", err)
	}
	p.profileIs(v1)
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("rolled back after %s, before the 2s confirmation timeout", d)
	}
}

func TestPipelineHealthChecksGateTheConfirmation(t *testing.T) {
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	p := newPipeNode(t)
	p.node.Health = []fleet.HealthCheck{{Name: "web", HTTP: srv.URL, Timeout: time.Second}}
	healthy.Store(true)
	v1 := p.deploy(p.system("v1", 0))
	if !p.said("health check web passed") {
		t.Error("the passing check was not reported")
	}
	healthy.Store(false)
	_, st, err := p.run(context.Background(), p.system("sick", 0), Options{ConfirmTimeout: 2 * time.Second})
	if st != StatusRolledBack || err == nil || !strings.Contains(err.Error(), "status 503") {
		t.Fatalf("unhealthy: %s %v, want rolled back with the check's status", st, err)
	}
	p.profileIs(v1)
}

func TestPipelineCommandHealthCheckRunsOnTheNode(t *testing.T) {
	p := newPipeNode(t)
	p.deploy(p.system("v0", 0))
	marker := filepath.Join(p.dir, "ready")
	p.node.Health = []fleet.HealthCheck{{Command: []string{"test", "-e", marker}}}
	_, st, err := p.run(context.Background(), p.system("v1", 0), Options{ConfirmTimeout: 2 * time.Second})
	if st != StatusRolledBack {
		t.Fatalf("check failing: %s %v, want rolled back", st, err)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p.deploy(p.system("v2", 0))
}

// Ctrl-C while the node waits for its confirmation: nothing is confirmed,
// and the deployer waits for the node to be back on its previous system.
func TestPipelineInterruptIsNeverConfirmed(t *testing.T) {
	p := newPipeNode(t)
	v1 := p.deploy(p.system("v1", 0))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.e.Sink = func(ev Event) {
		if ev.Phase == PhaseConfirm && strings.HasPrefix(ev.Message, "waiting for confirmation") {
			cancel()
		}
	}
	_, st, err := p.run(ctx, p.system("v2", 0), Options{ConfirmTimeout: 2 * time.Second})
	if st != StatusRolledBack {
		t.Fatalf("%s %v, want rolled back", st, err)
	}
	p.profileIs(v1)
}

// A second deploy while one waits for its confirmation fails at once,
// naming the deploy in progress and who runs it, and changes nothing.
func TestPipelineSecondDeployIsRefused(t *testing.T) {
	p := newPipeNode(t)
	p.deploy(p.system("v1", 0))
	// The first deploy's health check holds its confirmation until the
	// second deploy has been tried.
	waiting, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(waiting) })
		<-release
	}))
	defer hold.Close()
	p.node.Health = []fleet.HealthCheck{{HTTP: hold.URL, Timeout: time.Minute}}
	first := make(chan Status, 1)
	go func() {
		_, st, _ := p.run(context.Background(), p.system("v2", 0), Options{DeployID: "first", Who: "alice@laptop", ConfirmTimeout: time.Minute})
		first <- st
	}()
	select {
	case <-waiting:
	case <-time.After(time.Minute):
		t.Fatal("the first deploy never waited for its confirmation")
	}
	second := newPipeNodeSharing(t, p)
	_, st, err := second.run(context.Background(), p.system("v3", 0), Options{DeployID: "second", Who: "bob@ci"})
	close(release)
	if st != StatusFailed || err == nil || !strings.Contains(err.Error(), "first") || !strings.Contains(err.Error(), "alice@laptop") {
		t.Errorf("second deploy: %s %v, want failed naming the first deploy and its owner", st, err)
	}
	if st := <-first; st != StatusDeployed {
		t.Errorf("first deploy: %s", st)
	}
}

// newPipeNodeSharing is a second deployer for the same node.
func newPipeNodeSharing(t *testing.T, p *pipeNode) *pipeNode {
	return &pipeNode{t: t, srv: p.srv, dir: p.dir, history: p.history, node: p.node,
		e: &Engine{Dialer: p.e.Dialer, Agents: p.e.Agents}}
}

func TestPipelineLaterProfileFailureTakesEarlierBack(t *testing.T) {
	p := newPipeNode(t)
	home := &fleet.Profile{Name: "home", ProfilePath: filepath.Join(p.dir, "profiles", "home"), Settings: p.node.Settings}
	p.node.Profiles = append(p.node.Profiles, home)
	sysV1, homeV1 := p.system("sys-v1", 0), p.system("home-v1", 0)
	home.OutPath = homeV1
	p.deploy(sysV1)
	home.OutPath = p.system("home-broken", 2)
	r, st, err := p.run(context.Background(), p.system("sys-v2", 0), Options{})
	if st != StatusRolledBack || err == nil {
		t.Fatalf("%s %v, want rolled back", st, err)
	}
	p.profileIs(sysV1)
	if len(r.res.Profiles) != 2 || r.res.Profiles[0].Status != StatusDeployed || r.res.Profiles[1].Status != StatusRolledBack {
		t.Errorf("profiles %+v", r.res.Profiles)
	}
}

// A node this run deployed goes back without a new generation when another
// node fails: its generation list reads as before.
func TestPipelineRevertKeepsGenerations(t *testing.T) {
	p := newPipeNode(t)
	v1 := p.deploy(p.system("v1", 0))
	r, st, err := p.run(context.Background(), p.system("v2", 0), Options{})
	if st != StatusDeployed {
		t.Fatalf("v2: %s %v", st, err)
	}
	st, err = r.revert(context.Background(), "node other failed")
	if st != StatusRolledBack || err == nil || !strings.Contains(err.Error(), "node other failed") {
		t.Fatalf("revert: %s %v", st, err)
	}
	p.profileIs(v1)
	links, _ := filepath.Glob(filepath.Join(p.dir, "profiles", "system-*-link"))
	if len(links) != 1 {
		t.Errorf("generations after the revert: %q, want only the first", links)
	}
}

func TestPipelineRollbackCommand(t *testing.T) {
	p := newPipeNode(t)
	v1 := p.deploy(p.system("v1", 0))
	p.deploy(p.system("v2", 0))
	rep := p.e.Rollback(context.Background(), []*fleet.Node{p.node}, RollbackOptions{Options: Options{DeployID: "rb"}})
	res := rep.Results[0]
	if res.Status != StatusDeployed || res.TargetGeneration != 1 || res.Current != v1 || !rep.Action.IsRollback() {
		t.Fatalf("rollback: %+v", res)
	}
	p.profileIs(v1)
	st := p.e.Status(context.Background(), []*fleet.Node{p.node}, 1)
	if st[0].Error != "" || st[0].Status == nil || st[0].Status.ProfilePath != v1 || len(st[0].Status.Generations) < 2 {
		t.Errorf("status after the rollback: %+v", st[0])
	}
	if st[0].Status.Last == nil || st[0].Status.Last.Status != agent.StatusDeployed {
		t.Errorf("status does not show the last deploy: %+v", st[0].Status.Last)
	}
}

func TestPipelineUnreachableNode(t *testing.T) {
	p := newPipeNode(t)
	p.e.Dialer = dialFunc(func(context.Context, remote.Target) (*remote.Client, error) {
		return nil, errors.New("dial tcp: connect: no route to host")
	})
	_, st, err := p.run(context.Background(), p.system("v1", 0), Options{})
	if st != StatusUnreachable || err == nil || !strings.Contains(err.Error(), "no route to host") {
		t.Errorf("%s %v, want unreachable with the dial error", st, err)
	}
}

func TestPipelineWrongHostKeyIsAFailureNotUnreachable(t *testing.T) {
	p := newPipeNode(t)
	signer, _ := remotetest.NewKey(t)
	hk := remote.NewHostKeys()
	if err := hk.AddKnownHosts([]byte(remotetest.NewServer(t, remotetest.Options{}).KnownHosts(p.srv.Addr())), "test"); err != nil {
		t.Fatal(err)
	}
	p.e.Dialer = &remote.Dialer{Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeys: hk, DefaultUser: "deployer"}
	_, st, err := p.run(context.Background(), p.system("v1", 0), Options{})
	var hke *remote.HostKeyError
	if st != StatusFailed || !errors.As(err, &hke) {
		t.Errorf("%s %v, want failed with a host key error", st, err)
	}
	if len(p.srv.Execs()) != 0 {
		t.Errorf("commands ran on a node whose key did not match: %v", p.srv.Execs())
	}
}
