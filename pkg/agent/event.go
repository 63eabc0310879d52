package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// EventType names one step of a deploy in the event log.
type EventType string

// The events a runner writes, in the order they can appear.
const (
	EventLocked               EventType = "locked"                // lock taken: deployId, who, pid, bootId
	EventLockHeld             EventType = "lock-held"             // another deploy runs: holder, error
	EventReconciled           EventType = "reconciled"            // an earlier deploy was found unfinished and ended: deployId, status, reason, running
	EventPrevious             EventType = "previous"              // path (what a rollback restores), generation, lastGeneration, running, twoPhase
	EventProfileSet           EventType = "profile-set"           // generation, path, created
	EventActivating           EventType = "activating"            // argv
	EventLog                  EventType = "log"                   // stream, line: activation output
	EventActivated            EventType = "activated"             // exitCode, unitsFailed, rebootRequired, rebootFor
	EventActivationFailed     EventType = "activation-failed"     // exitCode (absent if it never ran), reason
	EventRollingBack          EventType = "rolling-back"          // reason, to
	EventRolledBack           EventType = "rolled-back"           // to, generation, exitCode, running
	EventRollbackFailed       EventType = "rollback-failed"       // error
	EventRebooting            EventType = "rebooting"             // path, generation: the machine reboots into the new system once
	EventBooted               EventType = "booted"                // bootId, running: the runner found the machine rebooted
	EventAwaitingConfirmation EventType = "awaiting-confirmation" // timeout: how long the runner waits, on its own monotonic clock
	EventConfirmRejected      EventType = "confirm-rejected"      // reason
	EventConfirmed            EventType = "confirmed"             //
	EventCommitting           EventType = "committing"            // path: phase 2, the confirmed system becomes the boot default
	EventCommitted            EventType = "committed"             // generation, path
	EventWarning              EventType = "warning"               // error: something went wrong that does not change the outcome
	EventDone                 EventType = "done"                  // status, error, reason, result: always last
)

// Status is the outcome of a deploy, carried by the `done` event and
// last.json.
type Status string

// Outcomes. OK reports which of them leave the new system in place.
const (
	StatusDeployed       Status = "deployed"
	StatusRebootRequired Status = "reboot-required" // deployed; it takes full effect at the next boot (exit 100, a new kernel, or a reboot cut in before it ran)
	StatusDryActivated   Status = "dry-activated"
	StatusRolledBack     Status = "rolled-back"
	StatusFailed         Status = "failed"          // failed and not rolled back (autoRollback off, or nothing changed)
	StatusRollbackFailed Status = "rollback-failed" // failed, and the way back failed or did not exist
	StatusLockHeld       Status = "lock-held"       // another deploy holds the machine; nothing was touched
)

// OK reports whether the deploy succeeded.
func (s Status) OK() bool {
	return s == StatusDeployed || s == StatusRebootRequired || s == StatusDryActivated
}

// Event is one line of D/events.jsonl. Fields not used by a type are omitted.
type Event struct {
	Seq  int       `json:"seq"`
	Time time.Time `json:"time"`
	Type EventType `json:"type"`

	DeployID       string    `json:"deployId,omitempty"`
	Who            string    `json:"who,omitempty"`
	PID            int       `json:"pid,omitempty"`
	BootID         string    `json:"bootId,omitempty"`
	Holder         *LockInfo `json:"holder,omitempty"`
	Path           string    `json:"path,omitempty"`
	Running        string    `json:"running,omitempty"`
	To             string    `json:"to,omitempty"`
	Generation     int       `json:"generation,omitempty"`
	LastGeneration int       `json:"lastGeneration,omitempty"`
	Created        bool      `json:"created,omitempty"`
	TwoPhase       bool      `json:"twoPhase,omitempty"`
	Argv           []string  `json:"argv,omitempty"`
	Stream         string    `json:"stream,omitempty"`
	Line           string    `json:"line,omitempty"`
	ExitCode       *int      `json:"exitCode,omitempty"`
	UnitsFailed    bool      `json:"unitsFailed,omitempty"`
	RebootRequired bool      `json:"rebootRequired,omitempty"`
	RebootFor      []string  `json:"rebootFor,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	// Timeout is a duration, never a time: the two ends' wall clocks need
	// not agree (a board without a real-time clock boots in 1970), so
	// each side measures it on its own monotonic clock from when it
	// learns of it.
	Timeout Duration `json:"timeout,omitempty"`
	Status  Status   `json:"status,omitempty"`
	Error   string   `json:"error,omitempty"`
	Result  *Result  `json:"result,omitempty"`
}

// Terminal reports whether nothing follows this event in its log.
func (e Event) Terminal() bool { return e.Type == EventDone }

// Steps lists the types of evs without activation output (log events):
// the path a deploy took, which the runner's tests and the agent's own
// end-to-end tests compare with the one they expect.
func Steps(evs []Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type != EventLog {
			out = append(out, string(e.Type))
		}
	}
	return out
}

// Result sums up a finished deploy: the `done` event's result and last.json.
type Result struct {
	DeployID    string `json:"deployId"`
	Who         string `json:"who,omitempty"`
	Action      Action `json:"action,omitempty"`
	ProfilePath string `json:"profilePath,omitempty"`
	Closure     string `json:"closure,omitempty"`
	Status      Status `json:"status"`
	Reason      string `json:"reason,omitempty"` // why it rolled back or failed
	Error       string `json:"error,omitempty"`  // what went wrong on the way back, or before activation
	Previous    string `json:"previous,omitempty"`
	Generation  int    `json:"generation,omitempty"` // the profile's generation at the end
	// PreviousGeneration is the profile's generation before the deploy;
	// GenerationCreated says a deploy that succeeded made Generation (rather
	// than finding the closure in the last one). Together they let the
	// deployer revert it cleanly (see Revert).
	PreviousGeneration int  `json:"previousGeneration,omitempty"`
	GenerationCreated  bool `json:"generationCreated,omitempty"`
	ExitCode           *int `json:"exitCode,omitempty"` // the activation's exit code
	UnitsFailed        bool `json:"unitsFailed,omitempty"`
	RebootRequired     bool `json:"rebootRequired,omitempty"`
	// RebootFor names what differs from the booted system and takes
	// effect only at boot: kernel, initrd, kernel-modules, systemd.
	RebootFor []string `json:"rebootFor,omitempty"`
	// Running is the system the machine runs at the end
	// (/run/current-system): after a reboot cut in, what the deployer
	// reports instead of guessing.
	Running string `json:"running,omitempty"`
	// Rebooted says the machine rebooted (its boot ID changed) while the
	// deploy was unfinished; the runner of a later contact brought the
	// deploy to its end (see docs/protocol.md, Reconciliation).
	Rebooted bool `json:"rebooted,omitempty"`
	// Reconciled says the deploy's own runner died before the end, and a
	// later one finished it.
	Reconciled bool `json:"reconciled,omitempty"`
	// Wall-clock times of the machine: for people, never for deadlines.
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// ParseEvent decodes one line of the event log.
func ParseEvent(line []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return Event{}, fmt.Errorf("event log line: %w", err)
	}
	if e.Type == "" {
		return Event{}, errors.New("event log line: no type")
	}
	return e, nil
}

// EventReader reads the output of `follow` and keeps the byte offset of the
// last complete line, which is what a deployer passes to `follow --offset`
// after its connection dropped.
type EventReader struct {
	r      *bufio.Reader
	offset int64
}

// NewEventReader reads events from r, whose first byte is at offset in the
// log.
func NewEventReader(r io.Reader, offset int64) *EventReader {
	return &EventReader{r: bufio.NewReaderSize(r, 64<<10), offset: offset}
}

// Offset is the log offset just past the last event Next returned.
func (er *EventReader) Offset() int64 { return er.offset }

// MaxEventLine bounds one line of the event log as the deployer reads it.
// The runner writes activation output a line per event, cut well below
// this; a longer line comes from something that is not the runner, and
// reading it whole would let a node fill the deployer's memory.
const MaxEventLine = 1 << 20

// ErrEventTooLong is a line of the event log longer than MaxEventLine.
var ErrEventTooLong = fmt.Errorf("event log line longer than %d bytes", MaxEventLine)

// Next returns the next complete event. A partial last line is not an
// event: io.ErrUnexpectedEOF tells the caller to resume from Offset.
func (er *EventReader) Next() (Event, error) {
	line, err := er.readLine()
	if errors.Is(err, ErrEventTooLong) {
		return Event{}, fmt.Errorf("at offset %d: %w", er.offset, err)
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return Event{}, io.ErrUnexpectedEOF
		}
		return Event{}, err
	}
	e, perr := ParseEvent(line)
	if perr != nil {
		return Event{}, fmt.Errorf("at offset %d: %w", er.offset, perr)
	}
	er.offset += int64(len(line))
	return e, nil
}

// readLine reads up to and including '\n', at most MaxEventLine bytes.
func (er *EventReader) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := er.r.ReadSlice('\n')
		if len(line)+len(frag) > MaxEventLine {
			return nil, ErrEventTooLong
		}
		line = append(line, frag...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}
