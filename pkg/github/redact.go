package github

import (
	"bytes"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/tetherdeploy/tether/pkg/report"
)

// minSecretLen is the shortest secret piece replaced in output: the last
// line of a key can be a few characters, and replacing every "ab==" in the
// log would garble it while hiding nothing of worth.
const minSecretLen = 4

// secrets are the values that must never reach the log, the outputs, the
// summary or a comment: every line of the private key and the token, each
// also as Markdown escapes it (a token's "_" becomes "\_" in a rendered
// error, which a reader sees as the token).
type secrets []string

func newSecrets(values ...string) secrets {
	var s secrets
	seen := map[string]bool{}
	for _, l := range secretLines(values...) {
		for _, form := range []string{l, report.MarkdownText(l)} {
			if !seen[form] {
				seen[form] = true
				s = append(s, form)
			}
		}
	}
	// Longest first, so that a piece inside another is not replaced
	// first and leaves the rest of the longer one visible.
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	return s
}

// secretLines are the pieces of values that are masked in the log: every
// line long enough to be worth hiding.
func secretLines(values ...string) []string {
	var out []string
	for _, v := range values {
		for _, l := range strings.Split(strings.ReplaceAll(v, "\r\n", "\n"), "\n") {
			if l = strings.TrimSpace(l); len(l) >= minSecretLen && !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return out
}

// redact replaces every secret in text with ***.
func (s secrets) redact(text string) string {
	for _, v := range s {
		text = strings.ReplaceAll(text, v, "***")
	}
	return text
}

// redactWriter passes whole lines through with the secrets replaced. A
// partial line waits for its end (or flush), so a secret split across two
// writes is still found.
type redactWriter struct {
	mu  sync.Mutex
	w   io.Writer
	s   secrets
	buf []byte
}

func (r *redactWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	i := bytes.LastIndexByte(r.buf, '\n')
	if i < 0 {
		return len(p), nil
	}
	out := r.s.redact(string(r.buf[:i+1]))
	r.buf = append(r.buf[:0], r.buf[i+1:]...)
	if _, err := io.WriteString(r.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush writes a pending partial line.
func (r *redactWriter) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) > 0 {
		_, _ = io.WriteString(r.w, r.s.redact(string(r.buf)))
		r.buf = r.buf[:0]
	}
}
