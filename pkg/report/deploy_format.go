package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

// deployIsRollback reports whether a run was `tether rollback`: its
// statuses then read differently (a "deployed" node is one that went back).
func deployIsRollback(r *deploy.Report) bool { return r.Action.IsRollback() }

// deployVerb is the name of the run: deploy, rollback or dry-activate.
func deployVerb(r *deploy.Report) string {
	switch r.Action {
	case deploy.ActionRollback, "dry-activate":
		return string(r.Action)
	}
	return "deploy"
}

// deployStatusText is how a node's outcome reads to a person, in the
// words of the run it belongs to.
func deployStatusText(r *deploy.Report, res *deploy.Result) string {
	rb := deployIsRollback(r)
	switch res.Status {
	case deploy.StatusDeployed:
		if rb {
			if res.Generation > 0 {
				return fmt.Sprintf("rolled back to generation %d", res.Generation)
			}
			return "rolled back"
		}
		return "deployed"
	case deploy.StatusRebootRequired:
		if rb {
			return "rolled back, reboot required"
		}
		return "deployed, reboot required"
	case deploy.StatusDryActivated:
		return "dry-activated"
	case deploy.StatusRolledBack:
		if rb {
			return "rollback failed, back on its previous system"
		}
		return "failed, rolled back"
	case deploy.StatusFailed:
		return "failed"
	case deploy.StatusUnreachable:
		return "unreachable"
	case deploy.StatusUncertain:
		return "uncertain: may be on either system"
	case deploy.StatusSkipped:
		return "skipped"
	}
	return string(res.Status)
}

// deployIcons mark a status in Markdown so a reader finds the nodes that
// need attention at a glance.
var deployIcons = map[deploy.Status]string{
	deploy.StatusDeployed:       "✅",
	deploy.StatusDryActivated:   "✅",
	deploy.StatusRebootRequired: "🔄",
	deploy.StatusRolledBack:     "↩️",
	deploy.StatusFailed:         "❌",
	deploy.StatusUnreachable:    "❌",
	deploy.StatusUncertain:      "⚠️",
	deploy.StatusSkipped:        "⏭️",
}

// deployStatusIcon is a status's mark in deployIcons, "•" for a status
// this version does not know.
func deployStatusIcon(s deploy.Status) string {
	if icon, ok := deployIcons[s]; ok {
		return icon
	}
	return "•"
}

// deployHeadline counts the outcomes: "2 deployed, 1 failed, rolled back".
// Statuses are listed in a fixed order, the good ones first.
func deployHeadline(r *deploy.Report) string {
	order := []deploy.Status{
		deploy.StatusDeployed, deploy.StatusRebootRequired, deploy.StatusDryActivated,
		deploy.StatusRolledBack, deploy.StatusFailed, deploy.StatusUnreachable,
		deploy.StatusUncertain, deploy.StatusSkipped,
	}
	counts := map[deploy.Status]int{}
	var other []string
	for i := range r.Results {
		s := r.Results[i].Status
		counts[s]++
		if counts[s] == 1 && !s.Known() {
			other = append(other, string(s))
		}
	}
	var parts []string
	for _, s := range order {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, deployCountWord(r, s)))
		}
	}
	for _, s := range other {
		parts = append(parts, fmt.Sprintf("%d %s", counts[deploy.Status(s)], clean(s)))
	}
	if len(parts) == 0 {
		return "no nodes"
	}
	return strings.Join(parts, ", ")
}

// deployCountWord is a status as counted in the headline.
func deployCountWord(r *deploy.Report, s deploy.Status) string {
	rb := deployIsRollback(r)
	switch s {
	case deploy.StatusDeployed:
		if rb {
			return "rolled back"
		}
		return "deployed"
	case deploy.StatusRebootRequired:
		return "reboot required"
	case deploy.StatusRolledBack:
		if rb {
			return "rollback failed"
		}
		return "failed and rolled back"
	case deploy.StatusUncertain:
		return "uncertain"
	}
	return string(s)
}

// deploySystemLabel names a system store path for display: its version
// when the name has one (nixos-system-frame1-24.05.20240301.89abcde →
// 24.05.20240301.89abcde), else its name without the hash.
func deploySystemLabel(p string) string {
	base, hash := deployStoreName(p)
	if hash != "" {
		base = base[len(hash)+1:]
	}
	for i := 0; i+1 < len(base); i++ {
		if base[i] == '-' && base[i+1] >= '0' && base[i+1] <= '9' {
			return base[i+1:]
		}
	}
	return base
}

// deploySystemHash is the first characters of a store path's hash, to
// tell apart two builds whose labels are the same.
func deploySystemHash(p string) string {
	_, hash := deployStoreName(p)
	if hash == "" {
		return ""
	}
	return hash[:8]
}

// deployStoreName is the last element of a store path and, when it starts
// with one, its 32-character hash.
func deployStoreName(p string) (name, hash string) {
	name = p
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if len(name) > 33 && name[32] == '-' {
		hash = name[:32]
	}
	return name, hash
}

// deployChange shows where a node went: "old → new", with short hashes
// when both have the same label, or the one side that is known; "" when
// neither is. Each side is shown through show: as it is in text, as code
// in Markdown.
func deployChange(prev, next, arrow string, show func(string) string) string {
	label := func(p string) string { return show(deploySystemLabel(p)) }
	switch {
	case prev == "" && next == "":
		return ""
	case prev == "":
		return arrow + " " + label(next)
	case next == "":
		return label(prev) + " " + arrow
	case prev == next:
		return label(next) + " (unchanged)"
	}
	a, b := deploySystemLabel(prev), deploySystemLabel(next)
	if a != b {
		return label(prev) + " " + arrow + " " + label(next)
	}
	return show(deploySystemHash(prev)+" "+a) + " " + arrow + " " + show(deploySystemHash(next)+" "+b)
}

// deployTarget is the system a result moved towards: New, or Current when
// the run records only where the node ended.
func deployTarget(res *deploy.Result) string {
	if res.New != "" {
		return res.New
	}
	return res.Current
}

// deployCopied is "12 paths, 3.4 MiB", "nothing to copy" or "".
func deployCopied(c deploy.CopyStats) string {
	if c.Paths == 0 && c.Bytes == 0 {
		if c.Present > 0 || c.Substituted > 0 {
			return "nothing to copy"
		}
		return ""
	}
	return fmt.Sprintf("%d path%s, %s", c.Paths, plural(c.Paths), sizeText(c.Bytes))
}

// deployDuration formats a phase's wall time: 0.4s, 12.3s, 1m02s, 1h05m.
func deployDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// deployPhases lists the phases that took time: "build 1m02s · copy 3.1s".
func deployPhases(t deploy.Timings, sep string) string {
	var parts []string
	for _, p := range []struct {
		name string
		d    deploy.Seconds
	}{{"build", t.Build}, {"copy", t.Copy}, {"activate", t.Activate}, {"confirm", t.Confirm}} {
		if s := deployDuration(time.Duration(p.d)); s != "" {
			parts = append(parts, p.name+" "+s)
		}
	}
	return strings.Join(parts, sep)
}

// deployRunTime is the wall time of the whole run, when known.
func deployRunTime(r *deploy.Report) time.Duration {
	if r.Started.IsZero() || r.Finished.IsZero() {
		return 0
	}
	return r.Finished.Sub(r.Started)
}

// deployGeneration is the generation column: the number, or "".
func deployGeneration(res *deploy.Result) string {
	if res.Generation <= 0 {
		return ""
	}
	return fmt.Sprint(res.Generation)
}
