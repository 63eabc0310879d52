package nix

import (
	"context"
	"encoding/json"
	"fmt"
)

// EvalJSON evaluates installable (e.g. "path:/fleet#deploy") with
// `nix eval --json`, through applyFn when it is not empty, and decodes the
// result into out. Map derivations to their drvPath in applyFn to learn
// what to build without building anything.
func (r *Runner) EvalJSON(ctx context.Context, installable, applyFn string, out any) error {
	args := []string{"--json"}
	if applyFn != "" {
		args = append(args, "--apply", applyFn)
	}
	args = append(args, installable)
	data, err := r.output(ctx, r.nixArgv([]string{"eval"}, args...))
	if err != nil {
		return fmt.Errorf("evaluate %s: %w", installable, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("evaluate %s: decode result: %w", installable, err)
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
