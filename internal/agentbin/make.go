package agentbin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// embedded makes agents from those a release build carries: writing them
// to the cache gives deploy.AgentSource the file it wants.
type embedded struct{ fsys fs.FS }

func (e embedded) want(goarch string) (string, error) {
	b, err := fs.ReadFile(e.fsys, agent.AgentFileName(goarch))
	if err != nil {
		return "", fmt.Errorf("this tether carries no agent for linux/%s: %w", goarch, err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

func (embedded) remake() bool { return false }

func (e embedded) make(_ context.Context, goarch, path string, _ bool) error {
	b, err := fs.ReadFile(e.fsys, agent.AgentFileName(goarch))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
	if err != nil {
		return fmt.Errorf("write agent for linux/%s: %w", goarch, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write agent for linux/%s: %w", goarch, err)
	}
	return f.Close()
}

// builder builds agents from the module's own source with the local go
// command, the way scripts/build-agents.sh does.
//
// A tether installed with `go install …@version` names its module, version
// and sum in its build information: the source is that module, fetched
// (or found) by the go command and checked against the sum, and the
// agents are cached per version. A tether built in a working tree has no
// sum; its source is the tree the compiler read, found through the path
// the compiler recorded, and the agents are rebuilt on every run and
// compared (the tree may have changed; Go's build cache makes it cheap).
type builder struct {
	goCmd string   // "" when there is none
	env   []string // what the go command gets of the user's (goEnv)
	log   io.Writer
	// scratch is a directory outside any Go module, where the go command
	// runs when no module is wanted (the cache's own).
	scratch string

	module, version, sum string // a released module; sum is "" for a working tree
	dir                  string // the working tree

	once      sync.Once
	srcDir    string
	goVersion string
	srcErr    error
}

// newBuilder works out where this tether's source is and names the cache
// for its agents, without running anything.
func newBuilder(getenv func(string) string, b binary, log io.Writer) (*builder, string, error) {
	bi := b.build
	if bi == nil || bi.Main.Path == "" {
		return nil, "", errors.New("it carries no build information naming its source")
	}
	bld := &builder{goCmd: lookPath(getenv("PATH"), "go"), env: goEnv(getenv), log: log, module: bi.Main.Path}
	if bi.Main.Sum != "" {
		bld.version, bld.sum = bi.Main.Version, bi.Main.Sum
		h := sha256.Sum256([]byte(bld.module + "@" + bld.version + " " + bld.sum))
		return bld, safeName(bld.version) + "-" + hex.EncodeToString(h[:6]), nil
	}
	dir, err := workingTree(b.sourceFile, bld.module)
	if err != nil {
		return nil, "", err
	}
	if bld.goCmd == "" {
		return nil, "", errors.New("there is no go command on PATH")
	}
	bld.dir = dir
	h := sha256.Sum256([]byte(dir))
	return bld, "devel-" + hex.EncodeToString(h[:6]), nil
}

// workingTree finds the module root above this package's source file as
// the compiler recorded it.
func workingTree(sourceFile, module string) (string, error) {
	if !filepath.IsAbs(sourceFile) {
		return "", errors.New("it was built with -trimpath from a working tree, so its source cannot be found")
	}
	// sourceFile is <root>/internal/agentbin/<file>.go.
	root := filepath.Dir(filepath.Dir(filepath.Dir(sourceFile)))
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("its source %s is gone: %w", root, err)
	}
	if got := modulePath(mod); got != module {
		return "", fmt.Errorf("%s/go.mod is module %q, not %q", root, got, module)
	}
	return root, nil
}

func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

func (b *builder) want(string) (string, error) { return "", nil }

func (b *builder) remake() bool { return b.sum == "" }

func (b *builder) make(ctx context.Context, goarch, path string, first bool) error {
	if b.goCmd == "" {
		return noAgents(fmt.Errorf("no agent for linux/%s is cached and there is no go command on PATH", goarch))
	}
	b.once.Do(func() { b.srcDir, b.goVersion, b.srcErr = b.source(ctx) })
	if b.srcErr != nil {
		return noAgents(b.srcErr)
	}
	from := b.srcDir
	if b.sum != "" {
		from = b.module + "@" + b.version
	}
	if first {
		fmt.Fprintf(b.log, "building the tether agent for linux/%s with %s (first use) from %s …\n", goarch, b.goVersion, from)
	}
	ldflags := "-s -w"
	if b.sum != "" {
		ldflags += " -X " + b.module + "/internal/version.Version=" + b.version
	}
	_, err := b.goRun(ctx, b.srcDir, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + goarch,
		"GOARM=6", "GOAMD64=v1", "GOARM64=v8.0"},
		"build", "-trimpath", "-ldflags", ldflags, "-o", path, "./cmd/tether-agent")
	if err != nil {
		return fmt.Errorf("build the tether agent for linux/%s from %s: %w", goarch, from, err)
	}
	return nil
}

// source returns the directory to build in and the go version that
// builds there (go.mod may select another toolchain than the one on PATH).
func (b *builder) source(ctx context.Context) (string, string, error) {
	dir := b.dir
	if b.sum != "" {
		var err error
		if dir, err = b.download(ctx); err != nil {
			return "", "", err
		}
	}
	out, err := b.goRun(ctx, dir, nil, "env", "GOVERSION")
	if err != nil {
		return "", "", err
	}
	return dir, strings.TrimSpace(string(out)), nil
}

// download asks the go command for the released module's source (from its
// module cache, fetching it if needed) and refuses source whose sum is
// not the one this tether was built from.
func (b *builder) download(ctx context.Context) (string, error) {
	mv := b.module + "@" + b.version
	out, err := b.goRun(ctx, b.scratch, nil, "mod", "download", "-json", mv)
	var m struct{ Dir, Sum, Error string }
	if jerr := json.Unmarshal(out, &m); jerr == nil && m.Error != "" {
		return "", fmt.Errorf("fetch the source of %s: %s", mv, m.Error)
	}
	if err != nil {
		return "", fmt.Errorf("fetch the source of %s: %w", mv, err)
	}
	if m.Sum != b.sum {
		return "", fmt.Errorf("the source of %s has sum %s, but this tether was built from %s", mv, m.Sum, b.sum)
	}
	if m.Dir == "" {
		return "", fmt.Errorf("fetch the source of %s: the go command named no directory", mv)
	}
	return m.Dir, nil
}

// goEnvNames are the variables the go command needs to find its
// toolchain, its caches, the module proxy and the network. Nothing else of
// tether's environment reaches it: in CI that holds the deploy key and
// tokens, and what builds the agents needs none of them.
var goEnvNames = []string{
	"PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "LANG", "TZ",
	"GOROOT", "GOPATH", "GOENV", "GOCACHE", "GOCACHEPROG", "GOMODCACHE", "GOTMPDIR", "GOTOOLCHAIN",
	"GOPROXY", "GOPRIVATE", "GONOPROXY", "GONOSUMDB", "GOSUMDB", "GOINSECURE", "GOAUTH", "GOVCS",
	"XDG_CACHE_HOME", "XDG_CONFIG_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
}

// goEnv is the go command's environment: goEnvNames, as getenv has them.
func goEnv(getenv func(string) string) []string {
	env := []string{} // never nil: to os/exec that means this process's
	for _, k := range goEnvNames {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// goRun runs the go command in dir with its environment (goEnv) and
// extra, and returns its stdout; a failure keeps the argv and the last
// lines of stderr.
func (b *builder) goRun(ctx context.Context, dir string, extra []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, b.goCmd, args...)
	cmd.Dir = dir
	// A go.work or GOFLAGS of the user's must not change what is built.
	cmd.Env = withEnv(b.env, append([]string{"GOWORK=off", "GOFLAGS=-mod=readonly"}, extra...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w%s", b.goCmd, strings.Join(args, " "), err, indentTail(stderr.String(), 20))
	}
	return stdout.Bytes(), nil
}

// indentTail returns the last n lines of s, each on its own indented line.
func indentTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return "\n    " + strings.Join(lines, "\n    ")
}

// withEnv returns env with the KEY=VALUE pairs of set replacing any of the
// same keys.
func withEnv(env []string, set ...string) []string {
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !hasKey(set, k) {
			out = append(out, kv)
		}
	}
	return append(out, set...)
}

func hasKey(kvs []string, key string) bool {
	for _, kv := range kvs {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// lookPath finds an executable named name on path, "" when none.
func lookPath(path, name string) string {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // a relative PATH entry would run whatever the working directory holds
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// safeName keeps the characters of a version that are safe in a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '-', r == '+':
			return r
		}
		return '_'
	}, s)
}
