package runner

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// maxLogLine bounds one `log` event; longer output lines are cut (with a
// marker) so a runaway activation cannot make a line the deployer must hold
// whole.
const maxLogLine = 8 << 10

// eventLog appends events to D/events.jsonl: one write per line, O_APPEND,
// so a follower never sees a torn line from a single writer, and a sync after
// every event that is not activation output.
type eventLog struct {
	mu      sync.Mutex
	f       *os.File
	seq     int
	now     func() time.Time
	diag    io.Writer
	observe func(agent.Event)
	failed  bool
}

func openEventLog(path string, now func() time.Time, diag io.Writer) (*eventLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	seq, err := countLines(path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &eventLog{f: f, seq: seq, now: now, diag: diag}, nil
}

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read event log: %w", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}

// emit appends e. A failure to write is reported on the diagnostic log and
// does not stop the state machine: a full disk must not keep a bad system
// from being rolled back.
func (l *eventLog) emit(e agent.Event) {
	l.mu.Lock()
	l.seq++
	e.Seq = l.seq
	e.Time = l.now().UTC()
	b, err := json.Marshal(e)
	if err == nil {
		b = append(b, '\n')
		_, err = l.f.Write(b)
		if err == nil && e.Type != agent.EventLog {
			err = l.f.Sync()
		}
	}
	if err != nil && !l.failed {
		l.failed = true
		fmt.Fprintf(l.diag, "tether-agent: write event log: %v\n", err)
	}
	observe := l.observe
	l.mu.Unlock()
	if observe != nil {
		observe(e)
	}
}

func (l *eventLog) close() error { return l.f.Close() }

// lineWriter turns a command's output into `log` events, one per line.
type lineWriter struct {
	log    *eventLog
	stream string
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := indexNewline(w.buf)
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLogLine {
		w.line(w.buf)
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func indexNewline(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

func (w *lineWriter) line(b []byte) {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	s := string(b)
	if len(s) > maxLogLine {
		s = s[:maxLogLine] + " …(cut)"
	}
	w.log.emit(agent.Event{Type: agent.EventLog, Stream: w.stream, Line: s})
}

// flush emits a last line that had no newline.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.line(w.buf)
		w.buf = nil
	}
}
