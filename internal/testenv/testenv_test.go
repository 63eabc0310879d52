package testenv_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

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
	logs  []string
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

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	polls := 0
	f, returned := run(t, func(f *fakeT) {
		testenv.Eventually(f, time.Minute, "the third poll", func() bool {
			polls++
			return polls == 3
		})
	})
	if !returned || f.fatal != "" || polls != 3 {
		t.Errorf("returned %v after %d polls (fatal %q), want a return at the third poll", returned, polls, f.fatal)
	}
}

func TestEventuallyTimeoutSaysWhatItWaitedFor(t *testing.T) {
	start := time.Now()
	polls := 0
	f, returned := run(t, func(f *fakeT) {
		testenv.Eventually(f, 100*time.Millisecond, "rpi to run v1", func() bool {
			polls++
			return false
		})
	})
	if returned {
		t.Fatal("Eventually returned though the condition never held")
	}
	if want := "gave up after 100ms waiting for rpi to run v1"; f.fatal != want {
		t.Errorf("failure %q, want %q", f.fatal, want)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond || polls < 2 {
		t.Errorf("gave up after %s and %d polls, want at least the timeout and more than one poll", waited, polls)
	}
}

// cond runs on the caller's goroutine, so it may stop the test itself.
func TestEventuallyConditionMayStopTheTest(t *testing.T) {
	polls := 0
	f, returned := run(t, func(f *fakeT) {
		testenv.Eventually(f, time.Minute, "a process", func() bool {
			polls++
			f.Fatal("the process exited")
			return false
		})
	})
	if returned || f.fatal != "the process exited" || polls != 1 {
		t.Errorf("returned %v after %d polls with %q, want the condition's own failure at once", returned, polls, f.fatal)
	}
}

func TestContextEndsWithTheTest(t *testing.T) {
	var ctx context.Context
	t.Run("inner", func(t *testing.T) {
		ctx = testenv.Context(t, time.Hour)
		if ctx.Err() != nil {
			t.Fatalf("context done while the test runs: %v", ctx.Err())
		}
		if d, ok := ctx.Deadline(); !ok || time.Until(d) < 59*time.Minute {
			t.Errorf("deadline %v (%v), want an hour from now", d, ok)
		}
	})
	if ctx.Err() == nil {
		t.Error("context still live after its test ended")
	}
	short := testenv.Context(t, time.Millisecond)
	select {
	case <-short.Done():
	case <-time.After(10 * time.Second):
		t.Error("context outlived its timeout")
	}
}

func TestOutput(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if got := string(testenv.Output(t, cmd)); !strings.Contains(got, "PASS") {
		t.Errorf("Output = %q, want the command's stdout", got)
	}

	cmd = exec.Command(os.Args[0], "nix-ish", "argument")
	cmd.Env = append(os.Environ(), childEnv+"=exit3")
	f, returned := run(t, func(f *fakeT) { testenv.Output(f, cmd) })
	if returned {
		t.Fatal("Output returned for a failing command")
	}
	for _, want := range []string{os.Args[0] + " nix-ish argument", "exit status 3", "nix refused: to stderr"} {
		if !strings.Contains(f.fatal, want) {
			t.Errorf("failure %q does not say %q", f.fatal, want)
		}
	}
}

func TestServe(t *testing.T) {
	var addr net.Addr
	var c net.Conn
	t.Run("inner", func(t *testing.T) {
		addr = testenv.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
			line, _ := bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "echo "+line)
			<-t.Context().Done()
		})
		var err error
		if c, err = net.Dial("tcp", addr.String()); err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "hello\n")
		if got, err := bufio.NewReader(c).ReadString('\n'); got != "echo hello\n" {
			t.Errorf("served %q, %v; want the handler's answer", got, err)
		}
	})
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	// The handler returned as its test ended, and Serve closed its end.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read after the test ended: %d bytes, %v; want EOF", n, err)
	}
	if c2, err := net.Dial("tcp", addr.String()); err == nil {
		c2.Close()
		t.Errorf("%s still accepts connections after its test ended", addr)
	}
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
