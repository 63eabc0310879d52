//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
	"github.com/tetherdeploy/tether/pkg/transfer"
)

// benchCompress copies a store path of real machine code (this machine's
// Go toolchain binaries) to frame1 through a home-like tunnel, with and
// without zstd on the wire, through tether's own transfer code: the
// measurement behind compressing by default on every node not marked
// fastConnection. The fixture's closures are no guide here: its payloads
// are either repetitive text or deliberately incompressible.
func benchCompress(ctx context.Context, b *bench) (*section, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %w", err)
	}
	goroot := strings.TrimSpace(string(out))
	src := pick(b, filepath.Join(goroot, "pkg", "tool", runtime.GOOS+"_"+runtime.GOARCH), filepath.Join(goroot, "bin"))
	rounds := pick(b, 2, 1)
	out, err = b.nix(ctx, "nix-store", "--add", src)
	if err != nil {
		return nil, fmt.Errorf("add %s to the store: %w", src, err)
	}
	path := strings.TrimSpace(string(out))
	b.drop = append(b.drop, path)

	s, err := b.startSandbox(ctx, testhost.Home, nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	// A deploy leaves the agent on frame1, as every real node has it.
	if _, err := s.prebuild(ctx, []string{fixture.Frame1}, fixture.V1); err != nil {
		return nil, err
	}
	if _, err := s.deploy(ctx, runOpts{}, fixture.Frame1); err != nil {
		return nil, err
	}
	const rate, latency = 2_500_000, 30 * time.Millisecond // 20 Mbit/s, 30 ms
	s.fleet.Relay.SetRate(rate)
	s.fleet.Relay.SetLatency(latency)
	defer s.fleet.Relay.SetRate(0)
	defer s.fleet.Relay.SetLatency(0)

	agentFile := filepath.Join(b.bins.AgentsDir, agent.AgentFileName(runtime.GOARCH))
	data, err := os.ReadFile(agentFile)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	agentPath := agent.AgentPath(agent.StateDir(""), hex.EncodeToString(sum[:]))

	hk := remote.NewHostKeys()
	if err := hk.AddKnownHostsFile(s.fleet.KnownHostsPath); err != nil {
		return nil, err
	}
	auth, err := remote.LoadAuth(remote.AuthSources{KeyFiles: []string{s.fleet.ClientKeyPath}})
	if err != nil {
		return nil, err
	}
	defer auth.Close()
	d := &remote.Dialer{Auth: auth.Methods(), HostKeys: hk, DefaultUser: "root"}
	host, port, _ := strings.Cut(s.fleet.Host(fixture.Frame1).SSHAddr, ":")
	var p int
	fmt.Sscan(port, &p)
	local := &nix.Runner{Exec: nix.Local{Env: b.env}}

	type result struct {
		wall       time.Duration
		sent, raw  int64
		validAfter bool
	}
	runs := map[bool][]result{}
	for round := 1; round <= rounds; round++ {
		for _, compress := range []bool{false, true} {
			b.logf("compress: round %d/%d, zstd %v", round, rounds, compress)
			if _, err := s.fleet.Host(fixture.Frame1).Exec(ctx, "nix-store", "--delete", path); err != nil {
				b.logf("compress: delete on frame1 (first round: not there yet): %v", err)
			}
			c, err := d.Dial(ctx, remote.Target{Name: "frame1", Host: host, Port: p})
			if err != nil {
				return nil, err
			}
			opts := transfer.Options{}
			if compress {
				opts.CompressedImport = agent.ImportArgv(agentPath, true)
			}
			start := time.Now()
			st, err := transfer.Copy(ctx, local, transfer.RemoteStore(c, nil), []string{path}, opts)
			wall := time.Since(start)
			c.Close()
			if err != nil {
				return nil, fmt.Errorf("copy (zstd %v): %w", compress, err)
			}
			_, verr := s.fleet.Host(fixture.Frame1).Exec(ctx, "nix-store", "--check-validity", path)
			runs[compress] = append(runs[compress], result{wall, st.SentBytes, st.StreamBytes, verr == nil})
		}
	}
	t := &table{header: []string{"copy", "export stream", "on the wire", "median wall", "valid on frame1"}}
	var walls = map[bool]time.Duration{}
	for _, compress := range []bool{false, true} {
		var ws []time.Duration
		ok := true
		for _, r := range runs[compress] {
			ws = append(ws, r.wall)
			ok = ok && r.validAfter
		}
		walls[compress] = median(ws)
		r := runs[compress][0]
		name := "plain (--compress off)"
		if compress {
			name = "zstd (--compress on, the default)"
		}
		t.add(name, bytesIEC(r.raw), bytesIEC(r.sent), secs(walls[compress]), fmt.Sprint(ok))
	}
	t.add("plain / zstd", "", "", ratio(walls[false], walls[true]), "")
	return &section{
		setup: fmt.Sprintf("One store path holding real machine code (`nix-store --add %s`), copied with tether's transfer code to frame1 through the tunnel relay "+
			"shaped to 20 Mbit/s and 30 ms one-way latency; deleted on frame1 before every copy. zstd: the deployer compresses (default level, one goroutine) "+
			"and the node's agent decompresses into nix-store --import. %d round(s), median.", src, rounds),
		tables: []*table{t},
		notes:  []string{"On a fast LAN the compressor, not the link, can become the bottleneck: nodes marked fastConnection are sent uncompressed (`--compress auto`)."},
	}, nil
}
