package github

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
)

// maxHeldLines bounds what one node's log keeps until the end of the run;
// older lines are dropped and counted.
const maxHeldLines = 5000

// Progress carries an operation's output into the job log. Lines written
// to it directly appear at once; lines written to a node's writer are held
// and printed at the end of the run as one collapsible group per node,
// because the nodes run in parallel and a log group cannot interleave.
//
// Everything written here comes from nodes and builds, so it reaches the
// job log only inside stop-commands blocks (see jobLog): a node cannot add
// masks, annotations or outputs to the run.
//
// Every method is safe from any goroutine and on a nil *Progress (which
// discards everything), so the operations need no special case when called
// outside the Action.
type Progress struct {
	mu      sync.Mutex
	log     *jobLog
	partial []byte
	nodes   map[string]*nodeLog
	order   []string

	onSelected func(nodes []string)
	once       sync.Once
}

func newProgress(log *jobLog, onSelected func([]string)) *Progress {
	return &Progress{log: log, nodes: map[string]*nodeLog{}, onSelected: onSelected}
}

// Write prints whole lines at once; a trailing partial line waits for its
// end (or the end of the run).
func (p *Progress) Write(b []byte) (int, error) {
	if p == nil {
		return len(b), nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	var lines []string
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		lines = append(lines, strings.TrimSuffix(string(p.partial[:i]), "\r"))
		p.partial = p.partial[i+1:]
	}
	p.printLines(lines)
	return len(b), nil
}

// Printf prints one line of progress.
func (p *Progress) Printf(format string, args ...any) {
	if p == nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	_, _ = p.Write([]byte(msg))
}

// Node returns the writer for one node's log, held until the end of the
// run and then printed in that node's group.
func (p *Progress) Node(name string) io.Writer {
	if p == nil {
		return io.Discard
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.node(name)
}

func (p *Progress) node(name string) *nodeLog {
	n, ok := p.nodes[name]
	if !ok {
		n = &nodeLog{p: p}
		p.nodes[name] = n
		p.order = append(p.order, name)
	}
	return n
}

// Selected tells the Action which nodes the run will touch, once they are
// known and before any of them changes: it creates their deployments (in
// progress) then. Later calls are ignored. It returns when the reporting
// is done or has given up, within the API timeouts.
func (p *Progress) Selected(nodes []string) {
	if p == nil || p.onSelected == nil {
		return
	}
	p.once.Do(func() { p.onSelected(append([]string(nil), nodes...)) })
}

// printLines writes untrusted lines to the log; p.mu is held.
func (p *Progress) printLines(lines []string) {
	p.log.untrusted(lines...)
}

// finish prints a pending partial line.
func (p *Progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.partial) > 0 {
		p.printLines([]string{string(p.partial)})
		p.partial = nil
	}
}

// takeNode returns and forgets a node's held lines, with the count of
// lines dropped to stay within maxHeldLines.
func (p *Progress) takeNode(name string) (lines []string, dropped int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nodes[name]
	if !ok {
		return nil, 0, false
	}
	delete(p.nodes, name)
	if len(n.partial) > 0 {
		n.add(string(n.partial))
	}
	return n.lines, n.dropped, true
}

// remaining lists the nodes with held lines not yet taken, in the order
// they first wrote.
func (p *Progress) remaining() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, name := range p.order {
		if _, ok := p.nodes[name]; ok {
			out = append(out, name)
		}
	}
	return out
}

type nodeLog struct {
	p       *Progress
	partial []byte
	lines   []string
	dropped int
}

func (n *nodeLog) Write(b []byte) (int, error) {
	n.p.mu.Lock()
	defer n.p.mu.Unlock()
	n.partial = append(n.partial, b...)
	for {
		i := bytes.IndexByte(n.partial, '\n')
		if i < 0 {
			break
		}
		n.add(strings.TrimSuffix(string(n.partial[:i]), "\r"))
		n.partial = n.partial[i+1:]
	}
	return len(b), nil
}

func (n *nodeLog) add(line string) {
	if len(n.lines) >= maxHeldLines {
		// Keep the end of the log, where failures are explained.
		drop := len(n.lines) / 2
		n.lines = append(n.lines[:0], n.lines[drop:]...)
		n.dropped += drop
	}
	n.lines = append(n.lines, line)
}
