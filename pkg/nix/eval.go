package nix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// EvalJSON evaluates installable (e.g. "path:/fleet#deploy") with
// `nix eval --json`, through applyFn when it is not empty, and decodes the
// result into out. Map derivations to their drvPath in applyFn to learn
// what to build without building anything.
//
// An installable the flake does not have is a *MissingAttributeError, and
// nix's own message for it does not reach Log: callers often ask for an
// optional output, and the one that is not optional says so in its own
// words. Otherwise nix's messages reach Log once the evaluation ends.
func (r *Runner) EvalJSON(ctx context.Context, installable, applyFn string, out any) error {
	args := []string{"--json"}
	if applyFn != "" {
		args = append(args, "--apply", applyFn)
	}
	args = append(args, installable)
	var stdout, log bytes.Buffer
	err := r.runLog(ctx, r.nixArgv([]string{"eval"}, args...), nil, &stdout, &log)
	if m := missingAttribute(installable, err); m != nil {
		return m
	}
	if r.Log != nil {
		r.Log.Write(log.Bytes())
	}
	if err != nil {
		return fmt.Errorf("evaluate %s: %w", installable, err)
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("evaluate %s: decode result: %w", installable, err)
	}
	return nil
}

// MissingAttributeError is an evaluation of an attribute the flake does
// not provide.
type MissingAttributeError struct {
	Installable string
	// Hint is what nix adds that a caller's own message cannot know, such
	// as "Did you mean deploy-nodes?"; "" when nix adds nothing.
	Hint string
	Err  *CmdError
}

func (e *MissingAttributeError) Error() string {
	msg := "evaluate " + e.Installable + ": the flake does not provide it"
	if e.Hint != "" {
		msg += " (nix: " + e.Hint + ")"
	}
	return msg
}

func (e *MissingAttributeError) Unwrap() error { return e.Err }

// MissingAttribute and Suggestions answer callers that know only an
// interface (pkg/fleet's Evaluator).
func (e *MissingAttributeError) MissingAttribute() bool { return true }

// Suggestions returns Hint.
func (e *MissingAttributeError) Suggestions() string { return e.Hint }

// missingAttribute recognises nix's "flake '…' does not provide attribute
// …" in a failed evaluation's stderr, and keeps its suggestions ("Did you
// mean …?"): the rest only repeats what the caller asked for.
func missingAttribute(installable string, err error) *MissingAttributeError {
	var ce *CmdError
	if !errors.As(err, &ce) || ce.ExitCode <= 0 {
		return nil
	}
	lines := strings.Split(ce.StderrTail, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "error: flake ") || !strings.Contains(l, " does not provide attribute ") {
			continue
		}
		var hint []string
		for _, more := range lines[i+1:] {
			if more = strings.TrimSpace(more); strings.HasPrefix(more, "Did you mean") {
				hint = append(hint, more)
			}
		}
		return &MissingAttributeError{Installable: installable, Hint: strings.Join(hint, " "), Err: ce}
	}
	return nil
}

// BuildResult is one built installable: its derivation and outputs by name.
type BuildResult struct {
	DrvPath string            `json:"drvPath"`
	Outputs map[string]string `json:"outputs"`
}

// Build builds installables in one `nix build --json --no-link` and
// returns what was built; the order is nix's, not necessarily the
// arguments'. Nothing is rooted: use Realise for builds that must survive
// a garbage collection until the deploy ends.
func (r *Runner) Build(ctx context.Context, installables []string) ([]BuildResult, error) {
	if len(installables) == 0 {
		return nil, nil
	}
	args := append([]string{"--json", "--no-link"}, installables...)
	data, err := r.output(ctx, r.nixArgv([]string{"build"}, args...))
	if err != nil {
		return nil, fmt.Errorf("build %d installables: %w", len(installables), err)
	}
	var res []BuildResult
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("build: decode result: %w", err)
	}
	return res, nil
}
