package nix

import (
	"context"
	"fmt"
)

// Substitute asks the store to fetch the given (output) paths from its
// configured binary caches. Paths that no cache has make it fail; callers
// check validity afterwards and treat the rest as still missing.
func (r *Runner) Substitute(ctx context.Context, paths []string) error {
	for _, c := range chunks(dedupe(paths)) {
		if err := r.run(ctx, r.storeArgv(append([]string{"--realise", "--ignore-unknown"}, c...)...), nil, nil); err != nil {
			return fmt.Errorf("substitute %d paths: %w", len(c), err)
		}
	}
	return nil
}
