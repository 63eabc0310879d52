package nix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Executor runs one command given as argv (never a shell line). The local
// implementation is Local; over SSH the same queries run on a remote host
// through an adapter around the SSH client, so this package never needs
// to know about the transport.
//
// Run returns nil when the command exits 0. Otherwise its error should
// have an ExitCode() int method when the command ran and exited non-zero
// (as *exec.ExitError has), so CmdError can report the code.
type Executor interface {
	Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// Local runs commands on this machine with os/exec.
type Local struct {
	// Env is the complete environment of the commands. nil means this
	// process's environment cut down to what nix needs (see Environ):
	// never a deploy key, a token or the runner's credentials, which
	// code from a pull request could otherwise reach through nix. This
	// package reads the environment only to pass it on that way.
	Env []string
	// Dir is the working directory; empty means this process's.
	Dir string
	// StopGrace is how long a command may take to exit after SIGTERM when
	// the context ends, before it is killed (default 10s). nix cleans up
	// its temporary roots and locks on SIGTERM, not on SIGKILL.
	StopGrace time.Duration
}

// Run implements Executor.
func (l Local) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(argv) == 0 {
		return errors.New("run: empty argv")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = l.Env
	if cmd.Env == nil {
		cmd.Env = Environ(os.Environ())
	}
	cmd.Dir = l.Dir
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = l.StopGrace
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 10 * time.Second
	}
	return cmd.Run()
}

// CmdError is a command that failed: its argv, exit code and the last
// lines of its stderr, which is where nix says what went wrong.
type CmdError struct {
	Argv []string
	// ExitCode is the command's exit status, or -1 when it did not exit on
	// its own (not started, killed, connection lost, context ended).
	ExitCode int
	// StderrTail holds the last lines of stderr (at most stderrTailLines).
	StderrTail string
	// Err is the underlying error: the executor's, or the context's when
	// the context ended.
	Err error
}

func (e *CmdError) Error() string {
	var b strings.Builder
	b.WriteString(FormatArgv(e.Argv))
	switch {
	case e.ExitCode >= 0:
		fmt.Fprintf(&b, ": exit status %d", e.ExitCode)
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if tail := strings.TrimRight(e.StderrTail, "\n"); tail != "" {
		for _, line := range strings.Split(tail, "\n") {
			b.WriteString("\n    ")
			b.WriteString(line)
		}
	}
	return b.String()
}

func (e *CmdError) Unwrap() error { return e.Err }

// maxShownArgs bounds how much of a long argv (thousands of store paths)
// an error message repeats.
const maxShownArgs = 8

// FormatArgv renders argv for messages: arguments quoted when they are not
// plain words, long lists cut with a count of what was left out. It is for
// people to read, never for a shell.
func FormatArgv(argv []string) string {
	shown := argv
	if len(shown) > maxShownArgs {
		shown = shown[:maxShownArgs]
	}
	parts := make([]string, 0, len(shown)+1)
	for _, a := range shown {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '.' || r == '/' || r == '=' || r == ':' || r == '+' || r == '#' || r == ',' || r == '@' ||
				('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9'))
		}) {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	if n := len(argv) - len(shown); n > 0 {
		parts = append(parts, fmt.Sprintf("... (%d more)", n))
	}
	return strings.Join(parts, " ")
}

// exitCode extracts the exit status from an executor's error, -1 if none.
func exitCode(err error) int {
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return -1
}

const (
	stderrTailLines   = 20
	stderrTailLineMax = 512
)

// tailWriter keeps the last lines written to it, each cut to a bounded
// length, so a runaway build log costs bounded memory.
type tailWriter struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range p {
		if c == '\n' {
			t.push()
			continue
		}
		if len(t.partial) < stderrTailLineMax {
			t.partial = append(t.partial, c)
		}
	}
	return len(p), nil
}

func (t *tailWriter) push() {
	t.lines = append(t.lines, string(t.partial))
	t.partial = t.partial[:0]
	if len(t.lines) > stderrTailLines {
		t.lines = t.lines[len(t.lines)-stderrTailLines:]
	}
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(t.partial))
		if len(lines) > stderrTailLines {
			lines = lines[len(lines)-stderrTailLines:]
		}
	}
	return strings.Join(lines, "\n")
}
