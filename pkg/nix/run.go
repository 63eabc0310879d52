package nix

import (
	"context"
	"io"
)

// Run runs an arbitrary command through the Runner's Executor, with the same
// error reporting as the nix commands: for a command that stands in for one
// of them on the far side (the agent's import, which decompresses first).
func (r *Runner) Run(ctx context.Context, argv []string, stdin io.Reader, stdout io.Writer) error {
	return r.run(ctx, argv, stdin, stdout)
}
