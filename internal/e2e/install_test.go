package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/pkg/agent"
)

const modulePath = "github.com/tetherdeploy/tether"

// TestInstalledTetherBuildsItsAgents is a newcomer's first deploys: tether
// installed with `go install …/cmd/tether@version` (from a module proxy
// that serves this tree), then built with `go build ./cmd/tether` in a
// clone, each deploying with no agents beside it, no flag and no
// variable, from an empty cache. The first deploy builds the agent, the
// second uses the cached one, and the nodes run exactly that agent.
func TestInstalledTetherBuildsItsAgents(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{timeout: 20 * time.Minute}) // first: where there can be none, the test skips before building
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	const version = "v0.99.0"
	proxy := filepath.Join(tmp, "proxy")
	writeModuleProxy(t, root, proxy, version)

	realModCache := goEnv(t, "GOMODCACHE")
	home, cache := filepath.Join(tmp, "home"), filepath.Join(tmp, "cache")
	for _, d := range []string{home, cache} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := append(TetherEnv(os.Environ()),
		"HOME="+home, "XDG_CACHE_HOME="+cache,
		// This tree's module from the proxy directory, its dependencies
		// from this machine's module cache, nothing from the network.
		"GOPROXY=file://"+proxy+",file://"+filepath.Join(realModCache, "cache", "download"),
		"GOSUMDB=off", "GOTOOLCHAIN=local",
		"GOMODCACHE="+filepath.Join(tmp, "modcache"), "GOPATH="+filepath.Join(tmp, "gopath"),
		// Go's build cache is shared: it is the tether cache under test.
		"GOCACHE="+goEnv(t, "GOCACHE"),
	)
	t.Cleanup(func() {
		cmd := exec.Command("go", "clean", "-modcache")
		cmd.Env = env
		cmd.Run()
	})

	bin := filepath.Join(tmp, "bin")
	start := time.Now()
	goCmd(ctx, t, tmp, append(env, "GOBIN="+bin, "GOFLAGS=-trimpath"), "install", modulePath+"/cmd/tether@"+version)
	t.Logf("go install: %v", time.Since(start).Round(time.Millisecond))
	installed := filepath.Join(bin, "tether")
	if out, err := exec.CommandContext(ctx, installed, "version").CombinedOutput(); err != nil || !strings.Contains(string(out), version) {
		t.Errorf("tether version: %s (%v), want %s", out, err, version)
	}

	s.env = env
	s.agentsDir = ""

	s.tetherBin = installed
	s.deployTwice(ctx, "from the module proxy", modulePath+"@"+version, filepath.Join(cache, "tether", "agents", version+"-*"))

	// The same, built in the working tree.
	devel := filepath.Join(tmp, "devel", "tether")
	goCmd(ctx, t, root, os.Environ(), "build", "-o", devel, "./cmd/tether")
	s.tetherBin = devel
	for _, h := range fixture.Hosts() {
		s.setVariant(h, fixture.V2)
	}
	s.deployTwice(ctx, "built in the working tree", root, filepath.Join(cache, "tether", "agents", "devel-*"))
}

// deployTwice deploys the fleet twice with a tether that is given no
// agents: the first deploy builds the agent from the source named from
// (from "": it builds none, the agents are inside the binary), the second
// finds it cached (in the cache directory matching keyDir), and every
// node holds exactly the cached agent.
func (s *sandbox) deployTwice(ctx context.Context, what, from, keyDir string) {
	t := s.t
	t.Helper()
	start := time.Now()
	r := s.tether(ctx, "deploy")
	first := time.Since(start)
	if r.code != exitOK {
		t.Fatalf("first deploy of a tether %s: %s", what, r)
	}
	announce := "building the tether agent for linux/amd64"
	switch {
	case from == "" && strings.Contains(r.stderr, announce):
		t.Errorf("first deploy of a tether %s built an agent:\n%s", what, r.stderr)
	case from != "" && (!strings.Contains(r.stderr, announce) || !strings.Contains(r.stderr, "(first use) from "+from)):
		t.Errorf("first deploy of a tether %s does not say it builds the agent from %s:\n%s", what, from, r.stderr)
	}
	agents, err := filepath.Glob(filepath.Join(keyDir, agent.AgentFileName("amd64")+"-*"))
	if err != nil || len(agents) != 1 {
		t.Fatalf("after the first deploy of a tether %s, the cache %s holds %q, want one agent", what, keyDir, agents)
	}
	before := stat(t, agents...)

	start = time.Now()
	r = s.tether(ctx, "deploy")
	t.Logf("tether %s: first deploy %v, second %v", what, first.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if r.code != exitOK {
		t.Fatalf("second deploy of a tether %s: %s", what, r)
	}
	if strings.Contains(r.stderr, announce) {
		t.Errorf("second deploy of a tether %s built the agent again:\n%s", what, r.stderr)
	}
	if after := stat(t, agents...); after != before {
		t.Errorf("the cached agents changed on the second deploy:\nbefore %s\nafter  %s", before, after)
	}

	// The agent a node holds is the cached one, byte for byte.
	b, err := os.ReadFile(agents[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	uploaded := hex.EncodeToString(sum[:])
	if !strings.HasSuffix(agents[0], "-"+uploaded) {
		t.Fatalf("the cached agent %s does not have the sha256 in its name (%s)", agents[0], uploaded)
	}
	for _, h := range fixture.Hosts() {
		b, err := s.fleet.Host(h).ReadFile(ctx, agent.AgentPath(agent.StateDir(""), uploaded))
		if err != nil {
			t.Errorf("%s does not hold the cached agent %s: %v", h, uploaded, err)
			continue
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != uploaded {
			t.Errorf("%s holds an agent that differs from the cached one", h)
		}
	}
}

// stat describes files by name, size and modification time.
func stat(t *testing.T, paths ...string) string {
	t.Helper()
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %d %s; ", filepath.Base(p), fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
	}
	return b.String()
}

// writeModuleProxy serves the working tree's files (those git tracks or
// would track) as module version v of this module, in the layout of a
// file-based module proxy.
func writeModuleProxy(t *testing.T, root, proxy, v string) {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("list the module's files: %v", err)
	}
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		// Module zips hold regular files only (the go command leaves
		// symlinks out); a file deleted in the working tree is gone.
		if fi, err := os.Lstat(filepath.Join(root, name)); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(modulePath + "@" + v + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(proxy, modulePath, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"list":      []byte(v + "\n"),
		v + ".info": fmt.Appendf(nil, `{"Version":%q,"Time":"2026-01-01T00:00:00Z"}`, v),
		v + ".mod":  gomod,
		v + ".zip":  zbuf.Bytes(),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func goEnv(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, err)
	}
	return strings.TrimSpace(string(out))
}

func goCmd(ctx context.Context, t *testing.T, dir string, env []string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir, cmd.Env = dir, env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
