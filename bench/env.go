//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tetherdeploy/tether/internal/e2e"
	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// bench holds what every scenario shares.
type bench struct {
	out, log         io.Writer
	quick, verbose   bool
	keep             bool
	command, machine string
	work             string // scratch directory, removed at the end
	bins             e2e.Binaries
	env              []string // environment of tether and nix
	seq              int
	drop             []string // store paths to delete from the runner's store at the end
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

// pick returns quick in quick mode, full otherwise.
func pick[T any](b *bench, full, quick T) T {
	if b.quick {
		return quick
	}
	return full
}

// benchEnv is tether's sandbox environment (nix offline, short SSH
// keepalives).
func benchEnv(environ []string) []string { return e2e.TetherEnv(environ) }

// sandbox is a running fleet and the fixture flake that reaches it.
type sandbox struct {
	b     *bench
	fleet *testhost.Fleet
	dir   string // the flake's directory
	ref   string // its flake reference
}

// startSandbox starts sandbox hosts and writes a fixture flake whose
// deploy.nodes reach them; ballast sizes are per host.
func (b *bench) startSandbox(ctx context.Context, topo testhost.Topology, ballast map[string]int64) (*sandbox, error) {
	return b.startSandboxWith(ctx, topo, func(c *fixture.Config) { c.Ballast = ballast })
}

// startSandboxWith is startSandbox with the fixture's configuration (its
// hosts' deploy.nodes settings, ballast) tuned by tune before it is
// written.
func (b *bench) startSandboxWith(ctx context.Context, topo testhost.Topology, tune func(*fixture.Config)) (*sandbox, error) {
	b.logf("starting sandbox hosts (%s)", topo)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var logf func(string, ...any)
	if b.verbose {
		logf = b.logf
	}
	f, err := testhost.Start(sctx, testhost.Options{Topology: topo, Logf: logf})
	if err != nil {
		return nil, err
	}
	s := &sandbox{b: b, fleet: f}
	hosts, err := e2e.HostConfs(f)
	if err != nil {
		s.close()
		return nil, err
	}
	b.seq++
	s.dir = filepath.Join(b.work, fmt.Sprintf("fleet-%d", b.seq))
	conf := fixture.Config{Hosts: hosts}
	if tune != nil {
		tune(&conf)
	}
	s.ref, err = conf.Prepare(s.dir)
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *sandbox) close() {
	if err := s.fleet.Close(); err != nil {
		s.b.logf("closing sandbox run %s: %v", s.fleet.Run, err)
	}
}

// setVariant makes the flake give each host the variant, as a commit would.
func (s *sandbox) setVariant(variant string, hosts ...string) error {
	for _, h := range hosts {
		if err := fixture.SetVariant(s.dir, h, variant); err != nil {
			return err
		}
	}
	return nil
}

// prebuild builds on the runner what deploy.nodes would deploy for the
// hosts in the variants, so that measured deploys time the deploy and not
// the first build of shared packages.
func (s *sandbox) prebuild(ctx context.Context, hosts []string, variants ...string) (time.Duration, error) {
	args := []string{"build", "--no-link"}
	for _, h := range hosts {
		for _, v := range variants {
			args = append(args, s.ref+"#"+fixture.ProfileAttr(h, v))
		}
	}
	start := time.Now()
	_, err := s.b.nix(ctx, "nix", args...)
	return time.Since(start), err
}

// nix runs a nix command on the runner with the offline environment.
func (b *bench) nix(ctx context.Context, name string, args ...string) ([]byte, error) {
	return b.nixEnv(ctx, b.env, name, args...)
}

// nixEnv runs a nix command on the runner with the environment env.
func (b *bench) nixEnv(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tailLines(stderr.String(), 20))
	}
	return out, nil
}

// tetherRun is one tether invocation.
type tetherRun struct {
	args     []string
	started  time.Time
	wall     time.Duration
	code     int
	report   *deploy.Report
	stdout   string
	stderr   string
	treeRSS  int64         // KiB: wait4's peak, tether or any child it reaped
	cpu      time.Duration // tether's user+system time, with the children it reaped
	busy     time.Duration // CPU time the whole machine was busy during the run
	mem      memPeaks
	sampled  bool
	reportOK bool // a report was written and every node is on its new system
	// lines are tether's stderr lines (its progress log), each stamped
	// with when it arrived: the run's timeline.
	lines []stampedLine
}

// stampedLine is a line tether wrote to stderr, and when, counted from
// the start of the process.
type stampedLine struct {
	at   time.Duration
	text string
}

// at is when the first line starting with prefix arrived.
func (r *tetherRun) at(prefix string) (time.Duration, bool) {
	for _, l := range r.lines {
		if strings.HasPrefix(l.text, prefix) {
			return l.at, true
		}
	}
	return 0, false
}

// showTimeline logs, with -v, a run's progress lines and when each came.
func (b *bench) showTimeline(scenario string, r *tetherRun) {
	if !b.verbose {
		return
	}
	for _, l := range r.lines {
		b.logf("%s: %6d ms  %s", scenario, l.at.Milliseconds(), l.text)
	}
}

// lineStamper splits what is written to it into lines and stamps each
// with the time its end arrived.
type lineStamper struct {
	start   time.Time
	mu      sync.Mutex
	partial []byte
	lines   []stampedLine
}

func (l *lineStamper) Write(p []byte) (int, error) {
	now := time.Since(l.start)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.lines = append(l.lines, stampedLine{at: now, text: string(l.partial[:i])})
		l.partial = l.partial[i+1:]
	}
}

func (r *tetherRun) String() string {
	return fmt.Sprintf("tether %s: exit %d after %s\n%s", strings.Join(r.args, " "), r.code, secs(r.wall), tailLines(r.stderr, 30))
}

// result finds a node's result in the report.
func (r *tetherRun) result(node string) (deploy.Result, bool) {
	if r.report == nil {
		return deploy.Result{}, false
	}
	for _, res := range r.report.Results {
		if res.Node == node {
			return res, true
		}
	}
	return deploy.Result{}, false
}

// runOpts tune one invocation.
type runOpts struct {
	// memHost, when set, turns on memory sampling: the deployer on the
	// runner and the agent on this host.
	memHost *testhost.Host
	// env, when set, replaces the bench's environment for tether.
	env []string
}

// tether runs `tether <command> --flake … <args>` against the sandbox and
// waits for it. A non-zero exit is not an error here; see deploy.
func (s *sandbox) tether(ctx context.Context, o runOpts, command string, args ...string) (*tetherRun, error) {
	s.b.seq++
	jsonOut := filepath.Join(s.b.work, fmt.Sprintf("report-%d.json", s.b.seq))
	full := []string{command, "--flake", s.ref, "--ssh-key", s.fleet.ClientKeyPath,
		"--known-hosts", s.fleet.KnownHostsPath, "--agents-dir", s.b.bins.AgentsDir, "--json", jsonOut}
	full = append(full, args...)
	r := &tetherRun{args: append([]string{command}, args...)}
	cmd := exec.CommandContext(ctx, s.b.bins.Tether, full...)
	cmd.Env = s.b.env
	if o.env != nil {
		cmd.Env = o.env
	}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	stamps := &lineStamper{}
	cmd.Stdout, cmd.Stderr = &stdout, io.MultiWriter(&stderr, stamps)
	if s.b.verbose {
		cmd.Stdout = io.MultiWriter(&stdout, s.b.log)
		cmd.Stderr = io.MultiWriter(&stderr, stamps, s.b.log)
		s.b.logf("$ tether %s", strings.Join(r.args, " "))
	}
	busy0 := cpuBusy()
	r.started = time.Now()
	stamps.start = r.started
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var smp *sampler
	if o.memHost != nil {
		smp = startSampler(cmd.Process.Pid, o.memHost)
	}
	err := cmd.Wait()
	r.wall = time.Since(r.started)
	r.busy = cpuBusy() - busy0
	if smp != nil {
		r.mem, r.sampled = smp.finish(), true
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	stamps.mu.Lock()
	r.lines = stamps.lines
	stamps.mu.Unlock()
	if cmd.ProcessState == nil {
		return nil, fmt.Errorf("tether %s: %w", strings.Join(r.args, " "), err)
	}
	r.code = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.treeRSS = ru.Maxrss
		r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if b, err := os.ReadFile(jsonOut); err == nil && command != "plan" {
		rep := &deploy.Report{}
		if err := json.Unmarshal(b, rep); err != nil {
			return nil, fmt.Errorf("tether %s: parse --json: %w", strings.Join(r.args, " "), err)
		}
		r.report = rep
		r.reportOK = len(rep.Results) > 0 && rep.OK()
	}
	return r, nil
}

// deploy runs `tether deploy args…` and fails unless every node deployed.
func (s *sandbox) deploy(ctx context.Context, o runOpts, args ...string) (*tetherRun, error) {
	r, err := s.tether(ctx, o, "deploy", args...)
	if err != nil {
		return nil, err
	}
	if r.code != 0 || !r.reportOK {
		return r, fmt.Errorf("deploy did not succeed: %s", r)
	}
	return r, nil
}

// generation reads which fixture variant a host runs, from the host's /run
// as the runner sees it (no process is started, so it can be polled).
func generation(h *testhost.Host) (fixture.Generation, error) {
	b, err := os.ReadFile(filepath.Join(h.Dir, "run", strings.TrimPrefix(fixture.GenerationFile, "/run/")))
	if err != nil {
		return fixture.Generation{}, err
	}
	return fixture.ParseGeneration(b)
}

// closureSize is the NAR size of a store path's closure in the runner's
// store.
func (b *bench) closureSize(ctx context.Context, path string) (int64, error) {
	out, err := b.nix(ctx, "nix", "path-info", "--closure-size", "--json", path)
	if err != nil {
		return 0, err
	}
	var info []struct {
		ClosureSize int64 `json:"closureSize"`
	}
	if err := json.Unmarshal(out, &info); err != nil || len(info) != 1 {
		return 0, fmt.Errorf("nix path-info %s: %v %s", path, err, out)
	}
	return info[0].ClosureSize, nil
}

// outPath evaluates the store path of a flake attribute.
func (s *sandbox) outPath(ctx context.Context, attr string) (string, error) {
	out, err := s.b.nix(ctx, "nix", "eval", "--raw", s.ref+"#"+attr+".outPath")
	return strings.TrimSpace(string(out)), err
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hostNames are the generic hosts h<from>…h<from+n-1>.
func hostNames(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fixture.GenericHost(from + i)
	}
	return out
}
