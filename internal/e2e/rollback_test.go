package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// Exit codes of tether (internal/cli/exit.go), as a script sees them.
const (
	exitOK         = 0
	exitFailed     = 1
	exitUsage      = 2
	exitRolledBack = 3
)

// short keeps rollbacks in tests quick: a node that hears nothing rolls
// back after this long.
const short = "6s"

// deployV1 puts every host on v1 and fails the test otherwise.
func (s *sandbox) deployV1(ctx context.Context, nodes ...string) {
	s.t.Helper()
	r := s.tether(ctx, append([]string{"deploy"}, nodes...)...)
	if r.code != exitOK {
		s.t.Fatalf("deploy v1: %s", r)
	}
}

// generations lists the system profile's generation links on a host.
func (s *sandbox) generations(ctx context.Context, host string) []string {
	s.t.Helper()
	out, err := s.fleet.Host(host).Exec(ctx, "sh", "-c", "cd /nix/var/nix/profiles && ls -d system-*-link 2>/dev/null || true")
	if err != nil {
		s.t.Fatalf("%s: list generations: %v", host, err)
	}
	return strings.Fields(string(out))
}

// sshReachable dials the host's sshd as the deployer would reach it.
func (s *sandbox) sshReachable(ctx context.Context, host string) error {
	c, err := s.fleet.Dial(ctx, host)
	if err != nil {
		return err
	}
	return c.Close()
}

func TestActivationFailureRollsBack(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	s.deployV1(ctx, fixture.Web)
	before := s.generations(ctx, fixture.Web)

	s.setVariant(fixture.Web, fixture.Fail)
	r := s.tether(ctx, "deploy", "--confirm-timeout", short, fixture.Web)
	if r.code != exitRolledBack {
		t.Fatalf("deploy of a failing activation: exit %d, want %d (rolled back)\n%s", r.code, exitRolledBack, r)
	}
	res := result(t, r, fixture.Web)
	if res.Status != deploy.StatusRolledBack {
		t.Errorf("JSON status %s, want rolled-back", res.Status)
	}
	if !strings.Contains(res.Error, "exit") && !strings.Contains(res.Error, "2") {
		t.Errorf("JSON error %q does not say how the activation failed", res.Error)
	}
	s.wantRunning(ctx, fixture.Web, fixture.V1)
	if after := s.generations(ctx, fixture.Web); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Errorf("generations after rollback %v, want the failed one deleted: %v", after, before)
	}
}

// TestConnectionCuttingActivationsRollBack deploys variants that cut the
// deployer off — one stops sshd, one takes the links down — and checks the
// machines come back on v1 by themselves, reachable, without the bad
// generation.
func TestConnectionCuttingActivationsRollBack(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	s.deployV1(ctx)

	cases := []struct{ host, variant string }{
		{fixture.Web, fixture.CutSSH},
		{fixture.RPi, fixture.LinkDown},
		{fixture.Frame1, fixture.LinkDown},
	}
	for _, c := range cases {
		t.Run(c.host+"/"+c.variant, func(t *testing.T) {
			before := s.generations(ctx, c.host)
			s.setVariant(c.host, c.variant)
			defer s.setVariant(c.host, fixture.V1)
			start := time.Now()
			r := s.tether(ctx, "deploy", "--confirm-timeout", short, c.host)
			if r.code != exitRolledBack {
				t.Fatalf("exit %d, want %d (rolled back)\n%s", r.code, exitRolledBack, r)
			}
			if res := result(t, r, c.host); res.Status != deploy.StatusRolledBack {
				t.Errorf("status %s, want rolled-back", res.Status)
			}
			t.Logf("%s with %s: back after %s", c.host, c.variant, time.Since(start).Round(time.Second))
			s.wantRunning(ctx, c.host, fixture.V1)
			if err := s.sshReachable(ctx, c.host); err != nil {
				t.Errorf("sshd not reachable after rollback: %v", err)
			}
			if after := s.generations(ctx, c.host); strings.Join(after, " ") != strings.Join(before, " ") {
				t.Errorf("generations %v after rollback, want %v (bad generation deleted)", after, before)
			}
		})
	}
}

// startTether starts tether in the background and returns a channel of
// its stderr lines and a function that waits for it.
func (s *sandbox) startTether(ctx context.Context, args ...string) (proc *os.Process, lines <-chan string, wait func() run) {
	s.t.Helper()
	cmd, out := s.command(ctx, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	ch := make(chan string, 1024)
	var all strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			select {
			case ch <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	return cmd.Process, ch, func() run {
		<-done
		cmd.Wait()
		r := run{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: all.String()}
		s.t.Logf("tether %s → exit %d\n%s%s", strings.Join(args, " "), r.code, r.stderr, r.stdout)
		if b, err := os.ReadFile(out); err == nil && len(b) > 0 {
			r.report = parseReport(s.t, b)
		}
		return r
	}
}

// waitLine waits for a stderr line containing want.
func waitLine(t *testing.T, lines <-chan string, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("tether ended before printing %q", want)
			}
			if strings.Contains(l, want) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q from tether within %s", want, timeout)
		}
	}
}

// activatingV2 puts host on v1, then starts a deploy of v2 to it with
// flags in the background and returns once tether says it is activating.
func (s *sandbox) activatingV2(ctx context.Context, host string, flags ...string) (*os.Process, func() run) {
	s.t.Helper()
	s.deployV1(ctx, host)
	s.setVariant(host, fixture.V2)
	p, lines, wait := s.startTether(ctx, append(append([]string{"deploy"}, flags...), host)...)
	waitLine(s.t, lines, "activating", time.Minute)
	return p, wait
}

// waitRunning polls until host runs variant, logging each generation
// marker it sees on the way.
func (s *sandbox) waitRunning(ctx context.Context, host, variant string, timeout time.Duration) {
	s.t.Helper()
	var last []byte
	testenv.Eventually(s.t, timeout, host+" to run "+variant, func() bool {
		b, err := s.fleet.Host(host).ReadFile(ctx, fixture.GenerationFile)
		if !bytes.Equal(b, last) {
			s.t.Logf("%s: generation marker %q", host, b)
			last = b
		}
		if err != nil {
			return false
		}
		g, err := fixture.ParseGeneration(b)
		return err == nil && g.Variant == variant
	})
}

// TestDeployerKilledAwaitingConfirmation freezes the deployer as the
// activation starts (so it cannot confirm) and then SIGKILLs it: the node
// must go back to v1 on its own.
func TestDeployerKilledAwaitingConfirmation(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	p, wait := s.activatingV2(ctx, fixture.Web, "--confirm-timeout", short)
	p.Signal(syscall.SIGSTOP)
	s.waitRunning(ctx, fixture.Web, fixture.V2, 30*time.Second)
	p.Kill()
	wait()
	// Nobody confirms: the agent must restore v1 after the confirm timeout.
	s.waitRunning(ctx, fixture.Web, fixture.V1, time.Minute)
	if err := s.sshReachable(ctx, fixture.Web); err != nil {
		t.Errorf("web unreachable after rollback: %v", err)
	}
	st := s.tether(ctx, "status", "--json", fixture.Web)
	if st.code != exitOK || !strings.Contains(st.stdout, `"rolled-back"`) {
		t.Errorf("status does not report the rolled-back deploy:\n%s", st)
	}
}

// TestDeployerKilledDuringCopy kills the deployer while the closure is on
// the wire: the node is untouched, still on v1, with no deploy started.
func TestDeployerKilledDuringCopy(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	s.deployV1(ctx, fixture.Frame1)
	history, _ := s.fleet.Host(fixture.Frame1).ReadFile(ctx, fixture.HistoryFile)

	// A slow tunnel keeps v2's copy in flight for several seconds.
	s.fleet.Relay.SetRate(64 << 10)
	defer s.fleet.Relay.SetRate(0)
	s.setVariant(fixture.Frame1, fixture.V2)
	// Uncompressed, so the slow copy really takes seconds.
	p, lines, wait := s.startTether(ctx, "deploy", "--compress", "off", fixture.Frame1)
	waitLine(t, lines, "copying", time.Minute)
	p.Kill()
	wait()
	s.fleet.Relay.SetRate(0)

	s.wantRunning(ctx, fixture.Frame1, fixture.V1)
	after, _ := s.fleet.Host(fixture.Frame1).ReadFile(ctx, fixture.HistoryFile)
	if string(after) != string(history) {
		t.Errorf("an activation ran after the deployer was killed during the copy:\nbefore %q\nafter  %q", history, after)
	}
	if got := s.generations(ctx, fixture.Frame1); len(got) != 1 {
		t.Errorf("generations %v, want only v1's", got)
	}
	// The next deploy finishes the job.
	r := s.tether(ctx, "deploy", fixture.Frame1)
	if r.code != exitOK {
		t.Fatalf("deploy after the interrupted copy: %s", r)
	}
	s.wantRunning(ctx, fixture.Frame1, fixture.V2)
}

func TestConcurrentDeploysToOneNode(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	// The first deploy holds the machine: freeze it once activation began.
	first, waitFirst := s.activatingV2(ctx, fixture.Web, "--confirm-timeout", "60s")
	first.Signal(syscall.SIGSTOP)

	second := s.tether(ctx, "deploy", fixture.Web)
	first.Signal(syscall.SIGCONT)
	if second.code == exitOK {
		t.Fatalf("second deploy succeeded while the first held the machine:\n%s", second)
	}
	res := result(t, second, fixture.Web)
	if res.Status != deploy.StatusFailed || !strings.Contains(res.Error, "in progress") {
		t.Errorf("second deploy: status %s, error %q; want failed naming the deploy in progress", res.Status, res.Error)
	}
	r1 := waitFirst()
	if r1.code != exitOK {
		t.Fatalf("first deploy: %s", r1)
	}
	if id := result(t, r1, fixture.Web).DeployID; !strings.Contains(res.Error, id) {
		t.Errorf("second deploy's error %q does not name the first deploy %s", res.Error, id)
	}
	s.wantRunning(ctx, fixture.Web, fixture.V2)
}

func TestUnreachableNode(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	s.deployV1(ctx)
	for _, h := range fixture.Hosts() {
		s.setVariant(h, fixture.V2)
	}
	if err := s.fleet.Host(fixture.RPi).StopSSHD(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("keep-going", func(t *testing.T) {
		r := s.tether(ctx, "deploy", "--keep-going")
		for _, res := range wantRun(t, r, exitFailed, deploy.StatusUnreachable, deploy.StatusDeployed) {
			s.wantRunning(ctx, res.Node, fixture.V2)
		}
	})

	// Back to v1 everywhere reachable, then the same without --keep-going.
	for _, h := range fixture.Hosts() {
		s.setVariant(h, fixture.V1)
	}
	s.deployV1(ctx, fixture.Frame1, fixture.Web)
	for _, h := range fixture.Hosts() {
		s.setVariant(h, fixture.V2)
	}
	// rpi goes last (wave 1). It is found unreachable while the others
	// are copied to, before any activation: nothing changes anywhere.
	s.writeConfig("[nodes.rpi]\nwave = 1\n")
	before := map[string][]string{}
	for _, h := range []string{fixture.Frame1, fixture.Web} {
		before[h] = s.generations(ctx, h)
	}
	t.Run("nothing-changes", func(t *testing.T) {
		r := s.tether(ctx, "deploy", "--confirm-timeout", short)
		for _, res := range wantRun(t, r, exitFailed, deploy.StatusUnreachable, deploy.StatusSkipped) {
			h := res.Node
			if !strings.Contains(res.Error, "node rpi failed") {
				t.Errorf("%s: %s (%s), want skipped because rpi failed", h, res.Status, res.Error)
			}
			s.wantRunning(ctx, h, fixture.V1)
			if after := s.generations(ctx, h); strings.Join(after, " ") != strings.Join(before[h], " ") {
				t.Errorf("%s: generations %v, want untouched %v", h, after, before[h])
			}
		}
	})

	// rpi reachable again, but its activation fails: frame1 and web (wave
	// 0) are deployed when it does, and go back.
	if err := s.fleet.Host(fixture.RPi).StartSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	s.setVariant(fixture.RPi, fixture.Fail)
	t.Run("roll-back-the-others", func(t *testing.T) {
		r := s.tether(ctx, "deploy", "--confirm-timeout", short)
		for _, res := range wantRun(t, r, exitRolledBack, deploy.StatusRolledBack, deploy.StatusRolledBack) {
			h := res.Node
			if link := fmt.Sprintf("system-%d-link", res.Generation); !slices.Contains(before[h], link) {
				t.Errorf("%s: reported generation %d, want one it had before: %v", h, res.Generation, before[h])
			}
			s.wantRunning(ctx, h, fixture.V1)
			// As if the deploy had not happened: the generation it made
			// is gone, and no new one stands in for the old.
			if after := s.generations(ctx, h); strings.Join(after, " ") != strings.Join(before[h], " ") {
				t.Errorf("%s: generations after the rollback %v, want as before %v", h, after, before[h])
			}
		}
	})
}

// wantRun checks a deploy of the Home fleet: its exit code, rpi's status
// and the status of the others, whose results it returns (frame1's, then
// web's) for the checks of each case.
func wantRun(t *testing.T, r run, code int, rpi, others deploy.Status) []deploy.Result {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d", r.code, code)
	}
	if res := result(t, r, fixture.RPi); res.Status != rpi {
		t.Errorf("rpi: %s, want %s", res.Status, rpi)
	}
	var out []deploy.Result
	for _, h := range []string{fixture.Frame1, fixture.Web} {
		res := result(t, r, h)
		if res.Status != others {
			t.Errorf("%s: %s, want %s", h, res.Status, others)
		}
		out = append(out, res)
	}
	return out
}

func TestRollbackCommandAndStatus(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	s.deployV1(ctx, fixture.RPi)
	s.setVariant(fixture.RPi, fixture.V2)
	if r := s.tether(ctx, "deploy", fixture.RPi); r.code != exitOK {
		t.Fatalf("deploy v2: %s", r)
	}
	s.wantRunning(ctx, fixture.RPi, fixture.V2)

	r := s.tether(ctx, "rollback", fixture.RPi)
	if r.code != exitOK {
		t.Fatalf("rollback: %s", r)
	}
	res := result(t, r, fixture.RPi)
	if res.TargetGeneration != 1 || res.Status != deploy.StatusDeployed {
		t.Errorf("rollback result: status %s, back to generation %d; want deployed, 1", res.Status, res.TargetGeneration)
	}
	s.wantRunning(ctx, fixture.RPi, fixture.V1)

	st := s.tether(ctx, "status", "--generations", fixture.RPi)
	if st.code != exitOK {
		t.Fatalf("status: %s", st)
	}
	v1 := s.running(ctx, fixture.RPi).Toplevel
	if !strings.Contains(st.stdout, filepath.Base(v1)) {
		t.Errorf("status does not show the running v1 system %s:\n%s", filepath.Base(v1), st.stdout)
	}
	if !strings.Contains(st.stdout, "* 3") {
		t.Errorf("status does not mark generation 3 (the rollback) as current:\n%s", st.stdout)
	}

	// A named generation: forward again to 2 (v2).
	r = s.tether(ctx, "rollback", "--to-generation", "2", fixture.RPi)
	if r.code != exitOK {
		t.Fatalf("rollback --to-generation 2: %s", r)
	}
	s.wantRunning(ctx, fixture.RPi, fixture.V2)
}

func TestWrongHostKeyRefused(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	// known_hosts that pins every address to another host's key.
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	var lines []string
	other := s.fleet.Host(fixture.Frame1).HostPublicKey
	for _, h := range s.fleet.Hosts {
		addr := h.SSHAddr
		host, port, _ := net.SplitHostPort(addr)
		if port != "22" {
			host = fmt.Sprintf("[%s]:%s", host, port)
		}
		key := other
		if h.Name == fixture.Frame1 {
			key = s.fleet.Host(fixture.Web).HostPublicKey
		}
		lines = append(lines, host+" "+strings.TrimSpace(string(marshalKey(key))))
	}
	if err := os.WriteFile(wrong, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, _ := s.command(ctx, "deploy", fixture.Web, fixture.Frame1)
	cmd.Args = replaceFlag(cmd.Args, "--known-hosts", wrong)
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() == exitOK {
		t.Fatalf("deploy with wrong host keys succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "SHA256:") {
		t.Errorf("error does not show the offered key's fingerprint:\n%s", out)
	}
	for _, h := range []string{fixture.Web, fixture.Frame1} {
		if _, err := s.fleet.Host(h).ReadFile(ctx, fixture.GenerationFile); err == nil {
			t.Errorf("%s was activated despite the wrong host key", h)
		}
		if out, err := s.fleet.Host(h).Exec(ctx, "ls", "-A", "/tmp"); err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("%s: /tmp holds %q after a refused deploy; want nothing uploaded", h, out)
		}
	}
}

// TestInterruptLetsTargetsSettle sends SIGTERM as the activation starts: the
// deployer must not confirm, must wait until the node is back on v1, and
// must say so in its report and exit code.
func TestInterruptLetsTargetsSettle(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	p, wait := s.activatingV2(ctx, fixture.Web, "--confirm-timeout", short)
	p.Signal(syscall.SIGTERM)
	r := wait()
	if r.code != exitRolledBack {
		t.Errorf("interrupted deploy: exit %d, want %d (rolled back)", r.code, exitRolledBack)
	}
	if res := result(t, r, fixture.Web); res.Status != deploy.StatusRolledBack {
		t.Errorf("status %s, want rolled-back", res.Status)
	}
	if r.report != nil && !r.report.Interrupted {
		t.Errorf("report does not say the run was interrupted")
	}
	// tether returned only once the node had settled: no waiting here.
	s.wantRunning(ctx, fixture.Web, fixture.V1)
}

// TestLostContactIsUncertain cuts the tunnel for good as frame1 starts
// activating: tether cannot learn how the deploy ended and must say the
// state is uncertain (exit 4), not guess. frame1, left alone, rolls back.
func TestLostContactIsUncertain(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	_, wait := s.activatingV2(ctx, fixture.Frame1, "--confirm-timeout", "4s", "--activation-timeout", "4s")
	s.fleet.Relay.Cut()
	r := wait()
	s.fleet.Relay.Restore()
	if r.code != 4 {
		t.Errorf("exit %d, want 4 (state uncertain)", r.code)
	}
	if res := result(t, r, fixture.Frame1); res.Status != deploy.StatusUncertain {
		t.Errorf("status %s, want uncertain", res.Status)
	}
	s.waitRunning(ctx, fixture.Frame1, fixture.V1, time.Minute)
}
