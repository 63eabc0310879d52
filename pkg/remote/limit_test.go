package remote

import (
	"bytes"
	"context"
	"errors"
	"github.com/tetherdeploy/tether/internal/testenv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// endless is a command that writes its pid to a file, then a line to stdout
// or stderr for ever.
func endless(stream string) []string {
	redirect := ""
	if stream == "stderr" {
		redirect = " >&2"
	}
	return []string{"sh", "-c", `echo $$ > pid.tmp; mv pid.tmp pid; exec yes tether` + redirect}
}

// TestEndlessOutputIsCut: a node that answers with an endless stream is
// stopped at the command's bound, with an error naming the node, the
// stream and the command, and no more than the bound reaches the caller.
func TestEndlessOutputIsCut(t *testing.T) {
	for _, stream := range []string{"stdout", "stderr"} {
		t.Run(stream, func(t *testing.T) {
			f := newFixture(t)
			c, _, dir := webClient(t, f)
			const limit = 1 << 20
			var got bytes.Buffer
			cmd := Cmd{Argv: endless(stream)}
			if stream == "stdout" {
				cmd.Stdout, cmd.MaxStdout = &got, limit
			} else {
				cmd.Stderr, cmd.MaxStderr = &got, limit
			}
			err := c.Run(context.Background(), cmd)
			var le *OutputLimitError
			if !errors.As(err, &le) || le.Stream != stream || le.Limit != limit {
				t.Fatalf("Run = %v, want an *OutputLimitError on %s", err, stream)
			}
			want := "node web sent more than 1 MiB on " + stream + " answering sh -c "
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q, want it to start %q", err, want)
			}
			if got.Len() != limit {
				t.Errorf("the caller received %d bytes, want exactly the bound %d", got.Len(), limit)
			}
			pid := readPid(t, dir)
			testenv.Eventually(t, 10*time.Second, "the endless command to be killed", func() bool { return processGone(pid) })
		})
	}
}

// TestOutputHasADefaultBound: Output, which buffers, never holds more than
// DefaultMaxOutput however long the node talks.
func TestOutputHasADefaultBound(t *testing.T) {
	f := newFixture(t)
	c, _, dir := webClient(t, f)
	out, err := c.Output(context.Background(), endless("stdout")...)
	var le *OutputLimitError
	if !errors.As(err, &le) || le.Limit != DefaultMaxOutput {
		t.Fatalf("Output = %v, want an *OutputLimitError at %d", err, DefaultMaxOutput)
	}
	if len(out) > DefaultMaxOutput {
		t.Errorf("Output returned %d bytes, more than the bound %d", len(out), DefaultMaxOutput)
	}
	testenv.Eventually(t, 10*time.Second, "the endless command to be killed", func() bool { return processGone(readPid(t, dir)) })

	// Output within the bound is untouched, and a negative bound is none.
	var big bytes.Buffer
	if err := c.Run(context.Background(), Cmd{Argv: []string{"head", "-c", "3000000", "/dev/zero"}, Stdout: &big, MaxStdout: -1}); err != nil || big.Len() != 3000000 {
		t.Errorf("unbounded stream: %d bytes, %v", big.Len(), err)
	}
}

func readPid(t *testing.T, dir string) int {
	t.Helper()
	var pid int
	testenv.Eventually(t, 10*time.Second, "the command's pid", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// TestGateReportsAByteBeyondAnExactBound: output that meets the bound
// exactly in one write and goes on in the next is stopped too.
func TestGateReportsAByteBeyondAnExactBound(t *testing.T) {
	failed := make(chan error, 2)
	var got bytes.Buffer
	over := errors.New("over")
	g := &gate{w: &got, failed: failed, max: 8, over: over}
	g.Write([]byte("12345678"))
	select {
	case err := <-failed:
		t.Fatalf("reported %v at exactly the bound", err)
	default:
	}
	g.Write([]byte("9"))
	select {
	case err := <-failed:
		if err != over {
			t.Errorf("reported %v", err)
		}
	default:
		t.Fatal("a byte past the bound was not reported")
	}
	if got.String() != "12345678" {
		t.Errorf("passed %q, want the bound's worth", got.String())
	}
}
