package agentbin

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

const module = "github.com/tetherdeploy/tether"

func released(version, sum string) *debug.BuildInfo {
	return &debug.BuildInfo{Path: module + "/cmd/tether", Main: debug.Module{Path: module, Version: version, Sum: sum}}
}

func workingTreeBuild() *debug.BuildInfo {
	return &debug.BuildInfo{Path: module + "/cmd/tether", Main: debug.Module{Path: module, Version: "(devel)"}}
}

func TestFindOrder(t *testing.T) {
	emb := fstest.MapFS{"tether-agent-linux-amd64": {Data: []byte("embedded")}}
	exeDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(exeDir, "agents"), 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(exeDir, "tether")
	base := Options{CacheDir: t.TempDir(), Getenv: envOf("PATH=/nonexistent")}

	withDir := base
	withDir.Dir = "/explicit"
	src, err := find(context.Background(), withDir, binary{exe: exe, embedded: emb, build: released("v1.0.0", "h1:x")})
	if d, ok := src.(*deploy.AgentDir); err != nil || !ok || d.Dir != "/explicit" {
		t.Errorf("an explicit directory must win: got %#v, %v", src, err)
	}

	src, err = find(context.Background(), base, binary{exe: exe, embedded: emb, build: released("v1.0.0", "h1:x")})
	if s, ok := src.(*Source); err != nil || !ok || filepath.Base(s.Dir()) != "embedded" {
		t.Errorf("a release build's own agents come before agents/ beside it: got %#v, %v", src, err)
	}

	src, err = find(context.Background(), base, binary{exe: exe, build: released("v1.0.0", "h1:x")})
	if d, ok := src.(*deploy.AgentDir); err != nil || !ok || d.Dir != filepath.Join(exeDir, "agents") {
		t.Errorf("agents/ beside the binary: got %#v, %v", src, err)
	}
}

// TestFindNothingToDo is the newcomer with a tether that carries no
// agents and no Go to build them: one error that says what to do.
func TestFindNothingToDo(t *testing.T) {
	cases := map[string]binary{
		"no go":                {build: released("v1.0.0", "h1:x")},
		"trimmed working tree": {build: workingTreeBuild(), sourceFile: module + "/internal/agentbin/agentbin.go"},
		"no build info":        {},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			o := Options{CacheDir: t.TempDir(), Getenv: envOf("PATH=" + t.TempDir())}
			src, err := find(context.Background(), o, b)
			if err == nil {
				t.Fatalf("found %#v", src)
			}
			for _, want := range []string{"cannot find the tether agents", "install Go", "release archive", "--agents-dir"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q: %v", want, err)
				}
			}
		})
	}
}

// TestFindCachedWithoutGo: agents built once keep working after Go is
// gone; an architecture never built says why it cannot be.
func TestFindCachedWithoutGo(t *testing.T) {
	cache := t.TempDir()
	b := binary{build: released("v1.0.0", "h1:x")}
	_, key, err := newBuilder(envOf(), b, nil)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := openSource(t, cache, key, &fakeMaker{content: map[string]string{"amd64": "built before"}})
	agentOK(t, seed, "amd64", "built before")

	src, err := find(context.Background(), Options{CacheDir: cache, Getenv: envOf("PATH=" + t.TempDir())}, b)
	if err != nil {
		t.Fatal(err)
	}
	agentOK(t, src.(*Source), "amd64", "built before")
	if _, _, err := src.Agent("arm64"); err == nil || !strings.Contains(err.Error(), "no go command") {
		t.Errorf("arm64 never built, no Go: %v", err)
	}
}

func openSource(t *testing.T, root, key string, m maker) (*Source, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	s, err := openCache(context.Background(), Options{CacheDir: root, Log: &log}, key, m)
	if err != nil {
		t.Fatal(err)
	}
	return s, &log
}

// fakeGo writes a go command that answers `mod download -json` with
// source dir and sum, `env GOVERSION` with go1.99.0, and `build -o OUT`
// by writing its environment and arguments to OUT.
func fakeGo(t *testing.T, srcDir, sum string) string {
	t.Helper()
	bin := t.TempDir()
	script := `#!/bin/sh
case "$1 $2" in
"mod download") printf '{"Path":"%s","Dir":"` + srcDir + `","Sum":"` + sum + `"}\n' "$4"; exit 0 ;;
"env GOVERSION") echo go1.99.0; exit 0 ;;
esac
out=
prev=
for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done
printf 'pwd=%s GOOS=%s GOARCH=%s GOARM=%s CGO_ENABLED=%s GOWORK=%s args=%s\n' "$(pwd)" "$GOOS" "$GOARCH" "$GOARM" "$CGO_ENABLED" "$GOWORK" "$*" > "$out"
printf 'GOPROXY=%s\n' "$GOPROXY" >> "$out"
export -p >> "$out"
`
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestBuildFromReleasedModule(t *testing.T) {
	src := t.TempDir()
	path := fakeGo(t, src, "h1:good")
	var log bytes.Buffer
	o := Options{CacheDir: t.TempDir(), Getenv: envOf("PATH="+path, "GOWORK=/home/u/go.work", "GOPROXY=file:///proxy",
		// What CI hands tether; none of it may reach the go command.
		"TETHER_SSH_KEY=-----BEGIN OPENSSH PRIVATE KEY-----", "GITHUB_TOKEN=ghs_secret", "INPUT_SSH_PRIVATE_KEY=key"), Log: &log}
	s, err := find(context.Background(), o, binary{build: released("v1.2.3", "h1:good")})
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := s.Agent("arm")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	got := string(b)
	for _, want := range []string{"pwd=" + src + " ", "GOOS=linux", "GOARCH=arm", "GOARM=6", "CGO_ENABLED=0", "GOWORK=off",
		"build -trimpath -ldflags -s -w -X " + module + "/internal/version.Version=v1.2.3 -o", "./cmd/tether-agent"} {
		if !strings.Contains(got, want) {
			t.Errorf("the build did not run with %q:\n%s", want, got)
		}
	}
	if !strings.Contains(got, "GOPROXY=file:///proxy\n") {
		t.Errorf("the go command did not get GOPROXY:\n%s", got)
	}
	for _, secret := range []string{"PRIVATE KEY", "ghs_secret", "INPUT_SSH_PRIVATE_KEY"} {
		if strings.Contains(got, secret) {
			t.Errorf("the go command got %q from tether's environment:\n%s", secret, got)
		}
	}
	if want := "building the tether agent for linux/arm with go1.99.0 (first use) from " + module + "@v1.2.3"; !strings.Contains(log.String(), want) {
		t.Errorf("log %q does not say %q", log.String(), want)
	}
}

// TestBuildRefusesOtherSource: the module cache (or a proxy) hands out
// source whose sum is not the one this tether was built from.
func TestBuildRefusesOtherSource(t *testing.T) {
	path := fakeGo(t, t.TempDir(), "h1:someoneelse")
	o := Options{CacheDir: t.TempDir(), Getenv: envOf("PATH=" + path)}
	s, err := find(context.Background(), o, binary{build: released("v1.2.3", "h1:good")})
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := s.Agent("amd64")
	if err == nil || !strings.Contains(err.Error(), "has sum h1:someoneelse, but this tether was built from h1:good") {
		t.Fatalf("Agent = %s, %v; want the other source refused", p, err)
	}
}

// TestBuildFromWorkingTree builds a real agent from this module's tree
// with the real go command, as `go build ./cmd/tether` from a clone does.
func TestBuildFromWorkingTree(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an agent")
	}
	_, file, _, _ := runtime.Caller(0)
	cache := t.TempDir()
	o := Options{CacheDir: cache, Getenv: os.Getenv}
	b := binary{build: workingTreeBuild(), sourceFile: file}
	var log bytes.Buffer
	o.Log = &log
	src, err := find(context.Background(), o, b)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := src.Agent("amd64")
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(p)
	if err != nil {
		t.Fatalf("%s is not an ELF binary: %v", p, err)
	}
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("%s is for %v, want x86-64", p, f.Machine)
	}
	f.Close()
	if !strings.Contains(log.String(), "(first use) from "+filepath.Dir(filepath.Dir(filepath.Dir(file)))) {
		t.Errorf("log: %q", log.String())
	}

	log.Reset()
	src2, err := find(context.Background(), o, b)
	if err != nil {
		t.Fatal(err)
	}
	p2, _, err := src2.Agent("amd64")
	if err != nil || p2 != p {
		t.Errorf("second run: %s, %v; want the cached %s", p2, err, p)
	}
	if log.Len() != 0 {
		t.Errorf("second run logged %q", log.String())
	}
}

// envOf is a getenv over KEY=VALUE pairs.
func envOf(kv ...string) func(string) string {
	return func(key string) string {
		for _, e := range kv {
			if v, ok := strings.CutPrefix(e, key+"="); ok {
				return v
			}
		}
		return ""
	}
}
