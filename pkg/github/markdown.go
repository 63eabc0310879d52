package github

import (
	"strconv"
	"strings"
	"unicode"
)

// mdText escapes text for Markdown outside code, after replacing control
// characters, so an event's text (a ref name) stays text.
func mdText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			b.WriteRune('\uFFFD')
		case strings.ContainsRune("\\`*_[]()<>|~$&!#{}@", r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mdCodeBlock shows text (an error message) in a fenced block whose fence
// is longer than any backtick run inside, so no line can close it.
func mdCodeBlock(text string) string {
	text = strings.TrimRight(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	lines := strings.Split(text, "\n")
	const maxLines = 200
	if len(lines) > maxLines {
		cut := len(lines) - maxLines
		lines = append(lines[:1], append([]string{"… " + strconv.Itoa(cut) + " lines not shown"}, lines[len(lines)-maxLines+1:]...)...)
	}
	run := 0
	for i, l := range lines {
		lines[i] = strings.Map(func(r rune) rune {
			if r != '\t' && unicode.IsControl(r) {
				return '\uFFFD'
			}
			return r
		}, l)
		cur := 0
		for _, r := range l {
			if r == '`' {
				cur++
				run = max(run, cur)
			} else {
				cur = 0
			}
		}
	}
	fence := strings.Repeat("`", max(3, run+1))
	return fence + "text\n" + strings.Join(lines, "\n") + "\n" + fence + "\n"
}
