package app

import (
	"context"
	"errors"

	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/plan"
)

// Exit codes. They are part of tether's interface (the README's table): a
// script tells "nothing was touched" apart from "a machine rolled back" and
// from "a machine may be in an unknown state". Both front ends return them.
const (
	ExitOK          = 0   // every selected node runs its new system, confirmed
	ExitFailed      = 1   // a node failed before anything on it changed, or the run failed
	ExitUsage       = 2   // bad flags, inputs or configuration: nothing was touched
	ExitRolledBack  = 3   // a node failed and was rolled back: it runs its previous system
	ExitUncertain   = 4   // a node's state is unknown: contact lost after activation began, or its rollback failed
	ExitInterrupted = 130 // interrupted, when no code above applies
)

// UsageError marks an error in what the user asked for (flags, inputs,
// configuration, selection): nothing was touched, and the exit code is
// ExitUsage.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage wraps err as a UsageError; nil stays nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &UsageError{Err: err}
}

// ErrorExit is the exit code of a run that produced no result: ExitUsage
// for a UsageError, ExitInterrupted when the run was cancelled, else
// ExitFailed.
func ErrorExit(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	}
	return ExitFailed
}

// severity orders the codes a node can contribute: uncertainty is the worst
// news, then a rollback, then any other failure.
func severity(code int) int {
	switch code {
	case ExitUncertain:
		return 3
	case ExitRolledBack:
		return 2
	case ExitFailed:
		return 1
	}
	return 0
}

// nodeExit is what one node's outcome contributes to a run's exit code. A
// node skipped because the run was interrupted did not fail: the interrupt
// is the news. A status this build does not know counts as a failure.
func nodeExit(s deploy.Status, interrupted bool) int {
	switch {
	case s == deploy.StatusUncertain:
		return ExitUncertain
	case s == deploy.StatusRolledBack:
		return ExitRolledBack
	case s.OK():
		return ExitOK
	case s == deploy.StatusSkipped && interrupted:
		return ExitOK
	}
	return ExitFailed
}

// DeployExit is the exit code of a deploy or rollback: the worst node's
// (uncertain, then rolled back, then failed), else ExitInterrupted when the
// run was interrupted, else the error's. A rollback's nodes that were
// themselves rolled back (their rollback was undone) exit 3 like a deploy's.
func DeployExit(rep *deploy.Report, err error) int {
	if rep == nil {
		if err == nil {
			return ExitFailed // no report and no reason: never claim success
		}
		return ErrorExit(err)
	}
	code := ExitOK
	for _, res := range rep.Results {
		if c := nodeExit(res.Status, rep.Interrupted); severity(c) > severity(code) {
			code = c
		}
	}
	switch {
	case code != ExitOK:
		return code
	case rep.Interrupted:
		return ExitInterrupted
	case err != nil:
		return ErrorExit(err)
	}
	return ExitOK
}

// PlanExit is the exit code of a plan: ExitFailed when a node could not be
// planned (unreachable, an error, a failed dry activation), since the plan
// then does not say what the deploy would do there. A node deliberately not
// queried (a fork's pull request) is planned as far as it may be.
func PlanExit(p *plan.Plan, err error) int {
	if p == nil {
		if err == nil {
			return ExitFailed
		}
		return ErrorExit(err)
	}
	for _, n := range p.Nodes {
		if !n.Planned() {
			return ExitFailed
		}
	}
	if err != nil {
		return ErrorExit(err)
	}
	return ExitOK
}

// StatusExit is the exit code of `tether status`: ExitFailed when a node
// could not be read.
func StatusExit(st []deploy.NodeStatus, err error) int {
	if err != nil {
		return ErrorExit(err)
	}
	for _, n := range st {
		if n.Error != "" {
			return ExitFailed
		}
	}
	return ExitOK
}
