package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// inProcess launches the runner as a goroutine of the test, as `start`
// would launch `tether-agent run --dir D`.
type inProcess struct {
	h    *harness
	wg   sync.WaitGroup
	argv []string
	env  []string
}

func (p *inProcess) launch(argv []string) {
	p.argv = argv
	dir := argv[len(argv)-1]
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if _, err := p.h.r.Run(context.Background(), dir); err != nil {
			p.h.t.Errorf("Run: %v", err)
		}
	}()
}

func TestStartFollowConfirm(t *testing.T) {
	for _, mode := range []agent.Detach{agent.DetachSetsid, agent.DetachSystemd} {
		t.Run(string(mode), func(t *testing.T) {
			h := newHarness(t)
			_, newSys := h.oldAndNew(fakeSystem{output: []string{"starting sshd.service"}}, false)
			p := &inProcess{h: h}
			h.r.Env = []string{"PATH=/fake/bin", "NIX_CONFIG=access-tokens = x", "NIX_CONF_DIR=/etc/x", "SSH_CONNECTION=1 2 3 4"}
			h.r.Spawn = func(ctx context.Context, argv, env []string, logPath string) error {
				p.env = env
				p.launch(argv)
				return nil
			}
			h.r.HasSystemd = func() bool { return mode == agent.DetachSystemd }
			h.m.systemdRun = func(argv []string) (int, error) {
				i := indexOf(argv, "--")
				for _, a := range argv[:i] {
					if v, ok := strings.CutPrefix(a, "--setenv="); ok {
						p.env = append(p.env, v)
					}
				}
				p.launch(argv[i+1:])
				p.argv = argv
				return 0, nil
			}

			res, err := h.r.Start(context.Background(), h.request("d-1", newSys), agent.DetachAuto)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			dir := h.r.DeployDir("d-1")
			if !res.OK || res.Dir != dir || res.Detach != mode {
				t.Errorf("start result = %+v", res)
			}
			switch mode {
			case agent.DetachSystemd:
				want := []string{"systemd-run", "--unit=tether-d-1", "--collect", "--service-type=exec"}
				if !reflect.DeepEqual(p.argv[:4], want) || res.Unit != "tether-d-1" {
					t.Errorf("systemd-run argv = %q, unit %q", p.argv, res.Unit)
				}
				if got := p.argv[indexOf(p.argv, "--")+1:]; !reflect.DeepEqual(got, []string{"/fake/tether-agent", "run", "--dir", dir}) {
					t.Errorf("unit command = %q", got)
				}
				if envValue(p.env, "NIX_CONFIG") != "" {
					t.Error("NIX_CONFIG (may hold tokens) passed to a unit anyone can inspect")
				}
			case agent.DetachSetsid:
				if !reflect.DeepEqual(p.argv, []string{"/fake/tether-agent", "run", "--dir", dir}) {
					t.Errorf("spawned argv = %q", p.argv)
				}
				if envValue(p.env, "NIX_CONFIG") == "" {
					t.Error("NIX_CONFIG not passed to the runner")
				}
			}
			if envValue(p.env, "NIX_CONF_DIR") != "/etc/x" || envValue(p.env, "SSH_CONNECTION") != "" ||
				!strings.HasPrefix(envValue(p.env, "PATH"), "/fake/bin:") {
				t.Errorf("runner env = %q", p.env)
			}

			// The deployer: confirm over one "connection" while following
			// over another that drops after the first event and resumes.
			confirmed := make(chan error, 1)
			go func() { confirmed <- h.r.Confirm(context.Background(), dir, testToken) }()

			var first bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			fw := &cutWriter{w: &first, after: 1, cancel: cancel}
			err = h.r.Follow(ctx, dir, 0, fw)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("first follow: %v", err)
			}
			er := agent.NewEventReader(bytes.NewReader(first.Bytes()), 0)
			e, err := er.Next()
			if err != nil || e.Type != agent.EventLocked {
				t.Fatalf("first event %+v %v", e, err)
			}
			var rest bytes.Buffer
			if err := h.r.Follow(context.Background(), dir, er.Offset(), &rest); err != nil {
				t.Fatalf("resumed follow: %v", err)
			}
			if err := <-confirmed; err != nil {
				t.Errorf("Confirm: %v", err)
			}
			p.wg.Wait()

			all, _ := os.ReadFile(filepath.Join(dir, eventsFile))
			if got := string(first.Bytes()[:er.Offset()]) + rest.String(); got != string(all) {
				t.Errorf("follow, drop, resume did not give the log exactly once:\n got %q\nwant %q", got, all)
			}
			var evs []agent.Event
			er = agent.NewEventReader(bytes.NewReader(all), 0)
			for {
				e, err := er.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				evs = append(evs, e)
			}
			if !reflect.DeepEqual(agent.Steps(evs), evSuccess) {
				t.Errorf("events = %q", agent.Steps(evs))
			}
			if er.Offset() != int64(len(all)) {
				t.Errorf("reader offset %d, log size %d", er.Offset(), len(all))
			}
			h.checkNoSecretsLeft(dir)
		})
	}
}

// cutWriter plays a connection that drops after some lines.
type cutWriter struct {
	w      io.Writer
	after  int
	n      int
	cancel func()
}

func (c *cutWriter) Write(p []byte) (int, error) {
	c.n++
	if c.n > c.after {
		c.cancel()
		return 0, context.Canceled
	}
	return c.w.Write(p)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestStartLockHeld(t *testing.T) {
	h := newHarness(t)
	newSys := h.system("new", fakeSystem{}, false)
	p := &inProcess{h: h}
	h.r.Spawn = func(ctx context.Context, argv, env []string, logPath string) error { p.launch(argv); return nil }
	if err := ensureStateDir(h.r.StateDir, nil); err != nil {
		t.Fatal(err)
	}
	lock, err := acquireLock(context.Background(), h.r.StateDir, agent.LockInfo{DeployID: "first", Who: "alice@laptop"}, h.clock, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.release()

	_, err = h.r.Start(context.Background(), h.request("second", newSys), agent.DetachAuto)
	p.wg.Wait()
	var held *agent.LockHeldError
	if !errors.As(err, &held) || held.Holder.DeployID != "first" {
		t.Fatalf("Start = %v, want a lock-held error naming deploy first", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "deploy first from alice@laptop in progress") {
		t.Errorf("error %q does not name the holder", msg)
	}
	if agent.ExitCode(err) != agent.ExitLockHeld {
		t.Errorf("exit code %d", agent.ExitCode(err))
	}
	// The deployer reads it back from the JSON reply.
	b, _ := json.Marshal(agent.Reply(err))
	var back *agent.LockHeldError
	if got := agent.DecodeReply(b); !errors.As(got, &back) || back.Holder.Who != "alice@laptop" {
		t.Errorf("decoded reply %s = %v", b, got)
	}
}

func TestStartRefuses(t *testing.T) {
	h := newHarness(t)
	newSys := h.system("new", fakeSystem{}, false)
	h.r.Spawn = func(ctx context.Context, argv, env []string, logPath string) error {
		t.Errorf("spawned %q", argv)
		return nil
	}
	bad := h.request("Bad_ID", newSys)
	if _, err := h.r.Start(context.Background(), bad, agent.DetachAuto); agent.Code(err) != agent.CodeInvalidRequest {
		t.Errorf("bad id: %v", err)
	}
	if _, err := os.Stat(h.r.DeployDir("Bad_ID")); err == nil {
		t.Error("deploy dir made for an invalid request")
	}

	if err := os.MkdirAll(h.r.DeployDir("used"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := h.r.Start(context.Background(), h.request("used", newSys), agent.DetachAuto); agent.Code(err) != agent.CodeExists {
		t.Errorf("reused id: %v", err)
	}

	if err := os.Chmod(h.r.StateDir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := h.r.Start(context.Background(), h.request("open", newSys), agent.DetachAuto); agent.Code(err) != agent.CodeUnsafeStateDir {
		t.Errorf("world-writable state dir: %v", err)
	}
}

func TestStartRunnerNeverStarts(t *testing.T) {
	h := newHarness(t)
	newSys := h.system("new", fakeSystem{}, false)
	h.r.Clock = realClock{}
	h.r.StartWait = 50 * time.Millisecond
	h.r.Spawn = func(ctx context.Context, argv, env []string, logPath string) error {
		return os.WriteFile(logPath, []byte("exec format error\n"), 0o600)
	}
	_, err := h.r.Start(context.Background(), h.request("d", newSys), agent.DetachSetsid)
	if agent.Code(err) != agent.CodeStartTimeout || !strings.Contains(err.Error(), "exec format error") {
		t.Errorf("Start = %v, want a start timeout quoting the runner's log", err)
	}
}

func TestFollowOffsets(t *testing.T) {
	h := newHarness(t)
	newSys := h.system("new", fakeSystem{}, false)
	req := h.request("d", newSys)
	req.MagicRollback = false
	dir := h.prepare(req)
	if _, err := h.r.Run(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	all, _ := os.ReadFile(filepath.Join(dir, eventsFile))
	lines := strings.SplitAfter(string(all), "\n")

	var got bytes.Buffer
	if err := h.r.Follow(context.Background(), dir, int64(len(lines[0])+len(lines[1])), &got); err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(lines[2:], ""); got.String() != want {
		t.Errorf("follow from line 3:\n got %q\nwant %q", got.String(), want)
	}
	got.Reset()
	if err := h.r.Follow(context.Background(), dir, int64(len(all)), &got); err != nil || got.Len() != 0 {
		t.Errorf("follow from the end of a finished log: %v %q", err, got.String())
	}
	for _, off := range []int64{3, int64(len(all)) + 1, -1} {
		if err := h.r.Follow(context.Background(), dir, off, io.Discard); agent.Code(err) != agent.CodeUsage {
			t.Errorf("offset %d: %v, want a usage error", off, err)
		}
	}
	if err := h.r.Follow(context.Background(), h.r.DeployDir("nope"), 0, io.Discard); agent.Code(err) != agent.CodeNotFound {
		t.Errorf("unknown deploy: %v", err)
	}
}

func TestFollowRunnerGone(t *testing.T) {
	h := newHarness(t)
	h.r.Clock = realClock{}
	newSys := h.system("new", fakeSystem{}, false)
	dir := h.prepare(h.request("d", newSys))
	// A runner that took the lock, wrote two events and died.
	line := `{"seq":1,"time":"2026-01-01T00:00:00Z","type":"locked","deployId":"d"}` + "\n" +
		`{"seq":2,"time":"2026-01-01T00:00:00Z","type":"previous"}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, eventsFile), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := h.r.Follow(context.Background(), dir, 0, &out)
	if agent.Code(err) != agent.CodeRunnerGone || agent.ExitCode(err) != agent.ExitGone {
		t.Fatalf("Follow = %v, want runner-gone", err)
	}
	if out.String() != line {
		t.Errorf("follow printed %q before giving up", out.String())
	}
}

func TestConfirmAfterTheEnd(t *testing.T) {
	h := newHarness(t)
	_, newSys := h.oldAndNew(fakeSystem{}, false)

	// Rolled back for want of a confirmation: confirming now is too late.
	dir := h.prepare(h.request("late", newSys))
	h.r.observe = func(e agent.Event) {
		if e.Type == agent.EventAwaitingConfirmation {
			h.clock.Advance(agent.DefaultConfirmTimeout)
		}
	}
	if _, err := h.r.Run(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	err := h.r.Confirm(context.Background(), dir, testToken)
	var ae *agent.Error
	if !errors.As(err, &ae) || ae.Code != agent.CodeTooLate || !strings.Contains(ae.Msg, "no confirmation within") || agent.ExitCode(err) != agent.ExitConfirm {
		t.Errorf("late Confirm = %#v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, confirmFile)); err == nil {
		t.Error("a late confirmation left a confirm file")
	}

	// Confirmed already: confirming again (after a dropped connection) is fine.
	dir = h.prepare(h.request("twice", newSys))
	h.r.observe = func(e agent.Event) {
		if e.Type == agent.EventAwaitingConfirmation {
			writeConfirmFile(t, dir, testToken)
		}
	}
	if res, err := h.r.Run(context.Background(), dir); err != nil || res.Status != agent.StatusDeployed {
		t.Fatalf("Run = %v %v", res.Status, err)
	}
	if err := h.r.Confirm(context.Background(), dir, testToken); err != nil {
		t.Errorf("second Confirm = %v", err)
	}
	if err := h.r.Confirm(context.Background(), dir, "not hex"); agent.Code(err) != agent.CodeUsage {
		t.Errorf("malformed token: %v", err)
	}
}

func TestConfirmRejected(t *testing.T) {
	h := newHarness(t)
	_, newSys := h.oldAndNew(fakeSystem{}, false)
	dir := h.prepare(h.request("d", newSys))
	wrong := strings.Repeat("cd", 32)
	h.r.observe = func(e agent.Event) {
		if e.Type == agent.EventConfirmRejected {
			h.clock.Advance(agent.DefaultConfirmTimeout)
		}
	}
	got := make(chan error, 1)
	go func() { got <- h.r.Confirm(context.Background(), dir, wrong) }()
	res, err := h.r.Run(context.Background(), dir)
	if err != nil || res.Status != agent.StatusRolledBack {
		t.Fatalf("Run = %v %v", res.Status, err)
	}
	if err := <-got; agent.Code(err) != agent.CodeRejected {
		t.Errorf("Confirm with a wrong token = %v, want rejected", err)
	}
}

// TestStartRefusesProfileOthersControl is alice's attack on a root agent
// asked to activate a profile in a directory she owns (her per-user
// profile directory): she could re-point its links between nix-env --set
// and the activation. The agent refuses before touching anything; the
// same profile is fine for an agent running as alice.
func TestStartRefusesProfileOthersControl(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	const alice = 4242
	h := newHarness(t)
	newSys := h.system("new", fakeSystem{}, false)
	userDir := filepath.Join(filepath.Dir(h.profile), "per-user", "alice")
	if err := os.MkdirAll(userDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(userDir, alice, alice); err != nil {
		t.Fatal(err)
	}
	req := h.request("d", newSys)
	req.ProfilePath = filepath.Join(userDir, "home")
	h.r.Spawn = func(context.Context, []string, []string, string) error {
		t.Error("the runner was started for a profile alice controls")
		return errors.New("not started in this test")
	}
	_, err := h.r.Start(context.Background(), req, agent.DetachSetsid)
	if agent.Code(err) != agent.CodeUnsafeProfile || !strings.Contains(err.Error(), userDir+" belongs to uid 4242") {
		t.Fatalf("Start = %v, want %s refused as belonging to uid 4242", err, userDir)
	}
	if _, err := os.Lstat(req.ProfilePath); err == nil {
		t.Error("the profile was created")
	}
	if _, err := os.Stat(h.r.DeployDir("d")); err == nil {
		t.Error("a deploy dir was made for the refused profile")
	}

	// A symbolic link in place of a directory is refused too, whoever owns it.
	link := filepath.Join(filepath.Dir(h.profile), "linked")
	if err := os.Symlink(userDir, link); err != nil {
		t.Fatal(err)
	}
	req = h.request("e", newSys)
	req.ProfilePath = filepath.Join(link, "home")
	if _, err := h.r.Start(context.Background(), req, agent.DetachSetsid); agent.Code(err) != agent.CodeUnsafeProfile || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Errorf("Start through a symbolic link = %v, want it refused", err)
	}
}
