package report

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tetherdeploy/tether/pkg/plan"
)

// planBytes formats a size with binary units and one decimal: 512 B,
// 12.3 KiB, 45.6 MiB.
func planBytes(n int64) string {
	if n < 0 {
		return "-" + planBytes(-n)
	}
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		if f < 1024 || unit == "TiB" {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	panic("unreachable")
}

// planDelta formats a signed size change: +0.4 MiB, -12.0 KiB, ±0 B.
func planDelta(n int64) string {
	switch {
	case n > 0:
		return "+" + planBytes(n)
	case n < 0:
		return planBytes(n)
	default:
		return "±0 B"
	}
}

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

// planClean makes text from a target or a build safe to print on one line
// of a terminal or a comment: ANSI escape sequences are removed, tabs
// become spaces and every other control character (newlines included)
// becomes U+FFFD, so hostile output cannot move the cursor, recolour the
// terminal or start a new Markdown block.
func planClean(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0x1b:
			i += size + planEscapeLen(s[i+size:])
			continue
		case r == '\t':
			b.WriteByte(' ')
		case r == utf8.RuneError && size == 1, unicode.IsControl(r), planInvisible(r):
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// planInvisible reports line and paragraph separators and the bidi
// controls that can make text display differently from what it is.
func planInvisible(r rune) bool {
	return r == '\u2028' || r == '\u2029' || r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069'
}

// planEscapeLen is the length of the rest of an escape sequence after ESC:
// a CSI sequence ("[" ... final byte 0x40-0x7e) or one following byte.
func planEscapeLen(s string) int {
	if s == "" {
		return 0
	}
	if s[0] != '[' {
		return 1
	}
	for i := 1; i < len(s); i++ {
		if s[i] >= 0x40 && s[i] <= 0x7e {
			return i + 1
		}
	}
	return len(s)
}

// planLines splits multi-line text (an error with a nix log tail) into
// cleaned, non-empty-at-the-end lines.
func planLines(s string) []string {
	s = strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = planClean(l)
	}
	return lines
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
