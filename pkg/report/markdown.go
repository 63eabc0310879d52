package report

import (
	"html"
	"net/url"
	"strings"
	"unicode/utf8"
)

// DefaultCommentLimit is the longest body GitHub accepts for an issue or
// pull request comment. Bytes are never fewer than characters, so every
// renderer here counts bytes: a byte limit is safe for a character limit.
const DefaultCommentLimit = 65536

// The Markdown toolkit: every renderer and the Action write text that came
// from a node, a build, a store path or a pull request only through these
// functions, so it is escaped the same way everywhere.
//
// Escaping a character with a backslash keeps the Markdown parser from
// reading it as syntax, but GitHub finds @mentions, #references and bare
// links again in the rendered text, where the backslash is gone. Those
// are broken instead with a zero-width space written as an entity: an "@"
// that could start a mention (at the start or after a character that is
// not a letter, digit or "_", as GitHub's own pattern requires) is
// followed by one, so neither a user nor a team is mentioned; "#" before
// a digit is no issue reference, "https:" no autolink, "www" no web link.
// The text reads the same. An "@" inside a word (getty@tty1.service) can
// start no mention and is only backslash-escaped, so the name copies
// cleanly.

// zwsp is a zero-width space as a character reference: Markdown and HTML
// both decode it, and it stays visible in the raw text of a comment.
const zwsp = "&#8203;"

// mdSpecial are the characters that can start Markdown or HTML syntax:
// emphasis, code, links and images, raw HTML, entities, math, table
// cells, strikethrough, headings, e-mail autolinks. Each is
// backslash-escaped outside code.
const mdSpecial = "\\`*_[]()<>|~$&!#{}@"

// MarkdownText is text for Markdown outside code (a heading, a table cell,
// a list item): control characters are neutralised (see clean), Markdown
// syntax is escaped, and mentions, references and links are broken. Inside
// a GFM table cell the parser pairs each backslash with the next
// character, so an escaped "\|" never ends the cell.
func MarkdownText(s string) string {
	return neutral(clean(s), func(b *strings.Builder, r rune) {
		if strings.ContainsRune(mdSpecial, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	})
}

// mdCode shows s as code in Markdown: an HTML <code> element around
// escaped text. Unlike a backtick span it survives any backticks and pipes
// in s.
func mdCode(s string) string {
	return "<code>" + MarkdownText(s) + "</code>"
}

// htmlText is text inside raw HTML (a <summary>), where Markdown is not
// parsed: HTML escaping applies, and mentions and links are broken as in
// MarkdownText, because GitHub finds them in HTML text as well.
func htmlText(s string) string {
	return neutral(clean(s), func(b *strings.Builder, r rune) {
		b.WriteString(html.EscapeString(string(r)))
	})
}

// htmlCode shows s as code inside raw HTML.
func htmlCode(s string) string {
	return "<code>" + htmlText(s) + "</code>"
}

// neutral writes s through esc, one character at a time, adding a
// zero-width space where GitHub would otherwise start a mention, an issue
// reference or a link.
func neutral(s string, esc func(*strings.Builder, rune)) string {
	var b strings.Builder
	prev := ' '
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		rest := s[i:]
		esc(&b, r)
		switch {
		case r == '@' && !wordChar(prev),
			r == '#' && rest != "" && rest[0] >= '0' && rest[0] <= '9',
			r == ':' && strings.HasPrefix(rest, "//"):
			b.WriteString(zwsp)
		case (r == 'w' || r == 'W') && len(rest) >= 3 && strings.EqualFold(rest[:3], "ww."):
			// "www." becomes "w&#8203;ww.": the link needs the four
			// characters together.
			b.WriteString(zwsp)
		}
		prev = r
	}
	return b.String()
}

// wordChar is \w of the pattern GitHub finds mentions with.
func wordChar(r rune) bool {
	return r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}

// codeFence is the fence for a fenced code block holding lines: a run of
// backticks longer than any run inside, so no line can close the block.
func codeFence(lines []string) string {
	run := 0
	for _, l := range lines {
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
	return strings.Repeat("`", max(3, run+1))
}

// Clip cuts s to at most limit bytes, at the last line end that fits: the
// last resort for a limit too small for even a heading, and for a job
// summary that is nearly full.
func Clip(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	s = s[:limit]
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[:i+1]
	}
	return ""
}

// safeURL returns u when it is an absolute http(s) URL, escaped so that it
// cannot end a Markdown link early, and "" otherwise. Only URLs tether
// makes itself (the run's page) are linked.
func safeURL(u string) string {
	parsed, err := url.Parse(strings.TrimSpace(u))
	if err != nil || (parsed.Scheme != "https" && parsed.Scheme != "http") || parsed.Host == "" {
		return ""
	}
	s := parsed.String()
	r := strings.NewReplacer("(", "%28", ")", "%29", "<", "%3C", ">", "%3E", " ", "%20", "\\", "%5C", "`", "%60")
	return r.Replace(s)
}

// FailureMarkdown renders a run that failed as a whole (the flake did not
// evaluate, the configuration is wrong) for a job summary or a comment: a
// heading, intro (tether's own Markdown, such as a note, written as it
// is), and the error in a code block that keeps its first line and its
// last ones, all within limit bytes (0 means DefaultCommentLimit).
func FailureMarkdown(title, intro, errText string, limit int) string {
	d := newDoc("report", limit, "")
	d.head = "### " + MarkdownText(title) + "\n\n"
	d.preface = intro
	bl := &block{}
	bl.addSec(codeSection("text", cleanLines(errText), "line", noteMiddle))
	d.blocks = []*block{bl}
	return d.fit()
}
