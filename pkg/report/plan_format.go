package report

import (
	"fmt"
	"strings"

	"github.com/tetherdeploy/tether/pkg/plan"
)

// planVersions joins a package's versions for display; a path without a
// version shows as "(none)".
func planVersions(vs []string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		if v == "" {
			v = "(none)"
		}
		out[i] = v
	}
	return strings.Join(out, ", ")
}

// planKindLetter is the one-letter tag shown before a package line.
var planKindLetter = map[plan.Kind]string{
	plan.Upgraded:   "U",
	plan.Downgraded: "D",
	plan.Changed:    "C",
	plan.Added:      "A",
	plan.Removed:    "R",
}

// planCounts summarises a diff as "3 upgraded, 1 added" (kinds with no
// packages left out), or "" when no package changed.
func planCounts(d *plan.Diff) string {
	var parts []string
	for _, k := range plan.Kinds {
		if n := d.Count(k); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	return strings.Join(parts, ", ")
}

// planStatusText is how a node status reads to a person.
func planStatusText(s plan.Status) string {
	switch s {
	case plan.StatusOK:
		return "changes"
	case plan.StatusNoChanges:
		return "no changes"
	case plan.StatusFresh:
		return "fresh install"
	case plan.StatusUnreachable:
		return "unreachable"
	case plan.StatusError:
		return "error"
	case plan.StatusNotQueried:
		return "not queried"
	}
	return string(s)
}

// rebootText says what of a new system takes effect only at the next boot
// (plan.BootLinks, deploy.Result.RebootFor), "" when nothing does. The
// names are fixed words, never text from a node.
func rebootText(what []string) string {
	if len(what) == 0 {
		return ""
	}
	verb := "differ"
	if len(what) == 1 {
		verb = "differs"
	}
	return fmt.Sprintf("needs a reboot: the %s %s from the booted system", strings.Join(what, ", "), verb)
}
