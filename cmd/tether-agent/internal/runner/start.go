package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// UnitName is the systemd unit a deploy's runner runs as.
func UnitName(deployID string) string { return "tether-" + deployID }

// Start is `tether-agent start`: it validates req, makes the deploy dir,
// launches the runner detached from the caller — so that dropping the SSH
// connection cannot touch the activation — and returns once the runner
// holds the machine's lock. When another deploy holds it, the error is a
// *agent.LockHeldError naming that deploy and who started it.
func (r *Runner) Start(ctx context.Context, req agent.Request, mode agent.Detach) (agent.StartResult, error) {
	r = r.withDefaults()
	if err := req.Validate(); err != nil {
		return agent.StartResult{}, err
	}
	if r.Executable == "" {
		return agent.StartResult{}, &agent.Error{Code: agent.CodeInternal, Msg: "start: agent executable unknown"}
	}
	if err := ensureStateDir(r.StateDir, r.TrustedOwners); err != nil {
		return agent.StartResult{}, err
	}
	if err := checkProfileDir(req.ProfilePath, r.TrustedOwners, r.trustedAbove); err != nil {
		return agent.StartResult{}, err
	}
	dir := r.DeployDir(req.DeployID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return agent.StartResult{}, &agent.Error{Code: agent.CodeExists, Msg: fmt.Sprintf("deploy %s already exists on this machine (%s); deploy ids are used once", req.DeployID, dir)}
		}
		return agent.StartResult{}, fmt.Errorf("create deploy dir: %w", err)
	}
	if err := writeJSONAtomic(filepath.Join(dir, requestFile), req); err != nil {
		return agent.StartResult{}, fmt.Errorf("write request: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, eventsFile), nil, 0o600); err != nil {
		return agent.StartResult{}, fmt.Errorf("create event log: %w", err)
	}

	argv := []string{r.Executable, "run", "--dir", dir}
	mode, err := r.launch(ctx, argv, UnitName(req.DeployID), filepath.Join(dir, agentLog), mode)
	if err != nil {
		return agent.StartResult{}, err
	}
	res := agent.StartResult{OK: true, DeployID: req.DeployID, Dir: dir, Detach: mode}
	if mode == agent.DetachSystemd {
		res.Unit = UnitName(req.DeployID)
	}

	first, err := r.firstEvent(ctx, dir)
	if err != nil {
		if res.Unit != "" && agent.Code(err) == agent.CodeStartTimeout {
			err = &agent.Error{Code: agent.CodeStartTimeout, Msg: err.Error() + "; see journalctl -u " + res.Unit}
		}
		return agent.StartResult{}, err
	}
	switch first.Type {
	case agent.EventLocked:
		return res, nil
	case agent.EventLockHeld:
		if first.Holder != nil {
			return agent.StartResult{}, &agent.LockHeldError{Holder: *first.Holder}
		}
		return agent.StartResult{}, &agent.LockHeldError{Holder: agent.LockInfo{DeployID: "unknown"}}
	}
	msg := first.Error
	if msg == "" {
		msg = fmt.Sprintf("unexpected first event %q", first.Type)
	}
	return agent.StartResult{}, &agent.Error{Code: codeOf(first), Msg: "runner: " + msg}
}

func codeOf(e agent.Event) agent.ErrorCode {
	if strings.HasPrefix(e.Error, "invalid request") {
		return agent.CodeInvalidRequest
	}
	return agent.CodeInternal
}

// launch starts argv detached from the caller's session: as the transient
// systemd unit unit where systemd runs the machine (or mode says so), else
// in a session of its own by a double fork, its output appended to
// logPath. It returns the mode it used.
func (r *Runner) launch(ctx context.Context, argv []string, unit, logPath string, mode agent.Detach) (agent.Detach, error) {
	if mode == "" || mode == agent.DetachAuto {
		mode = agent.DetachSetsid
		if r.HasSystemd() {
			mode = agent.DetachSystemd
		}
	}
	env := runnerEnv(r.Env, mode == agent.DetachSystemd)
	switch mode {
	case agent.DetachSystemd:
		return mode, r.systemdRun(ctx, unit, argv, env)
	case agent.DetachSetsid:
		if err := r.Spawn(ctx, argv, env, logPath); err != nil {
			return mode, fmt.Errorf("start runner: %w", err)
		}
		return mode, nil
	}
	return mode, &agent.Error{Code: agent.CodeUsage, Msg: fmt.Sprintf("detach mode %q: want auto, systemd or setsid", mode)}
}

// systemdRun starts the runner as a transient service: it is then systemd's
// child, outside the SSH session's scope, and its output is in the journal.
// The unit inherits nothing from this shell, so the environment is passed
// explicitly (PATH must find nix-env).
func (r *Runner) systemdRun(ctx context.Context, unit string, argv, env []string) error {
	cmd := []string{"systemd-run", "--unit=" + unit, "--collect", "--service-type=exec", "--quiet", "--no-ask-password"}
	for _, kv := range env {
		cmd = append(cmd, "--setenv="+kv)
	}
	cmd = append(cmd, "--")
	cmd = append(cmd, argv...)
	var out tailBuffer
	out.max = 2048
	code, err := r.Exec.Run(ctx, Command{Argv: cmd, Env: r.Env, Dir: "/", Stdout: &out, Stderr: &out})
	if err != nil || code != 0 {
		return fmt.Errorf("start runner: %w", &CmdError{Argv: cmd[:2], ExitCode: code, Stderr: out.String(), Err: err})
	}
	return nil
}

// firstEvent waits for the runner's first event.
func (r *Runner) firstEvent(ctx context.Context, dir string) (agent.Event, error) {
	path := filepath.Join(dir, eventsFile)
	w := r.watchFiles(dir, eventsFile)
	defer w.close()
	deadline := r.Clock.After(r.StartWait)
	for {
		if f, err := os.Open(path); err == nil {
			line, rerr := bufio.NewReader(f).ReadBytes('\n')
			f.Close()
			if rerr == nil {
				return agent.ParseEvent(line)
			}
		}
		select {
		case <-ctx.Done():
			return agent.Event{}, ctx.Err()
		case <-deadline:
			msg := fmt.Sprintf("the runner wrote no event within %s", r.StartWait)
			if tail := fileTail(filepath.Join(dir, agentLog), 1024); tail != "" {
				msg += "; its log ends: " + tail
			}
			return agent.Event{}, &agent.Error{Code: agent.CodeStartTimeout, Msg: msg}
		case <-w.changed():
		case <-r.Clock.After(r.PollInterval):
		}
	}
}

func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(-n, 2)
	}
	var t tailBuffer
	t.max = int(n)
	buf := make([]byte, n)
	k, _ := f.Read(buf)
	_, _ = t.Write(buf[:k])
	return t.String()
}

// runnerEnv is the environment the detached runner gets: what finds nix and
// configures it, not the whole SSH session. The NixOS system and default
// profile bin directories are added to PATH, since a non-interactive SSH
// session on some machines has a bare one. A transient unit's environment
// is readable by every user (systemctl show), so NIX_CONFIG, which may hold
// access tokens, is not passed there; nix-env --set does not need it.
func runnerEnv(env []string, public bool) []string {
	var out []string
	path := ""
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch {
		case k == "PATH":
			path = v
		case k == "HOME", k == "USER", k == "LOGNAME", k == "SUDO_UID", k == "LANG", k == "TZ", k == "TZDIR",
			k == "LOCALE_ARCHIVE", strings.HasPrefix(k, "LC_"), strings.HasPrefix(k, "NIX_"):
			if public && k == "NIX_CONFIG" {
				continue
			}
			out = append(out, kv)
		}
	}
	for _, dir := range []string{"/run/current-system/sw/bin", "/nix/var/nix/profiles/default/bin", "/usr/bin", "/bin"} {
		if !containsPath(path, dir) {
			if path != "" {
				path += ":"
			}
			path += dir
		}
	}
	return append(out, "PATH="+path)
}

func containsPath(list, dir string) bool {
	for _, d := range filepath.SplitList(list) {
		if d == dir {
			return true
		}
	}
	return false
}

// ForkFlag is the argument `start` adds for the middle process of the
// double fork.
const ForkFlag = "--fork"

// spawnDetached starts argv in a new session with no terminal, its standard
// input /dev/null and its output appended to logPath. It runs the agent
// with ForkFlag, which starts the real runner and exits at once (Fork); the
// runner is then an orphan that is not a session leader, so no terminal
// hangup of the SSH session can ever reach it.
func spawnDetached(ctx context.Context, argv, env []string, logPath string) error {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], ForkFlag)...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("detach %s: %w", argv[0], err)
	}
	return nil
}

// Fork is the middle of the double fork: it starts argv (the runner) with
// this process's standard files and environment, and returns without
// waiting. The caller exits right after.
func Fork(argv, env []string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("fork runner: %w", err)
	}
	return cmd.Process.Release()
}
