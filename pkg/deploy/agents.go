package deploy

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// AgentSource finds the tether-agent binary for a target architecture.
type AgentSource interface {
	// Agent returns the local path of the agent for GOARCH goarch and the
	// hex SHA-256 of its content.
	Agent(goarch string) (path, sum string, err error)
}

// AgentDir finds agents named tether-agent-linux-<arch> in a directory, as
// scripts/build-agents.sh lays them out.
type AgentDir struct {
	Dir string

	mu   sync.Mutex
	sums map[string]string
}

// Agent implements AgentSource.
func (a *AgentDir) Agent(goarch string) (string, string, error) {
	p := filepath.Join(a.Dir, agent.AgentFileName(goarch))
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.sums[p]; ok {
		return p, s, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return "", "", fmt.Errorf("no tether-agent for linux/%s in %s (build it with scripts/build-agents.sh): %w", goarch, a.Dir, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", "", fmt.Errorf("read agent %s: %w", p, err)
	}
	s := hex.EncodeToString(h.Sum(nil))
	if a.sums == nil {
		a.sums = map[string]string{}
	}
	a.sums[p] = s
	return p, s, nil
}

// installAgent makes sure the node has the agent for its architecture under
// its state dir and returns the remote path. The file name carries the
// content hash, so an agent is uploaded once per version, and the hash is
// checked on the node before it is trusted.
func installAgent(ctx context.Context, c *remote.Client, src AgentSource, stateDir string) (string, error) {
	out, err := c.Output(ctx, "uname", "-m")
	if err != nil {
		return "", fmt.Errorf("detect architecture: %w", err)
	}
	machine := strings.TrimSpace(string(out))
	goarch, err := agent.GOARCH(machine)
	if err != nil {
		return "", err
	}
	local, sum, err := src.Agent(goarch)
	if err != nil {
		return "", err
	}
	dst := agent.AgentPath(stateDir, sum)
	if remoteSum(ctx, c, dst) == sum {
		return dst, nil
	}
	if _, err := c.Output(ctx, "mkdir", "-p", "-m", "700", stateDir); err != nil {
		return "", fmt.Errorf("create %s: %w", stateDir, err)
	}
	if err := uploadAgent(ctx, c, local, sum, dst); err != nil {
		return "", err
	}
	if got := remoteSum(ctx, c, dst); got != sum {
		return "", fmt.Errorf("uploaded agent %s has sha256 %q, want %s", dst, got, sum)
	}
	return dst, nil
}

// uploadAgent sends the agent gzip-compressed when the node has gzip (it
// halves the one upload a new node or agent version costs, which on a home
// uplink is most of a first deploy's overhead), else as it is. The caller
// checks the hash of what arrived either way.
func uploadAgent(ctx context.Context, c *remote.Client, local, sum, dst string) error {
	p := payloadFor(local, sum)
	if p.err != nil {
		return p.err
	}
	tmp := dst + ".upload"
	script := `umask 077; gzip -dc > "$1" && chmod 755 "$1" && mv -f "$1" "$2"`
	err := c.Run(ctx, remote.Cmd{Argv: []string{"sh", "-c", script, "sh", tmp, dst}, Stdin: bytes.NewReader(p.gz)})
	if err == nil {
		return nil
	}
	c.Output(ctx, "rm", "-f", tmp)
	f, err := os.Open(local)
	if err != nil {
		return fmt.Errorf("read agent: %w", err)
	}
	defer f.Close()
	if err := c.Upload(ctx, f, dst, 0o755); err != nil {
		return fmt.Errorf("upload agent: %w", err)
	}
	return nil
}

// agentPayload is an agent gzipped, compressed once per content however
// many nodes get it: compressing costs about as much CPU as the rest of a
// node's deploy.
type agentPayload struct {
	once sync.Once
	gz   []byte
	err  error
}

// payloads holds an agentPayload per content hash.
var payloads sync.Map

func payloadFor(local, sum string) *agentPayload {
	v, _ := payloads.LoadOrStore(sum, &agentPayload{})
	p := v.(*agentPayload)
	p.once.Do(func() {
		data, err := os.ReadFile(local)
		if err != nil {
			p.err = fmt.Errorf("read agent: %w", err)
			return
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz) // the best level saves 0.3% for 3× the CPU
		zw.Write(data)
		zw.Close()
		p.gz = gz.Bytes()
	})
	return p
}

// remoteSum returns the hex SHA-256 of a file on the node, "" when it
// cannot be read.
func remoteSum(ctx context.Context, c *remote.Client, path string) string {
	out, err := c.Output(ctx, "sha256sum", path)
	if err != nil {
		return ""
	}
	f := bytes.Fields(out)
	if len(f) == 0 {
		return ""
	}
	return string(f[0])
}
