package runner

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// File names inside the state dir S and a deploy dir D = S/<deploy-id>.
const (
	requestFile = "request.json"
	eventsFile  = "events.jsonl"
	confirmFile = "confirm"
	agentLog    = "agent.log"
	lastFile    = "last.json"
)

// Runner is the target side of a deploy. Its fields are the seams between
// the state machine and the machine it runs on; New fills them with
// the real ones, tests with fakes.
//
// Start and Status work on StateDir; Run, Follow and Confirm take a deploy
// dir D and use its parent as the state dir, so every process of one deploy
// agrees on where the lock is.
type Runner struct {
	// StateDir is S, <tempPath>/tether.
	StateDir string
	// TrustedOwners are users besides the agent's own that may own the
	// state dir (the sudo caller; see ensureStateDir).
	TrustedOwners []int
	// Exec runs nix-env, the activation and systemd-run.
	Exec Executor
	// Clock gives time, deadlines and poll intervals.
	Clock Clock
	// HasSystemd reports whether systemd manages the machine (and so
	// whether `start` detaches the runner with systemd-run).
	HasSystemd func() bool
	// Spawn starts argv detached from the caller's session (setsid and a
	// double fork), with its output appended to logPath.
	Spawn func(ctx context.Context, argv, env []string, logPath string) error
	// Root is prefixed to /run/current-system, /run/booted-system and
	// /run/systemd/system.
	Root string
	// Executable is the agent binary `start` launches the runner from.
	Executable string
	// Env is the environment of every command the agent runs (PATH finds
	// nix-env and systemd-run).
	Env []string
	// Diag receives diagnostics that are not events.
	Diag io.Writer
	// PollInterval paces watching files (confirmation, event log) where
	// no change wakes the wait sooner (see fileWatch), and the checks that
	// no file change announces (a runner that died, a lock dropped).
	PollInterval time.Duration
	// LockRetry is how long the runner retries a held lock before it
	// reports it held: `status` and `follow` probe it for an instant.
	LockRetry time.Duration
	// StartWait bounds how long `start` waits for the runner's first event.
	StartWait time.Duration
	// RebootPause is how long the runner lets followers read its
	// `rebooting` before it reboots the machine.
	RebootPause time.Duration
	// ReconcileWait bounds how long `status` waits for the unfinished
	// deploy it found to be ended before it reports anyway.
	ReconcileWait time.Duration
	// GoneGrace is how long `follow` lets a log without a `done` event sit
	// after its runner released the lock before calling the runner gone.
	GoneGrace time.Duration

	observe func(agent.Event) // tests: called after each event is written
	// watch wakes file waits on a change (watchDir); tests take it away to
	// prove that polling alone still ends every wait.
	watch func(dir string, names ...string) (*fileWatch, error)
	// trustedAbove, in tests, is a directory whose parents are not checked
	// (see checkProfileDir): a test's temporary directory is under a /tmp
	// every user can write.
	trustedAbove string
}

// New returns a Runner on the real machine.
func New(stateDir string) *Runner {
	return (&Runner{StateDir: stateDir}).withDefaults()
}

func (r *Runner) withDefaults() *Runner {
	c := *r
	if c.Exec == nil {
		c.Exec = OSExecutor{}
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Root == "" {
		c.Root = "/"
	}
	if c.HasSystemd == nil {
		root := c.Root
		c.HasSystemd = func() bool {
			fi, err := os.Stat(filepath.Join(root, "run/systemd/system"))
			return err == nil && fi.IsDir()
		}
	}
	if c.Spawn == nil {
		c.Spawn = spawnDetached
	}
	if c.Diag == nil {
		c.Diag = io.Discard
	}
	if c.watch == nil {
		c.watch = watchDir
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.LockRetry <= 0 {
		c.LockRetry = 250 * time.Millisecond
	}
	if c.StartWait <= 0 {
		c.StartWait = 10 * time.Second
	}
	if c.RebootPause <= 0 {
		c.RebootPause = time.Second
	}
	if c.ReconcileWait <= 0 {
		c.ReconcileWait = 30 * time.Second
	}
	if c.GoneGrace <= 0 {
		c.GoneGrace = 2 * time.Second
	}
	return &c
}

func (r *Runner) currentSystemLink() string { return filepath.Join(r.Root, "run/current-system") }
func (r *Runner) bootedSystemLink() string  { return filepath.Join(r.Root, "run/booted-system") }

// DeployDir returns D for a deploy id.
func (r *Runner) DeployDir(id string) string { return agent.DeployDir(r.StateDir, id) }

// Run is the detached state machine of one deploy (`tether-agent run --dir
// D`): lock, record the previous system, set the profile, activate, wait for
// the confirmation, roll back when any of it fails, and always end the event
// log with `done`. The error is only for a deploy dir it cannot even report
// into; every other outcome is in the agent.Result.
//
// Cancelling ctx (the agent got SIGTERM) counts as "no confirmation": a
// machine being shut down must not come back up on a system nobody
// confirmed. The rollback itself runs to the end regardless.
func (r *Runner) Run(ctx context.Context, dir string) (agent.Result, error) {
	r = r.withDefaults()
	dir = filepath.Clean(dir)
	stateDir := filepath.Dir(dir)
	if err := checkPrivateDir(stateDir, r.TrustedOwners); err != nil {
		return agent.Result{}, err
	}
	log, err := openEventLog(filepath.Join(dir, eventsFile), r.Clock.Now, r.Diag)
	if err != nil {
		return agent.Result{}, err
	}
	defer log.close()
	log.observe = r.observe

	res := agent.Result{DeployID: filepath.Base(dir), Started: r.Clock.Now().UTC()}
	done := func() (agent.Result, error) {
		res.Finished = r.Clock.Now().UTC()
		log.emit(agent.Event{Type: agent.EventDone, Status: res.Status, Reason: res.Reason, Error: res.Error, Result: &res})
		return res, nil
	}

	req, err := r.loadRequest(dir, log)
	if err != nil {
		res.Status, res.Error = agent.StatusFailed, err.Error()
		return done()
	}
	req = req.WithDefaults()
	res.DeployID, res.Who, res.Action = req.DeployID, req.Who, req.Action
	res.ProfilePath, res.Closure = req.ProfilePath, req.Closure

	lock, stale, err := lockMachine(ctx, stateDir, r.Clock, r.LockRetry)
	if err != nil {
		res.Status, res.Error = agent.StatusFailed, err.Error()
		var held *agent.LockHeldError
		if errors.As(err, &held) {
			// Another deploy owns the machine: touch nothing of it, not
			// even last.json.
			res.Status = agent.StatusLockHeld
			h := held.Holder
			log.emit(agent.Event{Type: agent.EventLockHeld, Holder: &h, Error: err.Error()})
		}
		return done()
	}
	bootID := r.bootID()
	log.emit(agent.Event{Type: agent.EventLocked, DeployID: req.DeployID, Who: req.Who, PID: os.Getpid(), BootID: bootID})
	if stale != nil && stale.DeployID != req.DeployID {
		// A deploy before this one did not finish (its runner died, or
		// the machine lost power): end it first, so this one starts from
		// a machine whose profile and boot default mean what they say.
		if prior, suspended := r.reconcile(ctx, lock, stateDir, *stale, bootID, false); prior != nil {
			why := prior.Reason
			if prior.Error != "" {
				why += suffix(": ", prior.Error)
				why = strings.TrimPrefix(why, ": ")
			}
			log.emit(agent.Event{Type: agent.EventReconciled, DeployID: prior.DeployID, Status: prior.Status, Reason: why, Running: prior.Running})
			if suspended {
				lock.leave()
				res.Status, res.Error = agent.StatusFailed, fmt.Sprintf("deploy %s, found unfinished, rebooted the machine to end it", prior.DeployID)
				return done()
			}
		}
	}
	if err := lock.setHolder(agent.LockInfo{DeployID: req.DeployID, Who: req.Who, PID: os.Getpid(), Started: res.Started, BootID: bootID}); err != nil {
		lock.release()
		res.Status, res.Error = agent.StatusFailed, err.Error()
		return done()
	}

	d := &deploy{r: r, log: log, dir: dir, req: req, res: &res, tokenHash: sha256.Sum256([]byte(req.Token))}
	res.Status = d.run(ctx)
	if d.suspended {
		// The machine is rebooting into the new system: lock.json and the
		// deploy dir stay as they are, for the runner of the next contact.
		lock.leave()
		return res, nil
	}
	r.finish(dir, stateDir, log, &res)
	// The lock goes before `done`: a deployer that saw `done` may start the
	// next deploy at once and must not find the machine still locked.
	lock.release()
	return done()
}

// finish does what ends every deploy while its lock is still held.
func (r *Runner) finish(dir, stateDir string, log *eventLog, res *agent.Result) {
	// Nothing that could confirm a later deploy survives this one.
	removeConfirm(dir)
	if err := stripToken(dir); err != nil {
		log.emit(agent.Event{Type: agent.EventWarning, Error: "remove token from request: " + err.Error()})
	}
	res.Finished = r.Clock.Now().UTC()
	if err := writeJSONAtomic(filepath.Join(stateDir, lastFile), res); err != nil {
		log.emit(agent.Event{Type: agent.EventWarning, Error: "write " + lastFile + ": " + err.Error()})
	}
	// Old deploys' logs go while the lock still keeps others out.
	for _, err := range pruneDeployDirs(stateDir, dir, KeepDeploys) {
		log.emit(agent.Event{Type: agent.EventWarning, Error: "remove an old deploy dir: " + err.Error()})
	}
}

// bootID is the machine's boot ID: a random UUID Linux makes at each boot.
// It is read under Root, so tests (and sandbox hosts, which mount their
// own over it) can give a machine boots of its own. "" when unreadable.
func (r *Runner) bootID() string {
	b, err := readFileLimit(filepath.Join(r.Root, "proc/sys/kernel/random/boot_id"), 128)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// loadRequest reads D/request.json and takes the token out of it on disk at
// once: from here on it lives only in this process.
func (r *Runner) loadRequest(dir string, log *eventLog) (agent.Request, error) {
	req, err := readRequest(dir)
	if err != nil {
		return agent.Request{}, err
	}
	if err := req.Validate(); err != nil {
		return agent.Request{}, err
	}
	if req.DeployID != filepath.Base(dir) {
		return agent.Request{}, &agent.Error{Code: agent.CodeInvalidRequest, Msg: fmt.Sprintf("request is for deploy %s, not %s", req.DeployID, filepath.Base(dir))}
	}
	if err := stripToken(dir); err != nil {
		log.emit(agent.Event{Type: agent.EventWarning, Error: "remove token from request: " + err.Error()})
	}
	return req, nil
}

// readRequest reads D/request.json. A request whose token was already
// taken out (by its runner, which holds it in memory) is otherwise checked
// as if it still had one.
func readRequest(dir string) (agent.Request, error) {
	b, err := readFileLimit(filepath.Join(dir, requestFile), 1<<20)
	if err != nil {
		return agent.Request{}, fmt.Errorf("read request: %w", err)
	}
	var req agent.Request
	if err := json.Unmarshal(b, &req); err != nil {
		return agent.Request{}, &agent.Error{Code: agent.CodeInvalidRequest, Msg: "read request", Err: err}
	}
	v := req
	if v.Token == "" {
		v.Token = strings.Repeat("0", 64)
	}
	if err := v.Validate(); err != nil {
		return agent.Request{}, err
	}
	return req, nil
}

func decodeJSON(b []byte, v any) error { return json.Unmarshal(b, v) }

// stripToken rewrites D/request.json without its token.
func stripToken(dir string) error {
	path := filepath.Join(dir, requestFile)
	b, err := readFileLimit(path, 1<<20)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	var req agent.Request
	if err := json.Unmarshal(b, &req); err != nil || req.Token == "" {
		return err
	}
	req.Token = ""
	return writeJSONAtomic(path, req)
}

func removeConfirm(dir string) {
	_ = os.Remove(filepath.Join(dir, confirmFile))
	_ = os.Remove(filepath.Join(dir, confirmFile+".claimed"))
}
