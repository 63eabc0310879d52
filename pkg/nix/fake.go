package nix

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// FakeExecutor is an Executor for tests of code that runs nix: it answers
// the commands it was told to expect and fails every other one, so a test
// notices a command it did not plan for.
type FakeExecutor struct {
	mu         sync.Mutex
	expected   []*FakeCall
	unexpected [][]string
}

// FakeCall is one expected command and its answer.
type FakeCall struct {
	Argv     []string
	Stdout   string
	Stderr   string
	ExitCode int // non-zero makes Run fail with that exit code
	// Stdin receives what the command read on stdin, at each call.
	Stdin strings.Builder
	// Calls counts how often the command ran.
	Calls int
}

// Expect adds an expected command answering stdout and exit 0; change the
// returned call for other answers. A command may run any number of times.
func (f *FakeExecutor) Expect(argv []string, stdout string) *FakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &FakeCall{Argv: slices.Clone(argv), Stdout: stdout}
	f.expected = append(f.expected, c)
	return c
}

// Run implements Executor.
func (f *FakeExecutor) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	var call *FakeCall
	for _, c := range f.expected {
		if slices.Equal(c.Argv, argv) {
			call = c
			break
		}
	}
	if call == nil {
		f.unexpected = append(f.unexpected, slices.Clone(argv))
		f.mu.Unlock()
		return fmt.Errorf("fake nix: unexpected command: %s", FormatArgv(argv))
	}
	call.Calls++
	f.mu.Unlock()

	if stdin != nil {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return err
		}
		f.mu.Lock()
		call.Stdin.Write(data)
		f.mu.Unlock()
	}
	if _, err := io.WriteString(stdout, call.Stdout); err != nil {
		return err
	}
	if _, err := io.WriteString(stderr, call.Stderr); err != nil {
		return err
	}
	if call.ExitCode != 0 {
		return fakeExit(call.ExitCode)
	}
	return nil
}

// Errorfer is the part of testing.TB that Check needs.
type Errorfer interface {
	Helper()
	Errorf(format string, args ...any)
}

// Check reports every command that ran without being expected and every
// expected command that never ran.
func (f *FakeExecutor) Check(t Errorfer) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, argv := range f.unexpected {
		t.Errorf("fake nix: unexpected command: %s", FormatArgv(argv))
	}
	for _, c := range f.expected {
		if c.Calls == 0 {
			t.Errorf("fake nix: expected command never ran: %s", FormatArgv(c.Argv))
		}
	}
}

type fakeExit int

func (e fakeExit) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
func (e fakeExit) ExitCode() int { return int(e) }
