package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
)

// TestReleaseArchives builds the release twice and compares the bytes,
// checks what a user unpacks, and deploys with the linux/amd64 archive's
// tether on a PATH with no Go: the agents it carries are all it needs.
func TestReleaseArchives(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{timeout: 20 * time.Minute}) // first: where there can be none, the test skips before building
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	const version = "v0.99.1"
	tmp := t.TempDir()
	outs := []string{filepath.Join(tmp, "one"), filepath.Join(tmp, "two")}
	for _, out := range outs {
		start := time.Now()
		cmd := exec.CommandContext(ctx, "bash", "scripts/release.sh", version, out)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("scripts/release.sh: %v\n%s", err, b)
		}
		t.Logf("scripts/release.sh into %s: %v", out, time.Since(start).Round(time.Millisecond))
	}
	sums := readFile(t, filepath.Join(outs[0], "SHA256SUMS"))
	if again := readFile(t, filepath.Join(outs[1], "SHA256SUMS")); again != sums {
		t.Errorf("two builds of the same tree differ:\n%s\n%s", sums, again)
	}

	// SHA256SUMS holds every archive, and `sha256sum -c` would pass.
	want := map[string]bool{}
	for _, p := range []string{"linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64"} {
		want["tether_"+version+"_"+p+".tar.gz"] = true
	}
	for _, line := range strings.Split(strings.TrimSpace(sums), "\n") {
		sum, name, _ := strings.Cut(line, "  ")
		if !want[name] {
			t.Errorf("SHA256SUMS lists %q", name)
			continue
		}
		delete(want, name)
		h := sha256.Sum256([]byte(readFile(t, filepath.Join(outs[0], name))))
		if hex.EncodeToString(h[:]) != sum {
			t.Errorf("%s: sha256 %x, SHA256SUMS says %s", name, h, sum)
		}
	}
	if len(want) > 0 {
		t.Errorf("SHA256SUMS lacks %v", want)
	}

	var linux string
	for _, p := range []struct {
		goos, goarch string
		check        func([]byte) error
	}{
		{"linux", "amd64", elfFor(elf.EM_X86_64)},
		{"linux", "arm64", elfFor(elf.EM_AARCH64)},
		{"darwin", "amd64", machoFor(macho.CpuAmd64)},
		{"darwin", "arm64", machoFor(macho.CpuArm64)},
	} {
		name := "tether_" + version + "_" + p.goos + "_" + p.goarch
		bin := checkArchive(t, filepath.Join(outs[0], name+".tar.gz"), name)
		if err := p.check(bin); err != nil {
			t.Errorf("%s: tether: %v", name, err)
		}
		if p.goos == "linux" && p.goarch == "amd64" {
			linux = filepath.Join(tmp, "unpacked", "tether")
			os.MkdirAll(filepath.Dir(linux), 0o755)
			if err := os.WriteFile(linux, bin, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out, err := exec.CommandContext(ctx, linux, "version").CombinedOutput(); err != nil || !strings.Contains(string(out), "tether "+version+" ") {
		t.Errorf("tether version of the release: %s (%v), want %s", out, err, version)
	}

	cache := filepath.Join(tmp, "cache")
	s.env = append(TetherEnv(os.Environ()), "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME="+tmp, "XDG_CACHE_HOME="+cache)
	s.tetherBin, s.agentsDir = linux, ""
	s.deployTwice(ctx, "from a release archive", "", filepath.Join(cache, "tether", "agents", "embedded"))
	for _, h := range fixture.Hosts() {
		s.wantRunning(ctx, h, fixture.V1)
	}
}

// checkArchive checks that a release archive holds name/ with tether and
// README.md, owned by root with the same fixed time and no write bits for
// others, and returns the tether binary.
func checkArchive(t *testing.T, path, name string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("%s: gzip header keeps name %q and time %v", path, zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var names []string
	var bin []byte
	var mtime time.Time
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.Mode&0o022 != 0 {
			t.Errorf("%s: %s owned by %d:%d (%q:%q), mode %o; want 0:0 by number, not writable by others", path, h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.Mode)
		}
		if mtime.IsZero() {
			mtime = h.ModTime
		} else if !h.ModTime.Equal(mtime) {
			t.Errorf("%s: %s has time %v, the others %v", path, h.Name, h.ModTime, mtime)
		}
		if h.Name == name+"/tether" {
			if bin, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := strings.Join(names, " ")
	if want := name + "/ " + name + "/README.md " + name + "/tether"; got != want {
		t.Errorf("%s holds %s, want %s", path, got, want)
	}
	return bin
}

func elfFor(m elf.Machine) func([]byte) error {
	return builtFor(elf.NewFile, func(f *elf.File) elf.Machine { return f.Machine }, m)
}

func machoFor(c macho.Cpu) func([]byte) error {
	return builtFor(macho.NewFile, func(f *macho.File) macho.Cpu { return f.Cpu }, c)
}

// builtFor checks that a binary is an executable open can read, built for
// want as arch reads it from the header.
func builtFor[F any, A interface {
	comparable
	String() string
}](open func(io.ReaderAt) (F, error), arch func(F) A, want A) func([]byte) error {
	return func(b []byte) error {
		f, err := open(bytes.NewReader(b))
		if err != nil {
			return err
		}
		if got := arch(f); got != want {
			return &archError{got.String(), want.String()}
		}
		return nil
	}
}

type archError struct{ got, want string }

func (e *archError) Error() string { return "built for " + e.got + ", want " + e.want }

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
