package deploy

import (
	"time"
)

// Status is the outcome of one node in a run.
type Status string

// Node outcomes, as written to --json and to the Action's outputs.
const (
	// StatusPending: the node's run has not ended. A report's results
	// start so, and a finished run has none left.
	StatusPending Status = "pending"
	// StatusDeployed: the new system is active and was confirmed.
	StatusDeployed Status = "deployed"
	// StatusRebootRequired: deployed and confirmed; the activation asked
	// for a reboot to finish (switch-to-configuration exit 100).
	StatusRebootRequired Status = "reboot-required"
	// StatusDryActivated: a dry activation ran; nothing changed.
	StatusDryActivated Status = "dry-activated"
	// StatusRolledBack: the node failed (or another node did) and is back
	// on the system it ran before this run.
	StatusRolledBack Status = "rolled-back"
	// StatusFailed: the node failed before anything on it changed (build,
	// copy, lock held), or failed with rollback disabled.
	StatusFailed Status = "failed"
	// StatusUnreachable: the node could not be reached before anything on
	// it changed.
	StatusUnreachable Status = "unreachable"
	// StatusUncertain: the node may be on either system: contact was lost
	// after activation began and never came back, or the rollback failed.
	StatusUncertain Status = "uncertain"
	// StatusSkipped: not attempted, because another node failed first or
	// the run was interrupted.
	StatusSkipped Status = "skipped"
)

// OK reports whether the node ends the run on its new system.
func (s Status) OK() bool {
	return s == StatusDeployed || s == StatusRebootRequired || s == StatusDryActivated
}

// Failed reports whether the node failed in the run, for a reason of its
// own: it did not end on its new system, was not merely skipped, and its
// run has ended. A status this build does not know counts as a failure.
func (s Status) Failed() bool {
	return !s.OK() && s != StatusSkipped && s != StatusPending
}

// Known reports whether s is one of the statuses above.
func (s Status) Known() bool {
	switch s {
	case StatusPending, StatusDeployed, StatusRebootRequired, StatusDryActivated, StatusRolledBack,
		StatusFailed, StatusUnreachable, StatusUncertain, StatusSkipped:
		return true
	}
	return false
}

// Action is what a run did on its nodes: an activation mode (switch, boot,
// test, dry-activate) or a rollback to an earlier generation.
type Action string

// ActionRollback is the Action of `tether rollback`; the other actions are
// the activation modes' names.
const ActionRollback Action = "rollback"

// IsRollback reports whether the run rolled nodes back to an earlier
// generation.
func (a Action) IsRollback() bool { return a == ActionRollback }

// Result is what happened to one node.
type Result struct {
	Node   string `json:"node"`
	Status Status `json:"status"`
	// Action is the activation that ran: switch, boot, test, dry-activate,
	// or rollback.
	Action Action `json:"action"`
	// Previous is the system the node ran before the run, New the one it
	// was asked to run. Current is where the run left it.
	Previous string `json:"previous,omitempty"`
	New      string `json:"new,omitempty"`
	Current  string `json:"current,omitempty"`
	// Generation is the profile generation the run created (or, for a
	// rollback, went back to); 0 when none.
	Generation int `json:"generation,omitempty"`
	// TargetGeneration is, for a rollback, the generation the node was
	// asked to go back to.
	TargetGeneration int `json:"targetGeneration,omitempty"`
	// RebootFor names what of the new system takes effect only at the
	// next boot because it differs from the booted one (kernel, initrd,
	// kernel-modules, systemd); the status is then reboot-required.
	RebootFor []string `json:"rebootFor,omitempty"`
	// Rebooted says the node rebooted during the run — asked to
	// (--reboot), or not (a power cut, a crash) — and was found so.
	Rebooted bool `json:"rebooted,omitempty"`
	// Profiles lists each profile's outcome when the node has several.
	Profiles []ProfileResult `json:"profiles,omitempty"`
	// Copied counts what the closure copy sent.
	Copied CopyStats `json:"copied"`
	// BuiltOn names the build host when the closure was not built on the
	// deployer; CopyRoute says which way the closure travelled.
	BuiltOn   string `json:"builtOn,omitempty"`
	CopyRoute string `json:"copyRoute,omitempty"`
	// Timings of each phase.
	Timings Timings `json:"timings"`
	// Error says why the node did not deploy; Reason adds the rollback
	// reason when it differs.
	Error  string `json:"error,omitempty"`
	Reason string `json:"reason,omitempty"`
	// DeployID names the run on the target (its event log lives under
	// <tempPath>/tether/<deployId>).
	DeployID string `json:"deployId,omitempty"`
}

// ProfileResult is the outcome of one profile of a node.
type ProfileResult struct {
	Profile    string `json:"profile"`
	Status     Status `json:"status"`
	Path       string `json:"path"`
	Previous   string `json:"previous,omitempty"`
	Generation int    `json:"generation,omitempty"`
	Error      string `json:"error,omitempty"`
}

// CopyStats describe one closure copy.
type CopyStats struct {
	Paths       int   `json:"paths"`       // store paths sent
	Bytes       int64 `json:"bytes"`       // bytes sent on the wire (compressed, when compressing)
	StreamBytes int64 `json:"streamBytes"` // bytes of the export stream before compression
	Present     int   `json:"present"`     // paths the target already had
	Substituted int   `json:"substituted"` // paths the target fetched from its own caches
	// CachesUnreachable says why the target's binary caches could not be
	// used (unreachable, no answer): the paths were sent instead.
	CachesUnreachable string `json:"cachesUnreachable,omitempty"`
}

// Timings hold the wall time of each phase, in the JSON as seconds.
type Timings struct {
	Build    Seconds `json:"build"`
	Copy     Seconds `json:"copy"`
	Activate Seconds `json:"activate"`
	Confirm  Seconds `json:"confirm"`
	Total    Seconds `json:"total"`
}

// Seconds is a duration that marshals as a number of seconds.
type Seconds time.Duration

// MarshalJSON writes the duration in seconds with millisecond precision.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(formatSeconds(time.Duration(s))), nil
}

// Report is the outcome of a whole run.
type Report struct {
	DeployID string    `json:"deployId"`
	Flake    string    `json:"flake"`
	Action   Action    `json:"action"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Results  []Result  `json:"nodes"`
	// Interrupted is set when the run was cancelled before it finished.
	Interrupted bool `json:"interrupted,omitempty"`
}

// Nodes returns the names of the nodes with one of the given statuses.
func (r *Report) Nodes(statuses ...Status) []string {
	var names []string
	for _, res := range r.Results {
		for _, s := range statuses {
			if res.Status == s {
				names = append(names, res.Node)
				break
			}
		}
	}
	return names
}

// OK reports whether every node ended on its new system.
func (r *Report) OK() bool {
	for _, res := range r.Results {
		if !res.Status.OK() {
			return false
		}
	}
	return true
}
