package remote

import (
	"bytes"
	"strings"
	"sync"
)

// tail keeps the last lines written to it, for error messages: the end of a
// failing command's stderr is what tells the user why.
type tail struct {
	mu    sync.Mutex
	lines int
	buf   []byte
}

// tailBytes bounds the memory kept whatever the line lengths.
const tailBytes = 16 << 10

func newTail(lines int) *tail { return &tail{lines: lines} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*tailBytes {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-tailBytes:]...)
	}
	return len(p), nil
}

// String returns the last lines, without a trailing newline.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := bytes.TrimRight(t.buf, "\n")
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
	}
	n := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n++
			if n == t.lines {
				b = b[i+1:]
				break
			}
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
