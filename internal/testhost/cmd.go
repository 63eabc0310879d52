package testhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// CmdError is a failed external command: its argv, how it ended and the tail
// of what it said on stderr, so a failed setup step explains itself.
type CmdError struct {
	Host   string // sandbox host it ran in, "" for the runner
	Argv   []string
	Err    error
	Stderr string
}

func (e *CmdError) Error() string {
	var b strings.Builder
	if e.Host != "" {
		fmt.Fprintf(&b, "on %s: ", e.Host)
	}
	fmt.Fprintf(&b, "%s: %v", strings.Join(e.Argv, " "), e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		fmt.Fprintf(&b, ": %s", s)
	}
	return b.String()
}

func (e *CmdError) Unwrap() error { return e.Err }

// ExitCode is the command's exit status, or -1 when it did not exit normally.
func (e *CmdError) ExitCode() int {
	var xe *exec.ExitError
	if errors.As(e.Err, &xe) {
		return xe.ExitCode()
	}
	return -1
}

const stderrTail = 2048

func tail(b []byte) string {
	if len(b) > stderrTail {
		b = b[len(b)-stderrTail:]
	}
	return string(b)
}

// run runs argv on the runner and returns its stdout.
func run(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &CmdError{Argv: argv, Err: err, Stderr: tail(stderr.Bytes())}
	}
	return stdout.Bytes(), nil
}
