package cli

import (
	"encoding/json"
	"errors"
	"io"
)

// Exit codes. They are part of tether's interface (documented in the README):
// scripts tell "nothing was touched" apart from "a machine rolled back" and
// from "a machine may be in an unknown state".
const (
	ExitOK          = 0 // every selected node deployed and confirmed
	ExitFailed      = 1 // a node failed and is back on its previous system, or another runtime error
	ExitUsage       = 2 // bad flags or configuration: nothing was touched
	ExitRolledBack  = 3 // a node failed and was rolled back (magic or automatic rollback)
	ExitUncertain   = 4 // a node's state is unknown (unreachable after activation began, rollback failed)
	ExitInterrupted = 130
)

// exitError carries an exit code with an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// silentError marks an error whose message was already shown to the user.
type silentError struct{ exitError }

func usageError(err error) error { return &exitError{code: ExitUsage, err: err} }

// withCode attaches an exit code to err.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// ExitCode maps an error returned by a command to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var se *silentError
	if errors.As(err, &se) {
		return se.code
	}
	return ExitFailed
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
