package agent

import "time"

// StatusReport is what `tether-agent status` prints.
type StatusReport struct {
	CurrentSystem     string       `json:"currentSystem,omitempty"`
	BootedSystem      string       `json:"bootedSystem,omitempty"`
	Profile           string       `json:"profile"`
	ProfilePath       string       `json:"profilePath,omitempty"` // the store path the profile points at
	CurrentGeneration int          `json:"currentGeneration,omitempty"`
	Generations       []Generation `json:"generations"`
	InProgress        *LockInfo    `json:"inProgress,omitempty"`
	Last              *Result      `json:"last,omitempty"`
	// Warning says why InProgress and Last could not be read.
	Warning string `json:"warning,omitempty"`
}

// LockInfo says which deploy holds a machine (S/lock.json).
type LockInfo struct {
	DeployID string    `json:"deployId"`
	Who      string    `json:"who,omitempty"`
	PID      int       `json:"pid,omitempty"`
	Started  time.Time `json:"started,omitzero"`
}

// Generation is one generation of a profile: the `<profile>-<N>-link`
// symlink next to it.
type Generation struct {
	Number  int       `json:"number"`
	Path    string    `json:"path"`
	Date    time.Time `json:"date"`
	Current bool      `json:"current"`
}

// Detach says how `start` detaches the runner from the caller's session.
type Detach string

// Detach modes. DetachAuto picks systemd when systemd manages the machine.
const (
	DetachAuto    Detach = "auto"
	DetachSystemd Detach = "systemd"
	DetachSetsid  Detach = "setsid"
)

// StartResult is what `start` prints when the runner holds the lock.
type StartResult struct {
	OK       bool   `json:"ok"`
	DeployID string `json:"deployId"`
	Dir      string `json:"dir"`
	Detach   Detach `json:"detach"`
	Unit     string `json:"unit,omitempty"`
}
