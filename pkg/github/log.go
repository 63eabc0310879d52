package github

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
)

// jobLog is one output stream of the step as the runner reads it. The
// runner reads every line of a step's output as a possible workflow
// command (add a mask, set an output, raise an annotation, stop commands):
// it splits lines at "\r" as well as "\n", trims all Unicode white space
// before "::", honours the older "##[" form anywhere in a line, and on
// some systems compares with culture-aware string functions that skip
// characters it deems ignorable. A filter that tries to tell which lines
// it would take for commands must match all of that exactly; a miss lets
// a node, a build or a pull request command the run.
//
// So no such filter is used. Every line that did not come from tether
// itself is written inside a block the runner's own mechanism opens:
// "::stop-commands::<token>" before it, "::<token>::" after, where token
// is fresh random for every block, so text that saw an earlier token in a
// public log still cannot end a later block. Inside a block the runner
// runs nothing but the command named by the token. Tether's own lines and
// commands (written through Write) close an open block first, and a block
// stays open across untrusted writes in a row, so a stream of progress
// lines costs two lines of log, not two per line.
//
// The runner keeps one stop state for all the step's streams, so a block
// must never be open on two streams at once: stdout carries every block
// but the one usage error on stderr, which is written before any block is
// opened on stdout (see run.usage).
type jobLog struct {
	mu      sync.Mutex
	w       io.Writer
	token   string // of the open block; "" when commands run
	midLine bool   // the last write left a line unfinished
}

// Write writes tether's own text and workflow commands.
func (l *jobLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.resume(); err != nil {
		return 0, err
	}
	if len(p) > 0 {
		l.midLine = p[len(p)-1] != '\n'
	}
	return l.w.Write(p)
}

// untrusted writes text that came from outside (a node, a build, a pull
// request, the event), each argument ended with a newline, inside a
// stop-commands block.
func (l *jobLog) untrusted(lines ...string) {
	if len(lines) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	if l.token == "" {
		if l.midLine {
			b.WriteByte('\n')
		}
		l.token = randomHex()
		fmt.Fprintf(&b, "::stop-commands::%s\n", l.token)
	}
	for _, line := range lines {
		b.WriteString(line)
		b.WriteByte('\n')
	}
	l.midLine = false
	_, _ = io.WriteString(l.w, b.String())
}

// untrustedText is untrusted for multi-line text, such as a rendering.
func (l *jobLog) untrustedText(text string) {
	l.untrusted(strings.Split(strings.TrimSuffix(text, "\n"), "\n")...)
}

// close ends an open block: every run ends with this, as a stop left
// open would silence whatever the job prints after tether.
func (l *jobLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.resume()
}

// resume ends the open block, if any; l.mu is held.
func (l *jobLog) resume() error {
	if l.token == "" {
		return nil
	}
	_, err := fmt.Fprintf(l.w, "::%s::\n", l.token)
	l.token = ""
	return err
}

func randomHex() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b[:])
}
