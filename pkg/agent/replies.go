package agent

import "time"

// StatusReport is what `tether-agent status` prints.
type StatusReport struct {
	CurrentSystem string `json:"currentSystem,omitempty"`
	BootedSystem  string `json:"bootedSystem,omitempty"`
	// BootID changes at every boot of the machine: a deployer that saw
	// another one earlier knows the machine rebooted in between.
	BootID            string       `json:"bootId,omitempty"`
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
	// BootID is the machine's boot ID when the lock was taken. lock.json
	// stays when its holder dies (the lock itself does not): a later
	// runner that finds it knows a deploy did not finish, and the boot ID
	// tells whether the machine rebooted since.
	BootID string `json:"bootId,omitempty"`
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
