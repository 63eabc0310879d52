package runner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
)

func shEnv(t *testing.T) []string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("SKIPPED: no sh on this machine")
	}
	return []string{"PATH=" + filepath.Dir(sh) + ":/usr/bin:/bin"}
}

func TestOSExecutorExitStatus(t *testing.T) {
	env := shEnv(t)
	var out, errOut bytes.Buffer
	tests := []struct {
		script string
		want   int
	}{
		{"exit 0", 0}, {"exit 4", 4}, {"exit 100", 100}, {"kill -TERM $$", 128 + 15},
	}
	for _, tc := range tests {
		code, err := OSExecutor{}.Run(context.Background(), Command{Argv: []string{"sh", "-c", tc.script}, Env: env, Stdout: &out, Stderr: &errOut})
		if err != nil || code != tc.want {
			t.Errorf("%s: %d, %v; want %d", tc.script, code, err, tc.want)
		}
	}
	code, err := OSExecutor{}.Run(context.Background(), Command{Argv: []string{"sh", "-c", "echo out; echo err >&2; echo $FOO"},
		Env: append(env, "FOO=bar"), Stdout: &out, Stderr: &errOut})
	if err != nil || code != 0 || out.String() != "out\nbar\n" || errOut.String() != "err\n" {
		t.Errorf("output: %d %v %q %q", code, err, out.String(), errOut.String())
	}
	if _, err := (OSExecutor{}).Run(context.Background(), Command{Argv: []string{"no-such-program-here"}, Env: env}); err == nil ||
		!strings.Contains(err.Error(), "not found") {
		t.Errorf("missing program: %v", err)
	}
}

// A timed-out activation takes everything it started with it: here a
// background sleep that would otherwise outlive it.
func TestOSExecutorKillsProcessGroup(t *testing.T) {
	env := shEnv(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancelCause(context.Background())
	errTimeout := errors.New("activation timeout")
	time.AfterFunc(300*time.Millisecond, func() { cancel(errTimeout) })
	var out bytes.Buffer
	code, err := OSExecutor{KillGrace: 200 * time.Millisecond}.Run(ctx, Command{
		Argv: []string{"sh", "-c", `trap '' TERM; sleep 300 & echo $! > "$1"; wait; wait`, "sh", pidFile},
		Env:  env, Stdout: &out, Stderr: &out,
	})
	if !errors.Is(err, errTimeout) || code != -1 {
		t.Fatalf("Run = %d, %v; want the timeout cause", code, err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	t.Cleanup(func() {
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	testenv.Eventually(t, 5*time.Second, "background child "+strconv.Itoa(pid)+" of the killed command to end", func() bool { return !alive(pid) })
}

// alive reports whether pid runs (a zombie waiting for a reaper is dead).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
