package testenv_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testenv"
)

// gateEnv makes TestGateChild run one gate; childEnv makes the test binary
// a plain command for Output (print to both streams and exit 3).
const (
	gateEnv  = "TESTENV_GATE"
	childEnv = "TESTENV_CHILD"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "exit3" {
		fmt.Println("to stdout")
		fmt.Fprintln(os.Stderr, "nix refused: to stderr")
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// gates are the calls TestGate runs in a child test process, each with
// the reason it must give when it stops the test ("" when it must pass).
var gates = map[string]struct {
	gate func(t *testing.T)
	why  string
}{
	"SkipOrFail":          {func(t *testing.T) { testenv.SkipOrFail(t, "no sshd here") }, "no sshd here"},
	"NeedCommands":        {func(t *testing.T) { testenv.NeedCommands(t, os.Args[0], "tether-no-such-a", "tether-no-such-b") }, "commands not found: tether-no-such-a, tether-no-such-b"},
	"NeedCommands found":  {func(t *testing.T) { testenv.NeedCommands(t, os.Args[0]) }, ""},
	"NeedFiles":           {func(t *testing.T) { testenv.NeedFiles(t, os.Args[0], "/tether/no/such/file") }, "files not found: /tether/no/such/file"},
	"NeedFiles found":     {func(t *testing.T) { testenv.NeedFiles(t, os.Args[0]) }, ""},
	"NeedRoot as root":    {func(t *testing.T) { testenv.NeedRoot(t, "writes to the store") }, ""},
	"NeedRoot as nonroot": {func(t *testing.T) { testenv.NeedRoot(t, "writes to the store") }, "needs root: writes to the store"},
}

// TestGateChild runs the gate named by TESTENV_GATE; TestGate starts it in
// a child process. Without the variable it has nothing to do.
func TestGateChild(t *testing.T) {
	name := os.Getenv(gateEnv)
	if name == "" {
		return
	}
	gates[name].gate(t)
	t.Log("GATE PASSED")
}

// TestGate runs each gate as a real test in a child process, without and
// with TETHER_E2E=require, and checks what go test reports: skipped with
// the reason, or failed with it, or passed when nothing is missing.
func TestGate(t *testing.T) {
	root := os.Geteuid() == 0
	for name, g := range gates {
		if name == "NeedRoot as root" && !root || name == "NeedRoot as nonroot" && root {
			continue // the other of the two runs here
		}
		for _, require := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/require=%v", name, require), func(t *testing.T) {
				cmd := exec.Command(os.Args[0], "-test.run=^TestGateChild$", "-test.v", "-test.count=1")
				cmd.Env = append(withoutVar(os.Environ(), "TETHER_E2E"), gateEnv+"="+name)
				if require {
					cmd.Env = append(cmd.Env, "TETHER_E2E=require")
				}
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if err != nil && !errors.As(err, &ee) {
					t.Fatalf("run child: %v", err)
				}
				log := string(out)
				switch {
				case g.why == "":
					if err != nil || !strings.Contains(log, "--- PASS: TestGateChild") || !strings.Contains(log, "GATE PASSED") {
						t.Errorf("nothing is missing, but the test did not pass (%v):\n%s", err, log)
					}
				case require:
					if err == nil || !strings.Contains(log, "--- FAIL: TestGateChild") || !strings.Contains(log, "END-TO-END TEST CANNOT RUN (TETHER_E2E=require): "+g.why) {
						t.Errorf("under TETHER_E2E=require the test did not fail saying %q (%v):\n%s", g.why, err, log)
					}
				default:
					if err != nil || !strings.Contains(log, "--- SKIP: TestGateChild") || !strings.Contains(log, "!!! SKIPPING END-TO-END TEST: "+g.why+" (set TETHER_E2E=require to make this a failure)") {
						t.Errorf("the test was not skipped loudly saying %q (%v):\n%s", g.why, err, log)
					}
				}
				if strings.Contains(log, "GATE PASSED") != (g.why == "") {
					t.Errorf("the test went on past a gate that stopped it:\n%s", log)
				}
			})
		}
	}
}

func withoutVar(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// fakeT records how a helper stopped the test. Fatalf ends the goroutine
// as testing.T's does, so run calls the helper on a goroutine of its own.
type fakeT struct {
	testing.TB
	fatal string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fakeT) Fatal(args ...any) {
	f.fatal = fmt.Sprint(args...)
	runtime.Goexit()
}

// run calls fn with a fakeT and reports whether fn returned (rather than
// stopping the test).
func run(t *testing.T, fn func(*fakeT)) (f *fakeT, returned bool) {
	f = &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
		returned = true
	}()
	<-done
	return f, returned
}

func TestFixtureFlake(t *testing.T) {
	testenv.NeedFiles(t, fixture.DefaultBusybox)
	var dir string
	t.Run("inner", func(t *testing.T) {
		ref := testenv.FixtureFlake(t)
		var ok bool
		if dir, ok = strings.CutPrefix(ref, "path:"); !ok || !filepath.IsAbs(dir) {
			t.Fatalf("flake reference %q, want path:<absolute dir>", ref)
		}
		for _, f := range []string{"flake.nix", "hosts.json"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("prepared flake lacks %s: %v", f, err)
			}
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("flake directory %s outlived its test: %v", dir, err)
	}
}
