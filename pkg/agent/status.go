package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
)

// StatusReport is what `tether-agent status` prints.
type StatusReport struct {
	CurrentSystem     string       `json:"currentSystem,omitempty"`
	BootedSystem      string       `json:"bootedSystem,omitempty"`
	Profile           string       `json:"profile"`
	ProfilePath       string       `json:"profilePath,omitempty"` // the store path the profile points at
	CurrentGeneration int          `json:"currentGeneration,omitempty"`
	Generations       []Generation `json:"generations"`
	InProgress        *LockInfo    `json:"inProgress,omitempty"`
	Last              *Result      `json:"last,omitempty"`
	// Warning says why InProgress and Last could not be read.
	Warning string `json:"warning,omitempty"`
}

// Status is `tether-agent status`: the running and booted systems, the
// profile's generations (read from its links, no nix needed), the deploy in
// progress if any, and the last deploy's result.
func (r *Runner) Status(ctx context.Context, profile string) (StatusReport, error) {
	r = r.withDefaults()
	if profile == "" {
		profile = DefaultProfile
	}
	if err := checkAbs("profile", profile); err != nil {
		return StatusReport{}, &Error{Code: CodeUsage, Msg: err.Error()}
	}
	rep := StatusReport{Profile: profile, Generations: []Generation{}}
	rep.CurrentSystem, _ = readLink(r.currentSystemLink())
	rep.BootedSystem, _ = readLink(r.bootedSystemLink())
	st, err := readProfile(profile)
	if err != nil {
		return StatusReport{}, err
	}
	rep.ProfilePath, rep.CurrentGeneration = st.Path, st.Generation
	gens, err := listGenerations(profile)
	if err != nil {
		return StatusReport{}, err
	}
	if gens != nil {
		rep.Generations = gens
	}
	if err := checkPrivateDir(r.StateDir, r.TrustedOwners); err != nil {
		if Code(err) != CodeNotFound { // not found: no deploy ever ran here
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
		var last Result
		if json.Unmarshal(b, &last) == nil {
			rep.Last = &last
		}
	}
	return rep, nil
}

// Generation is `tether-agent generation`: generation n of profile, for a
// rollback to a named generation.
func (r *Runner) Generation(profile string, n int) (Generation, error) {
	if profile == "" {
		profile = DefaultProfile
	}
	if err := checkAbs("profile", profile); err != nil {
		return Generation{}, &Error{Code: CodeUsage, Msg: err.Error()}
	}
	gens, err := listGenerations(profile)
	if err != nil {
		return Generation{}, err
	}
	for _, g := range gens {
		if g.Number == n {
			return g, nil
		}
	}
	return Generation{}, &Error{Code: CodeNotFound, Msg: fmt.Sprintf("profile %s has no generation %d", profile, n)}
}
