package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Output runs cmd and returns its standard output. A command that fails
// fails the test with its command line, its error and its standard error
// (unless the caller took standard error for itself): "exit status 1"
// alone says nothing about why nix refused.
func Output(t testing.TB, cmd *exec.Cmd) []byte {
	t.Helper()
	var stderr bytes.Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return out
}

// Serve listens on network and address and calls handle for each
// connection, each in its own goroutine, closing the connection when
// handle returns; it returns the address it listens on. When the test ends
// the listener closes and the accept loop is waited for, so no goroutine
// of it outlives the test; a handler still running must end on its own
// (t.Context is done by then).
func Serve(t testing.TB, network, address string, handle func(net.Conn)) net.Addr {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatalf("listen on %s %s: %v", network, address, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	})
	return ln.Addr()
}

// GoCommand is the go command that runs this test: the one on PATH, else
// the one beside the test's toolchain ($GOROOT/bin/go, as `go test` sets
// GOROOT for its children). Tests that build a binary use it.
func GoCommand(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	t.Fatal("no go command on PATH and no $GOROOT/bin/go: a test needs it to build a binary")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
