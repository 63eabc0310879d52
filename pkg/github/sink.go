package github

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// appProgress connects an operation's progress to the job log: each node's
// steps are printed as they happen and kept, with the activation's own
// output, for the node's log group; the build log goes to the log line by
// line; the selection creates the nodes' deployments.
func (p *Progress) appProgress() app.Progress {
	return app.Progress{Events: p.sink(), BuildLog: &prefixed{w: p, prefix: "build | "}, Selected: p.Selected}
}

// copyEvery is how often a node's copy progress is printed to the log.
const copyEvery = 10 * time.Second

func (p *Progress) sink() deploy.Sink {
	var mu sync.Mutex
	lastCopy := map[string]time.Time{}
	return func(ev deploy.Event) {
		switch {
		case ev.Output != "":
			fmt.Fprintf(p.Node(ev.Node), "%s\n", ev.Output)
		case ev.Copy != nil:
			mu.Lock()
			due := time.Since(lastCopy[ev.Node]) >= copyEvery || ev.Copy.Sent == ev.Copy.Total
			if due {
				lastCopy[ev.Node] = time.Now()
			}
			mu.Unlock()
			if due {
				p.Printf("[%s] copying %s / %s", ev.Node, deploy.HumanBytes(ev.Copy.Sent), deploy.HumanBytes(ev.Copy.Total))
			}
		case ev.Node == "":
			p.Printf("%s: %s", ev.Phase, ev.Message)
		default:
			p.Printf("[%s] %s: %s", ev.Node, ev.Phase, ev.Message)
			fmt.Fprintf(p.Node(ev.Node), "%s: %s\n", ev.Phase, ev.Message)
		}
	}
}

// prefixed writes each whole line to w with a prefix.
type prefixed struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixed) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
