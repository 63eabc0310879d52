package github

import (
	"bytes"
	"io"
	"sort"
	"strings"
	"sync"
)

// minSecretLen is the shortest secret piece replaced in output: the last
// line of a key can be a few characters, and replacing every "ab==" in the
// log would garble it while hiding nothing of worth.
const minSecretLen = 4

// secrets are the values that must never reach the log, the outputs or the
// summary: every line of the private key and the token.
type secrets []string

func newSecrets(values ...string) secrets {
	var s secrets
	seen := map[string]bool{}
	for _, v := range values {
		for _, l := range strings.Split(strings.ReplaceAll(v, "\r\n", "\n"), "\n") {
			l = strings.TrimSpace(l)
			if len(l) >= minSecretLen && !seen[l] {
				seen[l] = true
				s = append(s, l)
			}
		}
	}
	// Longest first, so that a piece inside another is not replaced
	// first and leaves the rest of the longer one visible.
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	return s
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
