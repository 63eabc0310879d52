package deploy

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tetherdeploy/tether/pkg/remote"
)

const defaultHealthTimeout = 10 * time.Second

// checkHealth runs the node's health checks before it is confirmed: command
// checks on the node over the fresh connection, HTTP checks from the
// deployer. A failing check withholds the confirmation, so the node rolls
// back by itself.
func (n *nodeRun) checkHealth(ctx context.Context, c *remote.Client) error {
	for _, h := range n.node.Health {
		timeout := h.Timeout
		if timeout == 0 {
			timeout = defaultHealthTimeout
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		err := n.runCheck(hctx, c, h.HTTP, h.ExpectStatus, h.Command)
		cancel()
		name := h.Name
		if name == "" {
			name = h.HTTP
			if name == "" {
				name = remote.Quote(h.Command)
			}
		}
		if err != nil {
			return fmt.Errorf("health check %s: %w", name, err)
		}
		n.emit(PhaseConfirm, "health check "+name+" passed")
	}
	return nil
}

func (n *nodeRun) runCheck(ctx context.Context, c *remote.Client, url string, expect int, argv []string) error {
	if len(argv) > 0 {
		_, err := c.Output(ctx, argv...)
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := n.e.httpClient().Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if expect == 0 {
		expect = http.StatusOK
	}
	if resp.StatusCode != expect {
		return fmt.Errorf("status %d, want %d", resp.StatusCode, expect)
	}
	return nil
}
