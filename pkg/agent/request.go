package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Action is what the activation does with the new system.
type Action string

// The activation modes of switch-to-configuration.
const (
	ActionSwitch      Action = "switch"
	ActionBoot        Action = "boot"
	ActionTest        Action = "test"
	ActionDryActivate Action = "dry-activate"
)

// ChangesProfile reports whether the action points the profile at the new
// closure (and so makes a new generation). test and dry-activate leave the
// profile alone.
func (a Action) ChangesProfile() bool { return a == ActionSwitch || a == ActionBoot }

// ChangesRunningSystem reports whether the action changes the live system, the
// only case where a broken deploy can cut the machine off and so the only case
// that waits for a confirmation.
func (a Action) ChangesRunningSystem() bool { return a == ActionSwitch || a == ActionTest }

func (a Action) valid() bool {
	switch a {
	case ActionSwitch, ActionBoot, ActionTest, ActionDryActivate:
		return true
	}
	return false
}

// Defaults applied by the agent when a request leaves a timeout at zero. They
// match the deploy.nodes schema's defaults.
const (
	DefaultConfirmTimeout    = 30 * time.Second
	DefaultActivationTimeout = 240 * time.Second
)

// Duration is a time.Duration that reads JSON as a Go duration string
// ("1m30s") or as a number of seconds (30, "30") — the deploy.nodes schema
// uses seconds — and writes a Go duration string.
type Duration time.Duration

// ParseDuration reads "30", "2.5" (seconds) or a Go duration such as "1m".
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return secondsDuration(f)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want seconds or a Go duration such as 90s", s)
	}
	return Duration(d), nil
}

func secondsDuration(f float64) (Duration, error) {
	if f < 0 || f > float64(1<<62)/float64(time.Second) {
		return 0, fmt.Errorf("duration %v seconds out of range", f)
	}
	return Duration(f * float64(time.Second)), nil
}

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a number of seconds or a string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := ParseDuration(s)
		if err != nil {
			return err
		}
		*d = v
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("duration: want seconds or a string, got %s", b)
	}
	v, err := secondsDuration(f)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Request is what the deployer sends to `tether-agent start` on its standard
// input. The token travels only here (never on a command line, where any user
// of the machine could read it from /proc).
type Request struct {
	DeployID          string   `json:"deployId"`
	Who               string   `json:"who,omitempty"`
	ProfilePath       string   `json:"profilePath"`
	Closure           string   `json:"closure"`
	Action            Action   `json:"action,omitempty"`
	MagicRollback     bool     `json:"magicRollback"`
	AutoRollback      bool     `json:"autoRollback"`
	ConfirmTimeout    Duration `json:"confirmTimeout,omitempty"`
	ActivationTimeout Duration `json:"activationTimeout,omitempty"`
	AllowFailedUnits  bool     `json:"allowFailedUnits,omitempty"`
	// Token is the per-deploy confirmation secret (see NewToken). Required
	// when the deploy waits for a confirmation.
	Token string `json:"token,omitempty"`
	// Revert, when set, says this deploy takes back one the same fleet
	// deploy made moments ago, because another node failed.
	Revert *Revert `json:"revert,omitempty"`
	// Reboot asks for the new system to be booted once — a one-shot boot
	// entry, the default left on the previous system — and confirmed
	// after that boot before it becomes the default: for changes that
	// take effect only at boot (kernel, initrd, systemd). Only with
	// switch, and always with a confirmation.
	Reboot bool `json:"reboot,omitempty"`
}

// Revert names the generation a deploy takes back. The profile switches
// back to generation To, which holds the request's closure, instead of
// growing a new generation; once the deploy has succeeded, generation
// Generation is deleted if it still holds Path. So a machine a fleet deploy
// undid keeps the generation list it had before.
type Revert struct {
	Generation int    `json:"generation"`
	Path       string `json:"path"`
	To         int    `json:"to"`
}

// NeedsConfirmation reports whether the deploy waits for the deployer's
// confirmation after a successful activation. boot changes nothing live and
// dry-activate changes nothing at all, so there is nothing to confirm.
func (r Request) NeedsConfirmation() bool {
	return r.Reboot || r.MagicRollback && r.WithDefaults().Action.ChangesRunningSystem()
}

// WithDefaults fills the fields a deployer may leave empty: the action
// (switch) and the timeouts (DefaultConfirmTimeout,
// DefaultActivationTimeout). The runner works on the result, so a deployer
// that sends zeros gets the deploy.nodes schema's defaults.
func (r Request) WithDefaults() Request {
	if r.Action == "" {
		r.Action = ActionSwitch
	}
	if r.ConfirmTimeout == 0 {
		r.ConfirmTimeout = Duration(DefaultConfirmTimeout)
	}
	if r.ActivationTimeout == 0 {
		r.ActivationTimeout = Duration(DefaultActivationTimeout)
	}
	return r
}

var (
	deployIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	tokenRE    = regexp.MustCompile(`^[0-9a-f]{32,256}$`)
)

// ValidDeployID reports whether id may name a deploy: it becomes a directory
// name and a systemd unit name, so only [a-z0-9-], at most 64 characters, not
// starting with '-'.
func ValidDeployID(id string) bool { return deployIDRE.MatchString(id) }

// ValidToken reports whether s has the form of a confirmation token (see
// NewToken): both sides check it, so a token never carries anything but hex.
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// NewToken returns a fresh confirmation token: 32 random bytes, hex.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("confirmation token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Validate checks a request before anything on the machine changes.
func (r Request) Validate() error {
	bad := func(format string, args ...any) error {
		return &Error{Code: CodeInvalidRequest, Msg: "invalid request: " + fmt.Sprintf(format, args...)}
	}
	if !ValidDeployID(r.DeployID) {
		return bad("deployId %q: want 1-64 of [a-z0-9-], not starting with '-'", r.DeployID)
	}
	if len(r.Who) > 256 {
		return bad("who: longer than 256 bytes")
	}
	for _, c := range r.Who {
		if unicode.IsControl(c) {
			return bad("who: control character %U", c)
		}
	}
	if err := CheckAbsPath("profilePath", r.ProfilePath); err != nil {
		return bad("%v", err)
	}
	if err := CheckAbsPath("closure", r.Closure); err != nil {
		return bad("%v", err)
	}
	if r.Action != "" && !r.Action.valid() {
		return bad("action %q: want switch, boot, test or dry-activate", r.Action)
	}
	if r.ConfirmTimeout < 0 || r.ActivationTimeout < 0 {
		return bad("negative timeout")
	}
	if r.Token != "" && !ValidToken(r.Token) {
		return bad("token: want 32-256 lower-case hex digits")
	}
	if r.NeedsConfirmation() && r.Token == "" {
		return bad("magicRollback needs a confirmation token")
	}
	if r.Reboot && (r.WithDefaults().Action != ActionSwitch || r.Revert != nil) {
		return bad("reboot: only a switch to a new system can boot it once")
	}
	if rv := r.Revert; rv != nil {
		switch {
		case !r.WithDefaults().Action.ChangesProfile():
			return bad("revert: action %s does not change the profile", r.WithDefaults().Action)
		case rv.Generation <= 0 || rv.To <= 0 || rv.Generation == rv.To:
			return bad("revert: generations %d and %d: want two different positive numbers", rv.Generation, rv.To)
		}
		if err := CheckAbsPath("revert.path", rv.Path); err != nil {
			return bad("%v", err)
		}
	}
	return nil
}

// CheckAbsPath checks a path the agent is given (a profile, a closure): it
// must be clean and absolute, not "/" and free of NUL bytes, so that it
// names exactly one file whatever the working directory. name says which
// argument it is in the error.
func CheckAbsPath(name, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%s: empty", name)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%s: NUL byte", name)
	case !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/":
		return fmt.Errorf("%s %q: want a clean absolute path", name, p)
	}
	return nil
}
