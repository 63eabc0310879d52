package runner

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// journal is what an unfinished deploy's event log says it did. The log is
// the deploy's journal: every event but activation output is synced before
// the step it announces, so after a crash it tells how far the deploy got.
type journal struct {
	bootID   string       // from `locked`
	previous *agent.Event // nil: the runner died before it recorded anything
	seen     map[agent.EventType]int
	// profileSet is the last `profile-set`; rollingBack the last
	// `rolling-back`; rebooting every `rebooting`, in order.
	profileSet  *agent.Event
	rollingBack *agent.Event
	rebooting   []agent.Event
	failedError string // from `rollback-failed`
}

func readJournal(path string) (journal, error) {
	j := journal{seen: map[agent.EventType]int{}}
	f, err := os.Open(path)
	if err != nil {
		return j, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		e, err := agent.ParseEvent(sc.Bytes())
		if err != nil {
			// A line cut by the crash: nothing after it was written.
			break
		}
		j.seen[e.Type]++
		switch e.Type {
		case agent.EventLocked:
			if j.bootID == "" {
				j.bootID = e.BootID
			}
		case agent.EventPrevious:
			if j.previous == nil {
				j.previous = &e
			}
		case agent.EventProfileSet:
			j.profileSet = &e
		case agent.EventRollingBack:
			j.rollingBack = &e
		case agent.EventRebooting:
			j.rebooting = append(j.rebooting, e)
		case agent.EventRollbackFailed:
			j.failedError = e.Error
		}
	}
	return j, sc.Err()
}

// reconcile ends a deploy whose runner died before the end — killed, or
// the machine crashed or lost power — found by the lock.json it left. The
// caller holds the machine's lock. The deploy is brought to a consistent
// end, written to its own event log (`booted` when the machine rebooted
// since, then the steps taken, then `done`) and to last.json:
//
//   - not confirmed: rolled back. After a reboot a two-phase deploy has
//     nothing left to undo (the machine booted the previous system); a
//     single-phase one has its profile put back and the previous system
//     activated again.
//   - confirmed: the commit is finished (profile, boot default). After a
//     reboot the previous system runs until the next boot: the deploy
//     ends reboot-required.
//   - a reboot deploy (--reboot) that booted its new system waits for the
//     confirmation when wait is set (a runner started at a contact, which
//     the deployer of that deploy, reconnecting after the boot, confirms),
//     and otherwise (the runner of another deploy), or without one in
//     time, reboots back into the previous system.
//
// It returns the deploy's result, nil when there was nothing to end, and
// whether the machine is rebooting (the caller then stops where it is).
func (r *Runner) reconcile(ctx context.Context, lock *machineLock, stateDir string, stale agent.LockInfo, bootID string, wait bool) (*agent.Result, bool) {
	if !agent.ValidDeployID(stale.DeployID) {
		return nil, false
	}
	dir := agent.DeployDir(stateDir, stale.DeployID)
	path := filepath.Join(dir, eventsFile)
	j, err := readJournal(path)
	if err != nil || j.seen[agent.EventDone] > 0 {
		return nil, false
	}
	log, err := openEventLog(path, r.Clock.Now, r.Diag)
	if err != nil {
		return nil, false
	}
	defer log.close()
	log.observe = r.observe
	// While it is being ended, the lock names the deploy it ends: a
	// deployer following it sees its runner at work, and a second
	// deploy is told which one holds the machine.
	_ = lock.setHolder(agent.LockInfo{DeployID: stale.DeployID, Who: stale.Who, PID: os.Getpid(), Started: stale.Started, BootID: stale.BootID})

	res := agent.Result{DeployID: stale.DeployID, Who: stale.Who, Started: stale.Started, Reconciled: true}
	rebooted := bootID != "" && j.bootID != "" && bootID != j.bootID
	res.Rebooted = rebooted
	running, _ := readLink(r.currentSystemLink())
	if rebooted {
		log.emit(agent.Event{Type: agent.EventBooted, BootID: bootID, Running: running})
	} else {
		log.emit(agent.Event{Type: agent.EventWarning, Error: fmt.Sprintf("the runner of this deploy (pid %d) stopped before the end; ending it", stale.PID)})
	}
	end := func(st agent.Status) (*agent.Result, bool) {
		res.Status = st
		r.finish(dir, stateDir, log, &res)
		log.emit(agent.Event{Type: agent.EventDone, Status: res.Status, Reason: res.Reason, Error: res.Error, Result: &res})
		return &res, false
	}

	if last, ok := readLast(stateDir); ok && last.DeployID == stale.DeployID {
		// It had ended and written last.json; only its last lines are
		// missing.
		res = last
		return end(last.Status)
	}
	req, err := r.readStaleRequest(dir)
	if err != nil {
		res.Error = err.Error()
		return end(agent.StatusFailed)
	}
	res.Action, res.ProfilePath, res.Closure = req.Action, req.ProfilePath, req.Closure
	if j.previous == nil {
		res.Error = "the runner stopped before it changed anything"
		res.Running = running
		return end(agent.StatusFailed)
	}
	p := j.previous
	d := &deploy{r: r, log: log, dir: dir, req: req, res: &res,
		previous: p.Path, prevGen: p.Generation, lastGen: p.LastGeneration, running: p.Running, twoPhase: p.TwoPhase,
		committing: j.seen[agent.EventCommitting] > 0}
	res.Previous, res.PreviousGeneration, res.Generation = d.previous, d.prevGen, d.prevGen
	d.recoverProfileChange(j)
	if h, err := readFileLimit(filepath.Join(dir, tokenHashFile), 128); err == nil {
		if b, err := hex.DecodeString(strings.TrimSpace(string(h))); err == nil && len(b) == sha256.Size {
			copy(d.tokenHash[:], b)
		}
	}

	d.stop = ctx.Done()
	st := d.reconcile(ctx, j, rebooted, wait)
	if d.suspended {
		return &res, true
	}
	if res.Running == "" {
		res.Running, _ = readLink(r.currentSystemLink())
	}
	return end(st)
}

// readStaleRequest reads the request of a deploy being reconciled (its
// token is long gone).
func (r *Runner) readStaleRequest(dir string) (agent.Request, error) {
	req, err := readRequest(dir)
	if err != nil {
		return agent.Request{}, err
	}
	return req.WithDefaults(), nil
}

func readLast(stateDir string) (agent.Result, bool) {
	b, err := readFileLimit(filepath.Join(stateDir, lastFile), 1<<20)
	if err != nil {
		return agent.Result{}, false
	}
	var res agent.Result
	if decodeJSON(b, &res) != nil {
		return agent.Result{}, false
	}
	return res, true
}

// recoverProfileChange learns whether the dead runner moved the profile:
// from its `profile-set`, or — when it died between nix-env and writing
// that — from the profile itself, which then points at the closure from a
// generation other than the previous one.
func (d *deploy) recoverProfileChange(j journal) {
	req := d.req
	if ps := j.profileSet; ps != nil {
		d.profileChanged, d.newGen, d.newGenCreated = true, ps.Generation, ps.Created
		return
	}
	st, err := readProfile(req.ProfilePath)
	if err == nil && st.Path == req.Closure && st.Generation != d.prevGen {
		d.profileChanged, d.newGen, d.newGenCreated = true, st.Generation, st.Generation > d.lastGen
	}
}

// reconcile decides how the dead deploy ends, from how far it got.
func (d *deploy) reconcile(ctx context.Context, j journal, rebooted, wait bool) agent.Status {
	req := d.req
	why := "the agent stopped before a confirmation arrived"
	if rebooted {
		why = "rolled back by a reboot before confirmation"
	}
	switch {
	case j.seen[agent.EventRolledBack] > 0:
		return agent.StatusRolledBack
	case j.seen[agent.EventRollbackFailed] > 0:
		d.res.Error = j.failedError
		return agent.StatusRollbackFailed
	case j.seen[agent.EventCommitted] > 0:
		return d.success(ctx)
	case req.Reboot:
		return d.reconcileReboot(ctx, j, rebooted, wait)
	case req.Action == agent.ActionDryActivate:
		d.res.Error = "the agent stopped during the dry activation; it changes nothing"
		return agent.StatusFailed
	}

	if d.twoPhase {
		switch {
		case j.rollingBack != nil:
			d.res.Reason = j.rollingBack.Reason
			return d.rollbackLive(ctx, j.rollingBack.Reason, !rebooted)
		case j.seen[agent.EventConfirmed] > 0 || d.committing || !req.NeedsConfirmation() && j.seen[agent.EventActivated] > 0:
			// Confirmed: what is left of the deploy is the commit.
			prof, err := readProfile(req.ProfilePath)
			if err != nil {
				return d.fail(err)
			}
			if rebooted {
				d.bootPending = true
				d.res.Reason = "the machine rebooted after the confirmation, before the new system became its boot default; the commit was finished, so the new system runs from the next boot"
			}
			return d.commit(ctx, prof)
		}
		d.res.Reason = why
		if rebooted {
			return d.rollbackLive(ctx, "the machine rebooted before a confirmation arrived", false)
		}
		return d.rollbackLive(ctx, why, true)
	}

	// Single phase: the profile, and perhaps the boot default, moved
	// before the activation.
	switch {
	case j.seen[agent.EventConfirmed] > 0 || !req.NeedsConfirmation() && j.seen[agent.EventActivated] > 0:
		return d.success(ctx)
	case j.rollingBack != nil:
		why = j.rollingBack.Reason
	}
	d.res.Reason = why
	if !req.AutoRollback {
		return agent.StatusFailed
	}
	return d.rollback(ctx, why)
}

// Reconcile is `tether-agent reconcile`: it ends the unfinished deploy the
// machine's lock.json names, if its runner is gone, and returns its
// result (nil when there was nothing to end, or another process holds
// the lock). `follow` and `status` start it detached when they find such
// a deploy: its steps may activate a system, which must not depend on an
// SSH session. dir, when set, is the deploy the caller follows: only that
// one is ended. A reboot deploy that booted its new system waits for its
// confirmation here, whoever started this: a `status` run meanwhile must
// not take the deployer's confirmation away.
func (r *Runner) Reconcile(ctx context.Context, dir string) (*agent.Result, error) {
	r = r.withDefaults()
	stateDir := r.StateDir
	if dir != "" {
		stateDir = filepath.Dir(filepath.Clean(dir))
	}
	if err := checkPrivateDir(stateDir, r.TrustedOwners); err != nil {
		return nil, err
	}
	lock, stale, err := lockMachine(ctx, stateDir, r.Clock, r.LockRetry)
	var held *agent.LockHeldError
	if errors.As(err, &held) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if stale == nil || dir != "" && stale.DeployID != filepath.Base(dir) {
		lock.leave()
		return nil, nil
	}
	res, suspended := r.reconcile(ctx, lock, stateDir, *stale, r.bootID(), true)
	if suspended {
		lock.leave()
		return res, nil
	}
	if res == nil {
		// lock.json names a deploy with nothing to end (no log, or one
		// that ended): it is no record of anything.
		lock.release()
		return nil, nil
	}
	lock.release()
	return res, nil
}

// unfinished returns the deploy lock.json names when no runner holds the
// lock: a deploy whose runner died before the end.
func unfinished(stateDir string) *agent.LockInfo {
	holder, err := probeLock(stateDir)
	if err != nil || holder != nil {
		return nil
	}
	info, err := readLockInfo(stateDir)
	if err != nil {
		return nil
	}
	if _, err := os.Stat(filepath.Join(agent.DeployDir(stateDir, info.DeployID), eventsFile)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return info
}

// ReconcileArgv is how follow and status start `reconcile`.
func reconcileArgv(exe, stateDir, dir string) []string {
	if dir != "" {
		return []string{exe, "reconcile", "--dir", dir}
	}
	return []string{exe, "reconcile", "--state-dir", stateDir}
}

// startReconcile launches `reconcile` detached, as `start` launches a
// runner. unit names it for systemd; it is unique per caller so that a
// leftover unit of an earlier attempt never blocks it.
func (r *Runner) startReconcile(ctx context.Context, stateDir, dir, id string) error {
	if r.Executable == "" {
		return errors.New("agent executable unknown")
	}
	argv := reconcileArgv(r.Executable, stateDir, dir)
	unit := fmt.Sprintf("tether-%s-reconcile-%d", id, os.Getpid())
	logPath := filepath.Join(agent.DeployDir(stateDir, id), agentLog)
	_, err := r.launch(ctx, argv, unit, logPath, agent.DetachAuto)
	return err
}
