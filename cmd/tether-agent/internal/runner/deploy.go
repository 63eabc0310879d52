package runner

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// deploy is one run of the state machine, after the lock is taken.
type deploy struct {
	r   *Runner
	log *eventLog
	dir string
	req agent.Request // with defaults
	res *agent.Result
	// tokenHash is the SHA-256 of the confirmation token: what a
	// confirmation is checked against. Only the hash is ever kept on disk
	// (for a deploy that waits across a reboot).
	tokenHash [sha256.Size]byte

	// previous is the profile's store path before the deploy (for test,
	// the running system); prevGen its generation, lastGen the newest
	// generation the profile had. "" and 0 when there was none.
	previous string
	prevGen  int
	lastGen  int
	// running is what /run/current-system pointed at before the deploy:
	// what a live rollback brings back.
	running string
	// twoPhase: the closure is a NixOS system, activated live first and
	// made the boot default only once confirmed (see runTwoPhase).
	twoPhase bool
	// committing: phase 2 began, so the profile and the boot default may
	// have moved; a rollback from here puts them back too.
	committing bool
	// newGen is the generation the profile points at after --set;
	// newGenCreated says whether this deploy made it (nix-env reuses the
	// last generation when it holds the closure already).
	newGen         int
	newGenCreated  bool
	profileChanged bool
	// reverted says the profile went back to Request.Revert.To, so the
	// generation it left is deleted once the deploy has succeeded.
	reverted bool
	// bootPending: the commit was finished after a reboot had brought the
	// previous system back, so the new one runs only from the next boot.
	bootPending bool
	// stop is closed when the agent is being stopped (its context's
	// Done, kept apart from the contexts that must run to their end).
	stop <-chan struct{}
	// suspended: the runner stops here on purpose (the machine reboots
	// into the new system) and the deploy goes on at the next contact.
	suspended bool
}

func (d *deploy) stc(system string) string {
	return filepath.Join(system, "bin", "switch-to-configuration")
}

func (d *deploy) run(ctx context.Context) agent.Status {
	req := d.req
	d.stop = ctx.Done()
	d.running, _ = readLink(d.r.currentSystemLink())
	prof, err := readProfile(req.ProfilePath)
	if err != nil {
		return d.fail(err)
	}
	if gens, err := listGenerations(req.ProfilePath); err == nil && len(gens) > 0 {
		d.lastGen = gens[len(gens)-1].Number
	}
	if req.Action == agent.ActionTest {
		// test leaves the profile alone; what it changes, and what a
		// rollback must bring back, is the running system.
		d.previous = d.running
	} else {
		d.previous, d.prevGen = prof.Path, prof.Generation
	}
	d.twoPhase = req.Action == agent.ActionSwitch && isExecutable(d.stc(req.Closure))
	d.res.Previous, d.res.Generation = d.previous, prof.Generation
	d.res.PreviousGeneration = d.prevGen
	d.log.emit(agent.Event{Type: agent.EventPrevious, Path: d.previous, Generation: d.prevGen, LastGeneration: d.lastGen,
		Running: d.running, TwoPhase: d.twoPhase})

	if _, err := os.Stat(req.Closure); err != nil {
		return d.fail(fmt.Errorf("closure %s is not on this machine: %w", req.Closure, err))
	}
	if req.Reboot {
		return d.runReboot(ctx, prof)
	}
	if d.twoPhase {
		return d.runTwoPhase(ctx, prof)
	}
	act, err := activationFor(req.Closure, req.Action, req.ProfilePath)
	if err != nil {
		return d.fail(err)
	}

	if req.Action.ChangesProfile() {
		if err := d.pointAndRecord(ctx, prof); err != nil {
			if !d.profileChanged {
				return d.fail(err)
			}
			// A failed --set normally leaves the profile as it was; it
			// moved after all, which is undone like a failed activation.
			d.res.Reason = err.Error()
			if req.AutoRollback {
				return d.rollback(ctx, err.Error())
			}
			return d.fail(err)
		}
	}

	out := d.activate(ctx, act)
	d.res.ExitCode = out.exitCode()
	ok, reason := d.judge(out)
	if !ok {
		d.res.Reason = reason
		d.log.emit(agent.Event{Type: agent.EventActivationFailed, ExitCode: out.exitCode(), Reason: reason})
		if req.Action == agent.ActionDryActivate || !req.AutoRollback {
			return agent.StatusFailed
		}
		return d.rollback(ctx, reason)
	}
	if req.Action != agent.ActionDryActivate {
		d.checkBootChanges(req.Closure)
	}
	d.emitActivated(out)

	switch {
	case req.Action == agent.ActionDryActivate:
		return agent.StatusDryActivated
	case !req.NeedsConfirmation():
		return d.success(ctx)
	}
	confirmed, reason := d.awaitConfirmation(ctx)
	if confirmed {
		return d.success(ctx)
	}
	d.res.Reason = reason
	return d.rollback(ctx, reason)
}

func (d *deploy) emitActivated(out activationOutcome) {
	d.log.emit(agent.Event{Type: agent.EventActivated, ExitCode: out.exitCode(), UnitsFailed: d.res.UnitsFailed,
		RebootRequired: d.res.RebootRequired, RebootFor: d.res.RebootFor})
}

// runTwoPhase deploys a NixOS system so that nothing about it persists
// until it is confirmed. Phase 1 activates it live only
// (switch-to-configuration test): the profile and the boot default stay on
// the previous system, so a power cut, a kernel panic or a hang that needs
// a power cycle from here on boots the previous system, and rolling back
// is a live activation of the previous system with nothing on disk to
// undo. Phase 2, once confirmed, commits: the profile is set, then
// switch-to-configuration boot makes the new system the boot default.
func (d *deploy) runTwoPhase(ctx context.Context, prof profileState) agent.Status {
	req := d.req
	out := d.activate(ctx, activation{argv: []string{d.stc(req.Closure), string(agent.ActionTest)}, dir: "/"})
	d.res.ExitCode = out.exitCode()
	ok, reason := d.judge(out)
	if !ok {
		d.res.Reason = reason
		d.log.emit(agent.Event{Type: agent.EventActivationFailed, ExitCode: out.exitCode(), Reason: reason})
		if !req.AutoRollback {
			d.res.Reason += fmt.Sprintf("; left running without a rollback (autoRollback is off) and not committed: the machine boots %s next", orNothing(d.previous))
			return agent.StatusFailed
		}
		return d.rollbackLive(ctx, reason, true)
	}
	d.checkBootChanges(req.Closure)
	d.emitActivated(out)
	if req.NeedsConfirmation() {
		confirmed, reason := d.awaitConfirmation(ctx)
		if !confirmed {
			d.res.Reason = reason
			return d.rollbackLive(ctx, reason, true)
		}
	}
	return d.commit(ctx, prof)
}

// commit is phase 2: the confirmed system becomes the profile's current
// generation and the boot default. It runs to its end even when the agent
// is being stopped: the system was confirmed, and a half-made boot default
// is worse than either. A failure puts the profile and the boot default
// back and the previous system live again.
func (d *deploy) commit(ctx context.Context, prof profileState) agent.Status {
	ctx = context.WithoutCancel(ctx)
	req := d.req
	d.committing = true
	d.log.emit(agent.Event{Type: agent.EventCommitting, Path: req.Closure})
	if err := d.pointAndRecord(ctx, prof); err != nil {
		reason := "commit: " + err.Error()
		d.res.Reason = reason
		return d.rollbackLive(ctx, reason, true)
	}
	out := d.activate(ctx, activation{argv: []string{d.stc(req.Closure), string(agent.ActionBoot)}, dir: "/"})
	if out.code != 0 {
		reason := "commit: making it the boot default failed: " + describeOutcome(out, req.ActivationTimeout.D())
		d.res.Reason = reason
		d.log.emit(agent.Event{Type: agent.EventActivationFailed, ExitCode: out.exitCode(), Reason: reason})
		return d.rollbackLive(ctx, reason, true)
	}
	d.log.emit(agent.Event{Type: agent.EventCommitted, Generation: d.newGen, Path: req.Closure})
	return d.success(ctx)
}

// describeOutcome says how a command that had to succeed did not.
func describeOutcome(o activationOutcome, timeout time.Duration) string {
	switch {
	case o.timedOut:
		return fmt.Sprintf("it did not finish within %s", timeout)
	case o.err != nil:
		return o.err.Error()
	}
	return fmt.Sprintf("exit status %d", o.code)
}

func orNothing(system string) string {
	if system == "" {
		return "whatever it booted before (no previous system was recorded)"
	}
	return system
}

// pointAndRecord points the profile at the closure and records what that
// changed, so a rollback can undo exactly that.
func (d *deploy) pointAndRecord(ctx context.Context, prof profileState) error {
	req := d.req
	gen, err := d.pointProfile(ctx, prof)
	if err != nil {
		st, rerr := readProfile(req.ProfilePath)
		if rerr != nil || st.Path != req.Closure || st.Generation == d.prevGen {
			return err
		}
		gen = st.Generation
	}
	// nix-env reuses the last generation when it already holds the
	// closure; only a generation this deploy made may be deleted.
	d.newGen, d.newGenCreated, d.profileChanged = gen, gen > d.lastGen, true
	d.res.Generation = gen
	if err != nil {
		return err
	}
	d.log.emit(agent.Event{Type: agent.EventProfileSet, Generation: gen, Path: req.Closure, Created: d.newGenCreated})
	return nil
}

// pointProfile points the profile at the closure: back at an existing
// generation when the deploy reverts one, else at a new generation.
func (d *deploy) pointProfile(ctx context.Context, prof profileState) (int, error) {
	req := d.req
	if rv := req.Revert; rv != nil {
		gen, err := d.switchBack(ctx, prof, rv)
		if err == nil {
			d.reverted = true
			return gen, nil
		}
		d.log.emit(agent.Event{Type: agent.EventWarning, Error: fmt.Sprintf("cannot go back to generation %d, making a new one: %v", rv.To, err)})
	}
	return d.r.setProfile(ctx, req.ProfilePath, req.Closure)
}

// switchBack switches the profile to generation rv.To, if the profile is
// still where the deploy being reverted left it.
func (d *deploy) switchBack(ctx context.Context, prof profileState, rv *agent.Revert) (int, error) {
	p := d.req.ProfilePath
	if prof.Generation != rv.Generation || prof.Path != rv.Path {
		return 0, fmt.Errorf("the profile is at generation %d (%s), not %d (%s)", prof.Generation, prof.Path, rv.Generation, rv.Path)
	}
	if path, err := readLink(generationLink(p, rv.To)); err != nil || path != d.req.Closure {
		return 0, fmt.Errorf("generation %d does not hold %s", rv.To, d.req.Closure)
	}
	if err := d.r.nixEnv(ctx, p, "--switch-generation", fmt.Sprint(rv.To)); err != nil {
		return 0, err
	}
	st, err := readProfile(p)
	if err != nil {
		return 0, err
	}
	if st.Path != d.req.Closure {
		return st.Generation, fmt.Errorf("%s points at %q after the switch", p, st.Path)
	}
	return st.Generation, nil
}

// dropReverted deletes the generation a successful revert left, if it still
// holds what the reverted deploy put there.
func (d *deploy) dropReverted(ctx context.Context) {
	rv := d.req.Revert
	if !d.reverted || rv == nil {
		return
	}
	if path, err := readLink(generationLink(d.req.ProfilePath, rv.Generation)); err != nil || path != rv.Path {
		return
	}
	if st, err := readProfile(d.req.ProfilePath); err != nil || st.Generation == rv.Generation {
		return
	}
	if err := d.r.nixEnv(ctx, d.req.ProfilePath, "--delete-generations", fmt.Sprint(rv.Generation)); err != nil {
		d.log.emit(agent.Event{Type: agent.EventWarning, Error: fmt.Sprintf("delete reverted generation %d: %v", rv.Generation, err)})
	}
}

func (d *deploy) success(ctx context.Context) agent.Status {
	d.dropReverted(context.WithoutCancel(ctx))
	d.res.GenerationCreated = d.newGenCreated
	d.res.Running, _ = readLink(d.r.currentSystemLink())
	if d.res.RebootRequired || d.bootPending {
		return agent.StatusRebootRequired
	}
	return agent.StatusDeployed
}

// fail ends a deploy that went wrong before anything was activated.
func (d *deploy) fail(err error) agent.Status {
	d.res.Error = err.Error()
	return agent.StatusFailed
}

// judge maps the activation's outcome to success, or to the reason for a
// rollback. 4 is switch-to-configuration's "some units failed"; 100 is
// "reboot required": the switch happened, and the reboot is the user's call.
func (d *deploy) judge(o activationOutcome) (bool, string) {
	switch {
	case o.timedOut:
		return false, fmt.Sprintf("activation did not finish within %s; its processes were killed", d.req.ActivationTimeout.D())
	case o.stopped:
		return false, "the agent was stopped during the activation"
	case o.err != nil:
		return false, "cannot run the activation: " + o.err.Error()
	}
	switch o.code {
	case 0:
		return true, ""
	case 4:
		d.res.UnitsFailed = true
		if d.req.AllowFailedUnits {
			return true, ""
		}
		return false, "some units failed to start (exit status 4)"
	case 100:
		d.res.RebootRequired = true
		return true, ""
	}
	return false, fmt.Sprintf("activation failed with exit status %d", o.code)
}

// rollback brings back the recorded previous system: the profile goes back
// to the recorded path (not `nix-env --rollback`, which picks "the
// generation before" and so fails or picks wrong when generations were
// deleted or made by something else), the failed generation is deleted, and
// the previous system is activated again. It runs to the end even when the
// agent is being stopped.
func (d *deploy) rollback(ctx context.Context, reason string) agent.Status {
	ctx = context.WithoutCancel(ctx)
	req := d.req
	d.log.emit(agent.Event{Type: agent.EventRollingBack, Reason: reason, To: d.previous})
	failed := func(err error) agent.Status {
		d.res.Error = err.Error()
		d.log.emit(agent.Event{Type: agent.EventRollbackFailed, Error: err.Error()})
		return agent.StatusRollbackFailed
	}

	if d.previous == "" {
		msg := "no previous system to roll back to"
		if req.Action == agent.ActionTest {
			msg += fmt.Sprintf(" (%s did not exist before the deploy)", d.r.currentSystemLink())
		} else {
			msg += fmt.Sprintf(" (profile %s had no generation before the deploy)", req.ProfilePath)
		}
		if d.profileChanged && d.newGenCreated {
			if err := d.removeNewGeneration(); err != nil {
				msg += fmt.Sprintf("; removing the new generation %d failed: %v", d.newGen, err)
			} else {
				msg += fmt.Sprintf("; removed the new generation %d", d.newGen)
				d.res.Generation = 0
			}
		}
		return failed(errors.New(msg))
	}

	if d.profileChanged {
		gen, err := d.restoreProfile(ctx)
		if err != nil {
			return failed(fmt.Errorf("restore profile %s to %s: %w", req.ProfilePath, d.previous, err))
		}
		d.res.Generation = gen
		if d.newGenCreated && gen != d.newGen {
			if err := d.r.nixEnv(ctx, req.ProfilePath, "--delete-generations", fmt.Sprint(d.newGen)); err != nil {
				d.log.emit(agent.Event{Type: agent.EventWarning, Error: fmt.Sprintf("delete failed generation %d: %v", d.newGen, err)})
			}
		}
	}

	act, err := activationFor(d.previous, req.Action, req.ProfilePath)
	if err != nil {
		return failed(fmt.Errorf("re-activate %s: %w", d.previous, err))
	}
	out := d.activate(ctx, act)
	switch {
	case out.timedOut:
		return failed(fmt.Errorf("re-activating %s did not finish within %s", d.previous, req.ActivationTimeout.D()))
	case out.err != nil:
		return failed(fmt.Errorf("re-activate %s: %w", d.previous, out.err))
	case out.code != 0 && out.code != 4 && out.code != 100:
		return failed(fmt.Errorf("re-activating %s failed with exit status %d", d.previous, out.code))
	}
	d.log.emit(agent.Event{Type: agent.EventRolledBack, To: d.previous, Generation: d.res.Generation, ExitCode: out.exitCode(),
		UnitsFailed: out.code == 4, RebootRequired: out.code == 100})
	return agent.StatusRolledBack
}

// restoreProfile points the profile back at the previous path. When the
// previous generation is still there and still that path, switching to it
// keeps the generation list clean; otherwise --set makes a new generation
// of the previous path.
func (d *deploy) restoreProfile(ctx context.Context) (int, error) {
	p := d.req.ProfilePath
	if d.prevGen > 0 {
		if path, err := readLink(generationLink(p, d.prevGen)); err == nil && path == d.previous {
			err := d.r.nixEnv(ctx, p, "--switch-generation", fmt.Sprint(d.prevGen))
			if err == nil {
				if st, err := readProfile(p); err == nil && st.Path == d.previous {
					return st.Generation, nil
				}
			} else {
				d.log.emit(agent.Event{Type: agent.EventWarning, Error: err.Error()})
			}
		}
	}
	return d.r.setProfile(ctx, p, d.previous)
}

// removeNewGeneration undoes --set on a profile that did not exist before.
// nix-env will not delete a profile's current generation, so this removes
// the two links itself, and only if they are still the ones this deploy
// made.
func (d *deploy) removeNewGeneration() error {
	p := d.req.ProfilePath
	st, err := readProfile(p)
	if err != nil {
		return err
	}
	if st.Generation == d.newGen && st.Path == d.req.Closure {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	link := generationLink(p, d.newGen)
	if path, err := readLink(link); err == nil && path == d.req.Closure {
		return os.Remove(link)
	}
	return nil
}

// rollbackLive is the way back of a two-phase deploy: the system that ran
// before is activated live again (switch-to-configuration test). Before
// phase 2 nothing persistent changed, so that is all; once phase 2 began,
// the profile goes back first (the generation this deploy made is
// deleted) and the previous system's switch-to-configuration boot makes
// it the boot default again. live is false when a reboot already brought
// the previous system back: then only the records are put straight. It
// runs to its end even when the agent is being stopped.
func (d *deploy) rollbackLive(ctx context.Context, reason string, live bool) agent.Status {
	ctx = context.WithoutCancel(ctx)
	req := d.req
	to := d.running
	if to == "" {
		to = d.previous
	}
	d.log.emit(agent.Event{Type: agent.EventRollingBack, Reason: reason, To: to})
	failed := func(err error) agent.Status {
		d.res.Error = err.Error()
		d.res.Running, _ = readLink(d.r.currentSystemLink())
		d.log.emit(agent.Event{Type: agent.EventRollbackFailed, Error: err.Error()})
		return agent.StatusRollbackFailed
	}

	if d.committing {
		if err := d.restoreRecords(ctx); err != nil {
			return failed(err)
		}
		if d.previous != "" {
			if !isExecutable(d.stc(d.previous)) {
				return failed(fmt.Errorf("restore the boot default: %s has no bin/switch-to-configuration", d.previous))
			}
			out := d.activate(ctx, activation{argv: []string{d.stc(d.previous), string(agent.ActionBoot)}, dir: "/"})
			if out.code != 0 {
				return failed(fmt.Errorf("restore the boot default to %s: %s", d.previous, describeOutcome(out, req.ActivationTimeout.D())))
			}
		}
	}

	var code *int
	switch {
	case !live:
	case to == "":
		return failed(fmt.Errorf("no previous system to go back to (%s did not exist before the deploy); nothing was made persistent, so the machine boots what it booted before", d.r.currentSystemLink()))
	case !isExecutable(d.stc(to)):
		return failed(fmt.Errorf("re-activate %s: it has no bin/switch-to-configuration", to))
	default:
		out := d.activate(ctx, activation{argv: []string{d.stc(to), string(agent.ActionTest)}, dir: "/"})
		switch {
		case out.timedOut:
			return failed(fmt.Errorf("re-activating %s did not finish within %s", to, req.ActivationTimeout.D()))
		case out.err != nil:
			return failed(fmt.Errorf("re-activate %s: %w", to, out.err))
		case out.code != 0 && out.code != 4 && out.code != 100:
			return failed(fmt.Errorf("re-activating %s failed with exit status %d", to, out.code))
		}
		code = out.exitCode()
	}
	if st, err := readProfile(req.ProfilePath); err == nil {
		d.res.Generation = st.Generation
	}
	d.res.Running, _ = readLink(d.r.currentSystemLink())
	d.log.emit(agent.Event{Type: agent.EventRolledBack, To: to, Generation: d.res.Generation, ExitCode: code,
		UnitsFailed: code != nil && *code == 4, RebootRequired: code != nil && *code == 100, Running: d.res.Running})
	return agent.StatusRolledBack
}

// restoreRecords puts the profile back where it was before the deploy and
// deletes the generation the deploy made, if it made one.
func (d *deploy) restoreRecords(ctx context.Context) error {
	req := d.req
	st, err := readProfile(req.ProfilePath)
	if err != nil {
		return fmt.Errorf("restore profile %s: %w", req.ProfilePath, err)
	}
	if st.Path != d.previous || st.Generation != d.prevGen {
		if d.previous == "" {
			if err := d.removeNewGeneration(); err != nil {
				return fmt.Errorf("remove the new generation %d: %w", d.newGen, err)
			}
			return nil
		}
		if _, err := d.restoreProfile(ctx); err != nil {
			return fmt.Errorf("restore profile %s to %s: %w", req.ProfilePath, d.previous, err)
		}
	}
	if d.newGenCreated && d.newGen != d.prevGen {
		if path, err := readLink(generationLink(req.ProfilePath, d.newGen)); err == nil && path == req.Closure {
			if err := d.r.nixEnv(ctx, req.ProfilePath, "--delete-generations", fmt.Sprint(d.newGen)); err != nil {
				d.log.emit(agent.Event{Type: agent.EventWarning, Error: fmt.Sprintf("delete generation %d: %v", d.newGen, err)})
			}
		}
	}
	return nil
}

// checkBootChanges notes which of agent.BootLinks differ between system and the
// booted system: the deploy then needs a reboot to take full effect.
func (d *deploy) checkBootChanges(system string) {
	if changed := bootChanges(d.r.bootedSystemLink(), system); len(changed) > 0 {
		d.res.RebootRequired = true
		d.res.RebootFor = changed
	}
}

// bootChanges lists the agent.BootLinks whose targets differ between the two
// systems. Nothing is known, so nothing listed, when there is no booted
// system.
func bootChanges(booted, system string) []string {
	if _, err := os.Stat(booted); err != nil {
		return nil
	}
	var out []string
	for _, name := range agent.BootLinks {
		// Resolved to the end: a profile that wraps a system links its
		// links.
		a, aerr := filepath.EvalSymlinks(filepath.Join(booted, name))
		b, berr := filepath.EvalSymlinks(filepath.Join(system, name))
		if (aerr == nil) != (berr == nil) || a != b {
			out = append(out, name)
		}
	}
	return out
}
