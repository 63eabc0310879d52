package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/agent"
)

// e2e is the real agent binary against real nix: a throwaway profile in a
// temp dir and tiny "systems" added to the store, whose
// switch-to-configuration records each activation in a history file.
type e2e struct {
	t       *testing.T
	agent   string
	env     []string
	state   string
	profile string
	history string
}

func setupE2E(t *testing.T) *e2e {
	testenv.NeedRoot(t, "nix-store --add, nix-env on a profile")
	testenv.NeedCommands(t, "nix-env")
	nixEnv, _ := exec.LookPath("nix-env")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	// Not under /tmp: the agent refuses, as root, a profile in a directory
	// every user can write.
	tmp, err := os.MkdirTemp("/var/lib", "tether-agent-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	x := &e2e{t: t, agent: filepath.Join(tmp, "tether-agent"), state: filepath.Join(tmp, "state"),
		profile: filepath.Join(tmp, "profiles", "system"), history: filepath.Join(tmp, "history")}
	build := exec.Command(goBin, "build", "-trimpath", "-o", x.agent, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	x.env = []string{
		"PATH=" + filepath.Dir(nixEnv) + ":/usr/bin:/bin",
		"HOME=" + tmp,
		"NIX_CONFIG=experimental-features = nix-command flakes\nsubstituters =",
	}
	if d := os.Getenv("NIX_CONF_DIR"); d != "" {
		x.env = append(x.env, "NIX_CONF_DIR="+d)
	}
	return x
}

// system adds a directory with bin/switch-to-configuration to the store.
func (x *e2e) system(name string, exit int) string {
	x.t.Helper()
	dir := filepath.Join(x.t.TempDir(), "tether-e2e-"+name)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		x.t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\necho \"%s $1\" >> '%s'\necho \"%s: $1 done\"\nexit %d\n", name, x.history, name, exit)
	if err := os.WriteFile(filepath.Join(dir, "bin", "switch-to-configuration"), []byte(script), 0o755); err != nil {
		x.t.Fatal(err)
	}
	out, err := x.cmd(context.Background(), "", "nix-store", "--add", dir).Output()
	if err != nil {
		x.t.Fatalf("nix-store --add: %v %s", err, stderrOf(err))
	}
	return strings.TrimSpace(string(out))
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

func (x *e2e) cmd(ctx context.Context, stdin string, argv ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = x.env
	c.Stdin = strings.NewReader(stdin)
	return c
}

// agentJSON runs a subcommand and decodes its JSON output into v.
func (x *e2e) agentJSON(stdin string, v any, args ...string) (int, string) {
	x.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := x.cmd(ctx, stdin, append([]string{x.agent}, args...)...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		x.t.Fatalf("%s: %v", args[0], err)
	}
	if v != nil {
		if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
			x.t.Fatalf("%s printed %q (stderr %q): %v", args[0], stdout.String(), stderr.String(), err)
		}
	}
	return code, stdout.String() + stderr.String()
}

func (x *e2e) start(id, closure string, confirmTimeout time.Duration) (agent.Request, string) {
	x.t.Helper()
	token, err := agent.NewToken()
	if err != nil {
		x.t.Fatal(err)
	}
	req := agent.Request{DeployID: id, Who: "e2e@" + x.t.Name(), ProfilePath: x.profile, Closure: closure,
		MagicRollback: true, AutoRollback: true, ConfirmTimeout: agent.Duration(confirmTimeout),
		ActivationTimeout: agent.Duration(time.Minute), Token: token}
	b, _ := json.Marshal(req)
	var res agent.StartResult
	if code, out := x.agentJSON(string(b), &res, "start", "--state-dir", x.state, "--detach", "setsid"); code != 0 || !res.OK {
		x.t.Fatalf("start %s: exit %d: %s", id, code, out)
	}
	if res.Detach != agent.DetachSetsid || res.Dir != filepath.Join(x.state, id) {
		x.t.Errorf("start result %+v", res)
	}
	return req, res.Dir
}

// follow streams the events of a deploy until `done`, calling on for each.
// It drops its "connection" after dropAfter events (if > 0) and resumes from
// the offset of the last whole line, as a deployer does.
func (x *e2e) follow(dir string, dropAfter int, on func(agent.Event)) []agent.Event {
	x.t.Helper()
	var evs []agent.Event
	offset := int64(0)
	for attempt := 0; attempt < 5; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		c := x.cmd(ctx, "", x.agent, "follow", "--dir", dir, "--offset", fmt.Sprint(offset))
		stdout, err := c.StdoutPipe()
		if err != nil {
			x.t.Fatal(err)
		}
		var stderr bytes.Buffer
		c.Stderr = &stderr
		if err := c.Start(); err != nil {
			x.t.Fatal(err)
		}
		er := agent.NewEventReader(stdout, offset)
		dropped := false
		for {
			e, err := er.Next()
			if err != nil {
				break
			}
			evs = append(evs, e)
			if on != nil {
				on(e)
			}
			if dropAfter > 0 && len(evs) == dropAfter {
				dropped = true
				_ = c.Process.Kill()
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		werr := c.Wait()
		cancel()
		offset = er.Offset()
		if !dropped {
			if werr != nil {
				x.t.Fatalf("follow: %v: %s", werr, stderr.String())
			}
			return evs
		}
	}
	x.t.Fatal("follow never finished")
	return nil
}

func (x *e2e) historyLines() []string {
	b, _ := os.ReadFile(x.history)
	return strings.Fields(strings.ReplaceAll(string(b), "\n", " | "))
}

func TestAgentEndToEnd(t *testing.T) {
	x := setupE2E(t)
	sysA := x.system("a", 0)
	sysB := x.system("b", 0)

	// 1. A fresh profile: deploy A and confirm it from a separate process
	//    (the deployer's fresh connection) as soon as the agent waits.
	reqA, dirA := x.start("deploy-a", sysA, time.Minute)
	confirmed := make(chan string, 1)
	evs := x.follow(dirA, 0, func(e agent.Event) {
		if e.Type == agent.EventAwaitingConfirmation {
			go func() {
				var ok map[string]bool
				code, out := x.agentJSON(reqA.Token, &ok, "confirm", "--dir", dirA)
				if code != 0 || !ok["ok"] {
					confirmed <- fmt.Sprintf("confirm exit %d: %s", code, out)
					return
				}
				confirmed <- ""
			}()
		}
	})
	if msg := <-confirmed; msg != "" {
		t.Fatal(msg)
	}
	// Live first, committed once confirmed.
	want := []string{"locked", "previous", "activating", "activated", "awaiting-confirmation", "confirmed",
		"committing", "profile-set", "activating", "committed", "done"}
	if got := agent.Steps(evs); !reflect.DeepEqual(got, want) {
		t.Fatalf("deploy A events %q, want %q", got, want)
	}
	if done := evs[len(evs)-1]; done.Status != agent.StatusDeployed {
		t.Fatalf("deploy A: %+v", done)
	}

	// 2. Deploy B, hold the machine, and try a second deploy meanwhile.
	//    Nobody confirms B: the agent must restore A and delete B's
	//    generation. The follower's connection drops midway and resumes.
	_, dirB := x.start("deploy-b", sysB, 3*time.Second)
	x.checkDetached(dirB)
	var reply agent.ErrorReply
	b, _ := json.Marshal(agent.Request{DeployID: "deploy-c", Who: "bob", ProfilePath: x.profile, Closure: sysA})
	if code, out := x.agentJSON(string(b), &reply, "start", "--state-dir", x.state, "--detach", "setsid"); code != agent.ExitLockHeld ||
		reply.Code != agent.CodeLockHeld || !strings.Contains(reply.Error, "deploy deploy-b from e2e@") {
		t.Errorf("second deploy during deploy-b: exit %d, %s", code, out)
	}
	evs = x.follow(dirB, 3, nil)
	want = []string{"locked", "previous", "activating", "activated", "awaiting-confirmation",
		"rolling-back", "activating", "rolled-back", "done"}
	if got := agent.Steps(evs); !reflect.DeepEqual(got, want) {
		t.Fatalf("deploy B events %q, want %q", got, want)
	}
	for i, e := range evs {
		if e.Seq != i+1 {
			t.Fatalf("after resuming, event %d has seq %d: lost or repeated events", i+1, e.Seq)
		}
	}
	done := evs[len(evs)-1]
	if done.Status != agent.StatusRolledBack || !strings.Contains(done.Reason, "no confirmation within 3s") {
		t.Errorf("deploy B done: %+v", done)
	}
	if got, want := strings.Join(x.historyLines(), " "), "a test | a boot | b test | a test |"; got != want {
		t.Errorf("activation history %q, want %q", got, want)
	}

	var st agent.StatusReport
	if code, out := x.agentJSON("", &st, "status", "--state-dir", x.state, "--profile", x.profile); code != 0 {
		t.Fatalf("status: %s", out)
	}
	if st.ProfilePath != sysA || st.CurrentGeneration != 1 || len(st.Generations) != 1 || st.Generations[0].Path != sysA {
		t.Errorf("after rollback: profile at %s (generation %d), generations %+v; want only generation 1 = A", st.ProfilePath, st.CurrentGeneration, st.Generations)
	}
	if st.InProgress != nil || st.Last == nil || st.Last.DeployID != "deploy-b" || st.Last.Status != agent.StatusRolledBack {
		t.Errorf("status in progress %+v, last %+v", st.InProgress, st.Last)
	}
	if _, err := os.Lstat(x.profile + "-2-link"); err == nil {
		t.Error("the failed generation's link is still there")
	}
	var g agent.Generation
	if code, out := x.agentJSON("", &g, "generation", "--profile", x.profile, "--number", "1"); code != 0 || g.Path != sysA {
		t.Errorf("generation 1: %s", out)
	}

	// 3. Deploy B again and kill its runner while it waits: the runner
	//    is gone, lock.json still names the deploy. The next follow
	//    starts a runner of its own (reconcile, detached) that ends the
	//    deploy in the same log: B was never confirmed, so A is
	//    activated again.
	_, dirB2 := x.start("deploy-b2", sysB, time.Hour)
	var runnerPID int
	x.follow(dirB2, 0, func(e agent.Event) {
		switch e.Type {
		case agent.EventLocked:
			runnerPID = e.PID
		case agent.EventAwaitingConfirmation:
			if err := syscall.Kill(runnerPID, syscall.SIGKILL); err != nil {
				t.Fatalf("kill runner %d: %v", runnerPID, err)
			}
		}
	})
	evs = readLog(t, dirB2)
	want = []string{"locked", "previous", "activating", "activated", "awaiting-confirmation",
		"warning", "rolling-back", "activating", "rolled-back", "done"}
	if got := agent.Steps(evs); !reflect.DeepEqual(got, want) {
		t.Fatalf("deploy B2 events %q, want %q", got, want)
	}
	if done := evs[len(evs)-1]; done.Status != agent.StatusRolledBack || done.Result == nil || !done.Result.Reconciled ||
		!strings.Contains(done.Reason, "stopped before a confirmation") {
		t.Errorf("deploy B2 done: %+v", done)
	}
	if got, want := strings.Join(x.historyLines(), " "), "a test | a boot | b test | a test | b test | a test |"; got != want {
		t.Errorf("activation history %q, want %q", got, want)
	}

	// 4. Nothing left that could confirm a later deploy.
	for _, dir := range []string{dirA, dirB, dirB2} {
		if _, err := os.Lstat(filepath.Join(dir, "confirm")); err == nil {
			t.Errorf("%s: confirm file left", dir)
		}
		req, _ := os.ReadFile(filepath.Join(dir, "request.json"))
		if bytes.Contains(req, []byte(`"token"`)) {
			t.Errorf("%s: token left in request.json", dir)
		}
	}
	if _, err := os.Lstat(filepath.Join(x.state, "lock.json")); err == nil {
		t.Error("lock.json left after the deploys")
	}
}

func readLog(t *testing.T, dir string) []agent.Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var evs []agent.Event
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		e, err := agent.ParseEvent(line)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	return evs
}

// checkDetached asserts the runner outlives any SSH session that started
// it: it runs in a session of its own (no hangup of ours reaches it) and is
// not that session's leader (it can never get a controlling terminal).
func (x *e2e) checkDetached(dir string) {
	x.t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		x.t.Fatal(err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	locked, err := agent.ParseEvent(line)
	if err != nil || locked.Type != agent.EventLocked || locked.PID == 0 {
		x.t.Fatalf("first event %q: %v", line, err)
	}
	sid := func(pid int) int {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			x.t.Fatalf("runner %d: %v", pid, err)
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		var n int
		fmt.Sscan(f[3], &n) // state ppid pgrp session
		return n
	}
	runner := sid(locked.PID)
	if runner == sid(os.Getpid()) || runner == locked.PID {
		x.t.Errorf("runner %d: session %d (ours %d): not detached by setsid and a double fork", locked.PID, runner, sid(os.Getpid()))
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"bogus"}, {"follow"}, {"generation", "--profile", "/p"}, {"status", "--nope"}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
		var reply agent.ErrorReply
		if err := json.Unmarshal(stdout.Bytes(), &reply); err != nil || code != agent.ExitUsage || reply.Code != agent.CodeUsage {
			t.Errorf("%q: exit %d, stdout %q", args, code, stdout.String())
		}
	}
}
