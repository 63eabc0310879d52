package transfer

import (
	"context"
	"errors"
	"io"

	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// RemoteStore returns a nix runner whose commands run on the far end of c.
func RemoteStore(c *remote.Client, log io.Writer) *nix.Runner {
	return &nix.Runner{Exec: remoteExec{c}, Log: log}
}

// remoteExec runs nix commands over an SSH connection.
type remoteExec struct{ c *remote.Client }

func (e remoteExec) Run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	err := e.c.Run(ctx, remote.Cmd{Argv: argv, Stdin: stdin, Stdout: stdout, Stderr: stderr})
	var ee *remote.ExitError
	if errors.As(err, &ee) {
		return exitStatus{ee}
	}
	return err
}

// exitStatus gives a remote exit the ExitCode method nix.CmdError reads.
type exitStatus struct{ *remote.ExitError }

func (e exitStatus) ExitCode() int { return e.Status }
func (e exitStatus) Unwrap() error { return e.ExitError }
