package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrorCode classifies the errors the agent's subcommands report, in their
// JSON error reply and their exit status.
type ErrorCode string

// Error codes. ExitCode maps them to process exit statuses.
const (
	CodeUsage          ErrorCode = "usage"
	CodeInvalidRequest ErrorCode = "invalid-request"
	CodeLockHeld       ErrorCode = "lock-held"
	CodeExists         ErrorCode = "exists"
	CodeNotFound       ErrorCode = "not-found"
	CodeTooLate        ErrorCode = "too-late"
	CodeRejected       ErrorCode = "rejected"
	CodeRunnerGone     ErrorCode = "runner-gone"
	CodeStartTimeout   ErrorCode = "start-timeout"
	CodeUnsafeStateDir ErrorCode = "unsafe-state-dir"
	CodeUnsafeProfile  ErrorCode = "unsafe-profile"
	CodeInternal       ErrorCode = "internal"
)

// Error is an agent failure a deployer acts on by its code.
type Error struct {
	Code   ErrorCode
	Msg    string
	Status Status // for too-late: how the deploy ended
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil && !strings.Contains(e.Msg, e.Err.Error()) {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// LockHeldError says another deploy holds the machine.
type LockHeldError struct {
	Holder LockInfo
}

func (e *LockHeldError) Error() string {
	h := e.Holder
	who := h.Who
	if who == "" {
		who = "unknown"
	}
	s := fmt.Sprintf("deploy %s from %s in progress", h.DeployID, who)
	if !h.Started.IsZero() {
		s += " since " + h.Started.UTC().Format("2006-01-02T15:04:05Z")
	}
	if h.PID != 0 {
		s += fmt.Sprintf(" (agent pid %d)", h.PID)
	}
	return s
}

// Code returns the code of err for the error reply.
func Code(err error) ErrorCode {
	var lh *LockHeldError
	if errors.As(err, &lh) {
		return CodeLockHeld
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return CodeInternal
}

// Exit statuses of tether-agent's subcommands.
const (
	ExitOK       = 0
	ExitFailure  = 1 // anything not listed below
	ExitUsage    = 2
	ExitLockHeld = 3
	ExitConfirm  = 4 // confirmation rejected, or too late: the deploy ended without it
	ExitGone     = 5 // the runner died without finishing its log
)

// ExitCode maps err to the process exit status.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	switch Code(err) {
	case CodeUsage:
		return ExitUsage
	case CodeLockHeld:
		return ExitLockHeld
	case CodeTooLate, CodeRejected:
		return ExitConfirm
	case CodeRunnerGone:
		return ExitGone
	}
	return ExitFailure
}

// ErrorReply is what a failing subcommand prints on standard output.
type ErrorReply struct {
	Error  string    `json:"error"`
	Code   ErrorCode `json:"code"`
	Holder *LockInfo `json:"holder,omitempty"`
	Status Status    `json:"status,omitempty"`
}

// Reply turns err into the JSON error reply.
func Reply(err error) ErrorReply {
	r := ErrorReply{Error: err.Error(), Code: Code(err)}
	var lh *LockHeldError
	if errors.As(err, &lh) {
		h := lh.Holder
		r.Holder = &h
	}
	var ae *Error
	if errors.As(err, &ae) {
		r.Status = ae.Status
	}
	return r
}

// DecodeReply is the deployer's side of Reply: it returns the typed error a
// subcommand's JSON output describes, or nil when the output is not an error
// reply.
func DecodeReply(stdout []byte) error {
	var r ErrorReply
	if json.Unmarshal(stdout, &r) != nil || r.Error == "" {
		return nil
	}
	if r.Code == CodeLockHeld && r.Holder != nil {
		return &LockHeldError{Holder: *r.Holder}
	}
	code := r.Code
	if code == "" {
		code = CodeInternal
	}
	return &Error{Code: code, Msg: r.Error, Status: r.Status}
}
