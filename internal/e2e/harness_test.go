package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// bins are built once for the package by TestMain.
var bins Binaries

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if testhost.Check() == nil {
		root, err := ModuleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		dir, err := os.MkdirTemp("", "tether-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		bins, err = Build(ctx, root, dir)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// sandbox is a running fleet with its fixture flake.
type sandbox struct {
	t        *testing.T
	fleet    *testhost.Fleet
	flakeDir string
	flake    string
	env      []string
	// tetherBin and agentsDir are the deployer under test and the
	// --agents-dir it is given ("" gives none).
	tetherBin, agentsDir string
}

type sandboxOpts struct {
	topology testhost.Topology
	variants map[string]string
	// tweak adjusts the deploy.nodes entries before the flake is written.
	tweak  func(map[string]fixture.HostConf)
	deploy map[string]any
	// timeout bounds the test's context; 10 minutes when zero.
	timeout time.Duration
}

// newSandbox starts a fleet with its fixture flake for the test, and
// returns it with the test's context, which ends after o.timeout or with
// the test.
func newSandbox(t *testing.T, o sandboxOpts) (context.Context, *sandbox) {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = 10 * time.Minute
	}
	ctx := testenv.Context(t, o.timeout)
	f := testhost.StartT(t, testhost.Options{Topology: o.topology, Logf: t.Logf})
	hosts, err := HostConfs(f)
	if err != nil {
		t.Fatal(err)
	}
	if o.tweak != nil {
		o.tweak(hosts)
	}
	dir := t.TempDir()
	ref, err := fixture.Config{Hosts: hosts, Variants: o.variants, Deploy: o.deploy}.Prepare(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, &sandbox{t: t, fleet: f, flakeDir: dir, flake: ref, env: TetherEnv(os.Environ()), tetherBin: bins.Tether, agentsDir: bins.AgentsDir}
}

// run is one tether invocation.
type run struct {
	code           int
	stdout, stderr string
	report         *deploy.Report
}

func (r run) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// tether runs the tether binary against the sandbox fleet. Deploy-like
// commands get --json, parsed into the report.
func (s *sandbox) tether(ctx context.Context, args ...string) run {
	s.t.Helper()
	cmd, out := s.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := run{stdout: stdout.String(), stderr: stderr.String()}
	if cmd.ProcessState != nil {
		r.code = cmd.ProcessState.ExitCode()
	} else if err != nil {
		s.t.Fatalf("tether %v: %v", args, err)
	}
	s.t.Logf("tether %s → exit %d\n%s%s", strings.Join(args, " "), r.code, r.stderr, r.stdout)
	if out != "" {
		if b, err := os.ReadFile(out); err == nil {
			r.report = &deploy.Report{}
			if err := json.Unmarshal(b, r.report); err != nil {
				s.t.Fatalf("parse --json: %v\n%s", err, b)
			}
		}
	}
	return r
}

// command prepares a tether invocation; for deploy and rollback it adds
// --json and returns where the report goes.
func (s *sandbox) command(ctx context.Context, args ...string) (*exec.Cmd, string) {
	full := []string{args[0], "--flake", s.flake, "--ssh-key", s.fleet.ClientKeyPath, "--known-hosts", s.fleet.KnownHostsPath}
	if s.agentsDir != "" {
		full = append(full, "--agents-dir", s.agentsDir)
	}
	out := ""
	if args[0] == "deploy" || args[0] == "rollback" {
		out = filepath.Join(s.t.TempDir(), "report.json")
		full = append(full, "--json", out)
	}
	full = append(full, args[1:]...)
	cmd := exec.CommandContext(ctx, s.tetherBin, full...)
	cmd.Env = s.env
	cmd.WaitDelay = 5 * time.Second
	return cmd, out
}

func (s *sandbox) setVariant(host, variant string) {
	s.t.Helper()
	if err := fixture.SetVariant(s.flakeDir, host, variant); err != nil {
		s.t.Fatal(err)
	}
}

// running reads which fixture variant a host runs, from the host itself.
func (s *sandbox) running(ctx context.Context, host string) fixture.Generation {
	s.t.Helper()
	b, err := s.fleet.Host(host).ReadFile(ctx, fixture.GenerationFile)
	if err != nil {
		s.t.Fatalf("%s: read %s: %v", host, fixture.GenerationFile, err)
	}
	g, err := fixture.ParseGeneration(b)
	if err != nil {
		s.t.Fatal(err)
	}
	cur, err := s.fleet.Host(host).ReadLink(ctx, fixture.CurrentSystem)
	if err != nil {
		s.t.Fatalf("%s: %v", host, err)
	}
	if cur != g.Toplevel {
		s.t.Fatalf("%s: /run/current-system is %s but the generation marker says %s", host, cur, g.Toplevel)
	}
	return g
}

func (s *sandbox) wantRunning(ctx context.Context, host, variant string) {
	s.t.Helper()
	if g := s.running(ctx, host); g.Variant != variant {
		s.t.Errorf("%s runs %s, want %s", host, g.Variant, variant)
	}
}

func result(t *testing.T, r run, node string) deploy.Result {
	t.Helper()
	if r.report == nil {
		t.Fatalf("no JSON report\n%s", r)
	}
	return testenv.Find(t, r.report.Results, func(res deploy.Result) bool { return res.Node == node }, "no result for %s in report\n%s", node, r)
}

func parseReport(t *testing.T, b []byte) *deploy.Report {
	t.Helper()
	rep := &deploy.Report{}
	if err := json.Unmarshal(b, rep); err != nil {
		t.Fatalf("parse --json: %v\n%s", err, b)
	}
	return rep
}

func marshalKey(k ssh.PublicKey) []byte { return ssh.MarshalAuthorizedKey(k) }

// replaceFlag sets the value following flag in args.
func replaceFlag(args []string, flag, value string) []string {
	out := append([]string(nil), args...)
	for i := range out[:len(out)-1] {
		if out[i] == flag {
			out[i+1] = value
		}
	}
	return out
}

// writeConfig writes tether.toml beside the fixture's flake.nix.
func (s *sandbox) writeConfig(toml string) {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.flakeDir, "tether.toml"), []byte(toml), 0o644); err != nil {
		s.t.Fatal(err)
	}
}
