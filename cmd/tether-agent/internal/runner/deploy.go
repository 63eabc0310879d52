package runner

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// deploy is one run of the state machine, after the lock is taken.
type deploy struct {
	r   *Runner
	log *eventLog
	dir string
	req agent.Request // with defaults
	res *agent.Result

	// previous is what a rollback restores: the profile's store path before
	// the deploy, or for test the running system. "" when there is none.
	previous string
	prevGen  int
	// newGen is the generation the profile points at after --set;
	// newGenCreated says whether this deploy made it (nix-env reuses the
	// last generation when it holds the closure already).
	newGen         int
	newGenCreated  bool
	profileChanged bool
	// reverted says the profile went back to Request.Revert.To, so the
	// generation it left is deleted once the deploy has succeeded.
	reverted bool
}

func (d *deploy) run(ctx context.Context) agent.Status {
	req := d.req
	running, _ := readLink(d.r.currentSystemLink())
	prof, err := readProfile(req.ProfilePath)
	if err != nil {
		return d.fail(err)
	}
	if req.Action == agent.ActionTest {
		// test leaves the profile alone; what it changes, and what a
		// rollback must bring back, is the running system.
		d.previous = running
	} else {
		d.previous, d.prevGen = prof.Path, prof.Generation
	}
	d.res.Previous, d.res.Generation = d.previous, prof.Generation
	d.res.PreviousGeneration = d.prevGen
	d.log.emit(agent.Event{Type: agent.EventPrevious, Path: d.previous, Generation: d.prevGen, Running: running})

	if _, err := os.Stat(req.Closure); err != nil {
		return d.fail(fmt.Errorf("closure %s is not on this machine: %w", req.Closure, err))
	}
	act, err := activationFor(req.Closure, req.Action, req.ProfilePath)
	if err != nil {
		return d.fail(err)
	}

	if req.Action.ChangesProfile() {
		// nix-env reuses the last generation when it already holds the
		// closure; only a generation this deploy made may be deleted.
		existed := map[int]bool{}
		if gens, err := listGenerations(req.ProfilePath); err == nil {
			for _, g := range gens {
				existed[g.Number] = true
			}
		}
		gen, err := d.pointProfile(ctx, prof)
		if err != nil {
			// A failed --set normally leaves the profile as it was; if it
			// moved it after all, that is undone like a failed activation.
			st, rerr := readProfile(req.ProfilePath)
			if rerr != nil || st.Path != req.Closure || st.Generation == d.prevGen {
				return d.fail(err)
			}
			gen = st.Generation
		}
		d.newGen, d.newGenCreated, d.profileChanged = gen, !existed[gen], true
		d.res.Generation = gen
		if err != nil {
			d.res.Reason = err.Error()
			if req.AutoRollback {
				return d.rollback(ctx, err.Error())
			}
			return d.fail(err)
		}
		d.log.emit(agent.Event{Type: agent.EventProfileSet, Generation: gen, Path: req.Closure})
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
	d.log.emit(agent.Event{Type: agent.EventActivated, ExitCode: out.exitCode(), UnitsFailed: d.res.UnitsFailed, RebootRequired: d.res.RebootRequired})

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
	if d.res.RebootRequired {
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
