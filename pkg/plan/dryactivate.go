package plan

import (
	"strings"
)

// DryActivate is what switch-to-configuration dry-activate says activating
// the new system would do. Unit lists keep the order the tool printed them
// in (both implementations sort them).
type DryActivate struct {
	Stop       []string `json:"stop,omitempty"`       // units that would be stopped
	NotStopped []string `json:"notStopped,omitempty"` // changed units left running (X-StopIfChanged=false and the like)
	Reload     []string `json:"reload,omitempty"`
	Restart    []string `json:"restart,omitempty"`
	Start      []string `json:"start,omitempty"`
	// StopSwap lists swap devices that disappear from the configuration.
	StopSwap []string `json:"stopSwap,omitempty"`
	// RestartSystemd is set when systemd itself would be re-executed.
	RestartSystemd bool `json:"restartSystemd"`
	// RebootRequired is set when the new system's init is incompatible
	// with the running one: activation would do nothing until a reboot.
	RebootRequired bool `json:"rebootRequired"`
	// Other holds every non-blank line that is not one of the above,
	// verbatim and in order: the activation script's own dry-run output
	// ("would remove user ‘x’"), warnings, errors. Nothing the target said
	// is dropped, so a reviewer sees it even when this parser does not
	// know the line.
	Other []string `json:"other,omitempty"`
	// Error is set by the caller when dry-activate could not run or
	// failed; the lists then hold whatever was printed before that.
	Error string `json:"error,omitempty"`
}

// unitLines maps the list lines printed by both the Perl
// switch-to-configuration and its Rust successor to the list they fill.
// Both print "<prefix>a.service, b.socket" on stderr, and systemd unit
// names cannot hold ", ".
var unitLines = []struct {
	prefix string
	list   func(*DryActivate) *[]string
}{
	{"would stop the following units: ", func(d *DryActivate) *[]string { return &d.Stop }},
	{"would NOT stop the following changed units: ", func(d *DryActivate) *[]string { return &d.NotStopped }},
	{"would reload the following units: ", func(d *DryActivate) *[]string { return &d.Reload }},
	{"would restart the following units: ", func(d *DryActivate) *[]string { return &d.Restart }},
	{"would start the following units: ", func(d *DryActivate) *[]string { return &d.Start }},
}

// Swap lines. Some Perl versions print "would stop swap device" only
// outside dry-activate and, in dry-activate, really turn the device off
// while printing "stopping swap device"; both mean the device goes away.
var swapPrefixes = []string{"would stop swap device: ", "stopping swap device: "}

// rebootWarning starts the three-line warning printed (with exit code 100)
// when the new init is incompatible with the running one.
const rebootWarning = "Warning: the new NixOS configuration has an ‘init’ that is"

// ParseDryActivate interprets the output (stderr, possibly mixed with
// stdout) of `switch-to-configuration dry-activate` from either the Perl
// or the Rust implementation. It never fails: lines it does not recognise
// go to Other unchanged, blank lines are skipped, and a trailing "\r" is
// removed.
func ParseDryActivate(output string) DryActivate {
	var d DryActivate
	for line := range strings.SplitSeq(output, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if parseKnownLine(&d, line) {
			continue
		}
		if strings.HasPrefix(line, rebootWarning) {
			d.RebootRequired = true
		}
		d.Other = append(d.Other, line)
	}
	return d
}

func parseKnownLine(d *DryActivate, line string) bool {
	switch line {
	case "would restart systemd":
		d.RestartSystemd = true
		return true
	case "would activate the configuration...":
		// Announces the activation script's own dry run; what it
		// prints follows and lands in Other.
		return true
	}
	for _, u := range unitLines {
		if rest, ok := strings.CutPrefix(line, u.prefix); ok {
			l := u.list(d)
			for unit := range strings.SplitSeq(rest, ", ") {
				if unit = strings.TrimSpace(unit); unit != "" {
					*l = append(*l, unit)
				}
			}
			return true
		}
	}
	for _, p := range swapPrefixes {
		if dev, ok := strings.CutPrefix(line, p); ok && strings.TrimSpace(dev) != "" {
			d.StopSwap = append(d.StopSwap, strings.TrimSpace(dev))
			return true
		}
	}
	return false
}

// Empty reports whether dry-activate announced nothing at all.
func (d *DryActivate) Empty() bool {
	return len(d.Stop)+len(d.NotStopped)+len(d.Reload)+len(d.Restart)+len(d.Start)+
		len(d.StopSwap)+len(d.Other) == 0 && !d.RestartSystemd && !d.RebootRequired && d.Error == ""
}
