package transfer

import (
	"context"
	"errors"
	"io"
	"slices"

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
	maxOut, maxErr := bounds(argv)
	err := e.c.Run(ctx, remote.Cmd{Argv: argv, Stdin: stdin, Stdout: stdout, Stderr: stderr, MaxStdout: maxOut, MaxStderr: maxErr})
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

// MaxBuildLog bounds the log a build host may send for one build. The log
// is shown line by line and never held whole; the bound is there so a
// build host cannot keep a deploy busy with an endless one.
const MaxBuildLog = 256 << 20

// bounds says how much a node may send on each stream of a nix command
// (see remote.Cmd): the answer to a query fits the transport's default; an
// export is the closure itself, read by the importer as it comes; a
// build's log may be long. The commands are nix.Runner's own argv, where
// no store path can be mistaken for a flag.
func bounds(argv []string) (stdout, stderr int64) {
	switch {
	case slices.Contains(argv, "--export"):
		return -1, 0
	case slices.Contains(argv, "--realise"):
		return 0, MaxBuildLog
	}
	return 0, 0
}
