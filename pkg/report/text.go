package report

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

// clean makes text from a target or a build safe to print on one line of a
// terminal or a comment: ANSI escape sequences are removed, tabs become
// spaces and every other control character (newlines and carriage returns
// included) becomes U+FFFD, so hostile output cannot move the cursor,
// recolour the terminal or start a new Markdown block.
func clean(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0x1b:
			i += size + escapeLen(s[i+size:])
			continue
		case r == '\t':
			b.WriteByte(' ')
		case r == utf8.RuneError && size == 1, unicode.IsControl(r), invisible(r):
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// invisible reports line and paragraph separators and the bidi controls
// that can make text display differently from what it is.
func invisible(r rune) bool {
	return r == '\u2028' || r == '\u2029' || r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069'
}

// escapeLen is the length of the rest of an escape sequence after ESC: a
// CSI sequence ("[" ... final byte 0x40-0x7e) or one following byte.
func escapeLen(s string) int {
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

// cleanLines splits multi-line text (an error with a nix log tail) into
// cleaned lines, without the empty ones at the end.
func cleanLines(s string) []string {
	s = strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = clean(l)
	}
	return lines
}

// sizeText formats a size for people with binary units (512 B, 12.3 KiB),
// the same way the deployer's progress messages do.
func sizeText(n int64) string { return deploy.HumanBytes(n) }

// deltaText formats a signed size change: +0.4 MiB, -12.0 KiB, ±0 B.
func deltaText(n int64) string {
	switch {
	case n > 0:
		return "+" + sizeText(n)
	case n < 0:
		return "-" + sizeText(-n)
	default:
		return "±0 B"
	}
}

// thousands formats n with comma separators: 65,536.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// asIs shows text unchanged, where a helper takes a way to show it.
func asIs(s string) string { return s }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func pluralY(n int) string {
	if n == 1 {
		return "y"
	}
	return "ies"
}
