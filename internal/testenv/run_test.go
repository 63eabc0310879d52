package testenv_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
)

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
