package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// Status is `tether-agent status`: the running and booted systems, the
// profile's generations (read from its links, no nix needed), the deploy in
// progress if any, and the last deploy's result.
func (r *Runner) Status(ctx context.Context, profile string) (agent.StatusReport, error) {
	r = r.withDefaults()
	if profile == "" {
		profile = agent.DefaultProfile
	}
	if err := agent.CheckAbsPath("profile", profile); err != nil {
		return agent.StatusReport{}, &agent.Error{Code: agent.CodeUsage, Msg: err.Error()}
	}
	rep := agent.StatusReport{Profile: profile, Generations: []agent.Generation{}}
	stateErr := checkPrivateDir(r.StateDir, r.TrustedOwners)
	if stateErr == nil {
		// A deploy left unfinished (its runner died, or the machine lost
		// power) is ended first, so what is reported is what holds.
		if err := r.reconcileUnfinished(ctx); err != nil {
			rep.Warning = err.Error()
		}
	}
	rep.BootID = r.bootID()
	rep.CurrentSystem, _ = readLink(r.currentSystemLink())
	rep.BootedSystem, _ = readLink(r.bootedSystemLink())
	st, err := readProfile(profile)
	if err != nil {
		return agent.StatusReport{}, err
	}
	rep.ProfilePath, rep.CurrentGeneration = st.Path, st.Generation
	gens, err := listGenerations(profile)
	if err != nil {
		return agent.StatusReport{}, err
	}
	if gens != nil {
		rep.Generations = gens
	}
	if err := stateErr; err != nil {
		if agent.Code(err) != agent.CodeNotFound { // not found: no deploy ever ran here
			rep.Warning = err.Error()
		}
		return rep, nil
	}
	if rep.InProgress, err = probeLock(r.StateDir); err != nil {
		rep.Warning = "deploy lock: " + err.Error()
	}
	b, err := readFileLimit(filepath.Join(r.StateDir, lastFile), 1<<20)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		rep.Warning = err.Error()
	default:
		var last agent.Result
		if json.Unmarshal(b, &last) == nil {
			rep.Last = &last
		}
	}
	return rep, nil
}

// reconcileUnfinished starts a runner for the unfinished deploy of the
// state dir, if there is one, and waits up to ReconcileWait for it to end.
func (r *Runner) reconcileUnfinished(ctx context.Context) error {
	st := unfinished(r.StateDir)
	if st == nil {
		return nil
	}
	// The runner ends by removing lock.json, dropping its flock and
	// closing the lock file; watched from before it starts, however fast
	// it is, the wait below wakes for it.
	w := r.watchFiles(r.StateDir, lockFile, lockInfoFile)
	defer w.close()
	if err := r.startReconcile(ctx, r.StateDir, "", st.DeployID); err != nil {
		return fmt.Errorf("deploy %s did not finish, and ending it failed: %w", st.DeployID, err)
	}
	deadline := r.Clock.After(r.ReconcileWait)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("deploy %s did not finish; a runner is ending it (see %s)", st.DeployID, r.DeployDir(st.DeployID))
		case <-w.changed():
		case <-r.Clock.After(r.PollInterval):
		}
		if holder, err := probeLock(r.StateDir); err == nil && holder == nil {
			if unfinished(r.StateDir) == nil {
				return nil
			}
		}
	}
}

// Generation is `tether-agent generation`: generation n of profile, for a
// rollback to a named generation.
func (r *Runner) Generation(profile string, n int) (agent.Generation, error) {
	if profile == "" {
		profile = agent.DefaultProfile
	}
	if err := agent.CheckAbsPath("profile", profile); err != nil {
		return agent.Generation{}, &agent.Error{Code: agent.CodeUsage, Msg: err.Error()}
	}
	gens, err := listGenerations(profile)
	if err != nil {
		return agent.Generation{}, err
	}
	for _, g := range gens {
		if g.Number == n {
			return g, nil
		}
	}
	return agent.Generation{}, &agent.Error{Code: agent.CodeNotFound, Msg: fmt.Sprintf("profile %s has no generation %d", profile, n)}
}
