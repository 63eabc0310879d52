package deploy

import (
	"time"

	"github.com/tetherdeploy/tether/pkg/transfer"
)

// Phase is a step of a node's pipeline.
type Phase string

// The phases, in pipeline order.
const (
	PhaseBuild    Phase = "build"
	PhaseConnect  Phase = "connect"
	PhaseAgent    Phase = "agent"
	PhaseCopy     Phase = "copy"
	PhaseActivate Phase = "activate"
	PhaseConfirm  Phase = "confirm"
	PhaseRollback Phase = "rollback"
	PhaseDone     Phase = "done"
)

// Event tells a renderer what a node is doing. The same events feed the
// live terminal view and the plain CI log.
type Event struct {
	Time  time.Time
	Node  string // "" for fleet-wide events (the build)
	Phase Phase
	// Message is a one-line, human-readable note.
	Message string
	// Output is a line of the activation's own output (stream "stdout" or
	// "stderr"), when Message is empty.
	Output, Stream string
	// Copy is set during PhaseCopy.
	Copy *transfer.Progress
	// Result is set with PhaseDone.
	Result *Result
}

// Sink receives events. The engine calls it from one goroutine at a time.
type Sink func(Event)
