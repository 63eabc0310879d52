package testhost

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCrashedRunIsCleaned starts a fleet in a child process, kills it with
// SIGKILL (no cleanup runs), and checks that the next run removes what it
// left and is not disturbed by it.
func TestCrashedRunIsCleaned(t *testing.T) {
	if os.Getenv("TESTHOST_CRASH_CHILD") == "1" {
		crashChild()
		return
	}
	NeedHosts(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashedRunIsCleaned$")
	cmd.Env = append(os.Environ(), "TESTHOST_CRASH_CHILD=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	run, ok := strings.CutPrefix(strings.TrimSpace(line), "RUN ")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err != nil || !ok {
		t.Fatalf("child said %q, %v", line, err)
	}

	// Hold the dead run's lock while looking, so that no concurrent run
	// (another test package) cleans it under our feet.
	lock, dead, err := tryLockRun(run)
	if err != nil || !dead || lock == nil {
		t.Fatalf("lock of killed run %s: dead %v, %v", run, dead, err)
	}
	ctx := context.Background()
	all, err := Leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, l := range all {
		if l.Run == run {
			kinds[l.Kind] = true
		}
	}
	for _, k := range []string{KindNetns, KindLink, KindDir, KindProcess, KindRoute} {
		if !kinds[k] {
			t.Errorf("crashed run %s left no %s, so this test proves nothing (%v)", run, k, kinds)
		}
	}
	lock.Close()
	lock, dead, _ = tryLockRun(run)
	if lock != nil {
		lock.Close()
	}
	if !dead {
		t.Error("Leftovers took a dead run's lock and kept it")
	}

	f := StartT(t, Options{Topology: Home})
	if f.Run == run {
		t.Fatal("run id reused")
	}
	all, err = Leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range all {
		if l.Run == run {
			t.Errorf("not cleaned by the next run: %s", l)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := f.Dial(dctx, "rpi")
	if err != nil {
		t.Fatalf("new run's rpi: %v", err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if name, err := s.Output("cat /run/testhost/name"); err != nil || strings.TrimSpace(string(name)) != "rpi" {
		t.Errorf("new run's rpi says %q, %v", name, err)
	}
}

func crashChild() {
	f, err := Start(context.Background(), Options{Topology: Home})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// An open session: its sshd child must be found and killed too.
	if c, err := f.Dial(context.Background(), "rpi"); err == nil {
		if s, err := c.NewSession(); err == nil {
			_ = s.Start("sleep 600")
		}
	}
	fmt.Printf("RUN %s\n", f.Run)
	time.Sleep(10 * time.Minute)
}
