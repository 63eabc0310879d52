package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Command is one program the agent runs on the target.
type Command struct {
	Argv   []string
	Env    []string // the whole environment of the program
	Dir    string
	Stdout io.Writer
	Stderr io.Writer
}

// Executor runs commands. The agent's state machine only talks to the system
// through it (and the file system), so tests replace it with a fake.
type Executor interface {
	// Run runs c to completion and returns its exit status (128+n when it
	// was killed by signal n). A non-zero status is not an error. The error
	// is for a command that could not start, or that was stopped because
	// ctx ended: then the whole process group of the command is killed.
	Run(ctx context.Context, c Command) (exitCode int, err error)
}

// OSExecutor runs commands as child processes, each in its own process
// group so a timeout kills the activation and everything it started.
type OSExecutor struct {
	// KillGrace is how long a stopped command gets between SIGTERM and
	// SIGKILL (default 5s).
	KillGrace time.Duration
}

// Run implements Executor.
func (x OSExecutor) Run(ctx context.Context, c Command) (int, error) {
	if len(c.Argv) == 0 {
		return -1, errors.New("run: empty command")
	}
	path, err := lookPath(c.Argv[0], envValue(c.Env, "PATH"))
	if err != nil {
		return -1, err
	}
	grace := x.KillGrace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	cmd := exec.Command(path, c.Argv[1:]...)
	cmd.Args[0] = c.Argv[0]
	cmd.Env = c.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A child that escaped the process group could hold the output pipes
	// open forever; stop waiting for them a while after the command ended.
	cmd.WaitDelay = grace
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start %s: %w", c.Argv[0], err)
	}
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		return exitStatus(cmd, err)
	case <-ctx.Done():
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-waited:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-waited
	}
	// Whatever of the group outlived its leader goes too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return -1, context.Cause(ctx)
}

func exitStatus(cmd *exec.Cmd, err error) (int, error) {
	ps := cmd.ProcessState
	if ps == nil {
		return -1, err
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	var ee *exec.ExitError
	if err == nil || errors.As(err, &ee) || errors.Is(err, exec.ErrWaitDelay) {
		return ps.ExitCode(), nil
	}
	return ps.ExitCode(), err
}

// lookPath finds name in the given PATH (not the agent's own, which the
// deployer's environment does not change).
func lookPath(name, pathEnv string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH %q", name, pathEnv)
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// withEnv returns env with the given KEY=VALUE pairs set (replacing earlier
// values of the same keys).
func withEnv(env []string, kv ...string) []string {
	out := make([]string, 0, len(env)+len(kv))
	set := map[string]bool{}
	for _, s := range kv {
		k, _, _ := strings.Cut(s, "=")
		set[k] = true
	}
	for _, s := range env {
		k, _, _ := strings.Cut(s, "=")
		if !set[k] {
			out = append(out, s)
		}
	}
	return append(out, kv...)
}

// tailBuffer keeps the last bytes written to it: the end of a failing
// command's error output.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(bytes.TrimSpace(t.buf)) }

// CmdError is a command that ran and failed; it keeps the argv and the end of
// its error output, which is what a person needs to see.
type CmdError struct {
	Argv     []string
	ExitCode int
	Stderr   string
	Err      error
}

func (e *CmdError) Error() string {
	s := strings.Join(e.Argv, " ")
	switch {
	case e.Err != nil:
		s += ": " + e.Err.Error()
	default:
		s += fmt.Sprintf(": exit status %d", e.ExitCode)
	}
	if e.Stderr != "" {
		s += ": " + e.Stderr
	}
	return s
}

func (e *CmdError) Unwrap() error { return e.Err }
