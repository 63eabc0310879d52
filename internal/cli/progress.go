package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

// progress renders deploy events. On a terminal it keeps one live line
// per node under the scrolling log; elsewhere (CI logs, files) it prints
// plain, prefixed lines, with copy progress at most every few seconds.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	live  bool
	order []string
	nodes map[string]*nodeLine
	drawn int // live lines currently on screen
	last  map[string]time.Time

	closers []io.Closer
}

type nodeLine struct {
	phase deploy.Phase
	msg   string
	sent  int64
	total int64
	done  bool
}

func newProgress(w io.Writer, env Env) *progress {
	p := &progress{w: w, nodes: map[string]*nodeLine{}, last: map[string]time.Time{}}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && env.Get("TERM") != "dumb" && env.Get("CI") == "" {
		p.live = true
	}
	return p
}

// Event implements deploy.Sink.
func (p *progress) Event(ev deploy.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := ev.Node
	if name == "" {
		name = "*"
	}
	n := p.nodes[name]
	if n == nil && ev.Node != "" {
		n = &nodeLine{}
		p.nodes[name] = n
		p.order = append(p.order, name)
	}
	switch {
	case ev.Output != "":
		p.logLine(fmt.Sprintf("[%s] | %s", name, ev.Output))
		return
	case ev.Copy != nil:
		n.phase, n.sent, n.total = ev.Phase, ev.Copy.Sent, ev.Copy.Total
		n.msg = fmt.Sprintf("copying %s / %s (%d/%d paths)", human(ev.Copy.Sent), human(ev.Copy.Total), ev.Copy.Paths, ev.Copy.TotalPaths)
		if !p.live {
			if time.Since(p.last[name]) < 3*time.Second && ev.Copy.Sent < ev.Copy.Total {
				return
			}
			p.last[name] = time.Now()
			p.logLine(fmt.Sprintf("[%s] %s", name, n.msg))
			return
		}
		p.redraw()
		return
	}
	line := fmt.Sprintf("[%s] %s: %s", name, ev.Phase, ev.Message)
	if ev.Node == "" {
		line = fmt.Sprintf("%s: %s", ev.Phase, ev.Message)
	}
	if n != nil {
		n.phase, n.msg = ev.Phase, ev.Message
		n.done = ev.Phase == deploy.PhaseDone
	}
	p.logLine(line)
}

// logLine prints a line above the live block.
func (p *progress) logLine(s string) {
	p.clear()
	fmt.Fprintln(p.w, s)
	p.redraw()
}

func (p *progress) clear() {
	if !p.live || p.drawn == 0 {
		return
	}
	fmt.Fprintf(p.w, "\x1b[%dA\x1b[J", p.drawn)
	p.drawn = 0
}

func (p *progress) redraw() {
	if !p.live {
		return
	}
	p.clear()
	width := 100
	if f, ok := p.w.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 20 {
			width = w
		}
	}
	for _, name := range p.order {
		n := p.nodes[name]
		if n.done {
			continue
		}
		line := fmt.Sprintf("  %-12s %-9s %s", name, n.phase, n.msg)
		if n.total > 0 && n.phase == deploy.PhaseCopy {
			line += " " + bar(n.sent, n.total, 20)
		}
		if len(line) > width-1 {
			line = line[:width-1]
		}
		fmt.Fprintln(p.w, line)
		p.drawn++
	}
}

func bar(sent, total int64, width int) string {
	filled := int(float64(width) * float64(sent) / float64(total))
	filled = min(max(filled, 0), width)
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "]"
}

// BuildLog returns a writer for nix's build output, printed as log lines.
func (p *progress) BuildLog() io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logLine("build | " + sc.Text())
			p.mu.Unlock()
		}
	}()
	p.closers = append(p.closers, pw)
	return pw
}

// Close clears the live block.
func (p *progress) Close() {
	for _, c := range p.closers {
		c.Close()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func human(n int64) string { return deploy.HumanBytes(n) }

// printSummary writes the per-node outcome table.
func printSummary(w io.Writer, rep *deploy.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tGENERATION\tCOPIED\tTIME\tDETAIL")
	for _, r := range rep.Results {
		gen := "-"
		if r.Generation > 0 {
			gen = fmt.Sprint(r.Generation)
		}
		if r.TargetGeneration > 0 {
			gen = fmt.Sprintf("%s (back to %d)", gen, r.TargetGeneration)
		}
		detail := r.Error
		if i := strings.IndexByte(detail, '\n'); i >= 0 {
			detail = detail[:i] + " …"
		}
		copied := fmt.Sprintf("%d paths, %s", r.Copied.Paths, human(r.Copied.StreamBytes))
		if r.Copied.Bytes != r.Copied.StreamBytes {
			copied += fmt.Sprintf(" (%s sent)", human(r.Copied.Bytes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fs\t%s\n", r.Node, r.Status, gen, copied, time.Duration(r.Timings.Total).Seconds(), detail)
	}
	tw.Flush()
}
