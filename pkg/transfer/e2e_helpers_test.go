package transfer_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// world is a started home fleet (runner → tunnel → frame1 → rpi, and web
// direct) with the runner's own store and the deployer's SSH identity.
type world struct {
	fleet  *testhost.Fleet
	local  *nix.Runner // the runner's store
	auth   []ssh.AuthMethod
	keys   *remote.HostKeys
	tunnel remote.Hop // frame1, dialled through the relay
}

// startWorld starts the sandbox hosts, or skips loudly where they cannot
// run (fails under TETHER_E2E=require), and returns them with the test's
// context, bounded by timeout.
func startWorld(t *testing.T, timeout time.Duration) (*world, context.Context) {
	t.Helper()
	testenv.NeedNix(t)
	fl := testhost.StartT(t, testhost.Options{Topology: testhost.Home})
	for _, name := range []string{fixture.Frame1, fixture.RPi, fixture.Web} {
		if fl.Host(name) == nil {
			t.Fatalf("home topology has no %s: %v", name, fl.Names())
		}
	}
	if fl.Relay == nil || fl.Host(fixture.RPi).Via != fixture.Frame1 {
		t.Fatalf("home topology without the tunnel to frame1 and rpi behind it")
	}
	auth, err := remote.LoadAuth(remote.AuthSources{KeyFiles: []string{fl.ClientKeyPath}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	keys := remote.NewHostKeys()
	if err := keys.AddKnownHosts(fl.KnownHosts(), "testhost"); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(fl.Relay.Addr())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return &world{
		fleet:  fl,
		local:  &nix.Runner{Exec: nix.Local{Env: fixture.NixEnv(os.Environ())}},
		auth:   auth.Methods(),
		keys:   keys,
		tunnel: remote.Hop{Name: fixture.Frame1, Host: host, Port: p},
	}, testenv.Context(t, timeout)
}

// dialer is how the deployer connects: pinned keys, the fleet's key, and
// keepalives short enough that a cut link fails within seconds.
func (w *world) dialer(t *testing.T) *remote.Dialer {
	return &remote.Dialer{
		Auth:              w.auth,
		HostKeys:          w.keys,
		DefaultUser:       "root",
		DialTimeout:       20 * time.Second,
		KeepaliveInterval: time.Second,
		KeepaliveMax:      3,
		Logf:              t.Logf,
	}
}

// target is how the deployer reaches a host: web directly, frame1 through
// the tunnel, rpi by jumping through frame1.
func (w *world) target(name string) remote.Target {
	h := w.fleet.Host(name)
	switch name {
	case fixture.Frame1:
		return remote.Target{Name: name, Host: w.tunnel.Host, Port: w.tunnel.Port}
	case fixture.RPi:
		return remote.Target{Name: name, Host: h.IP.String(), Jumps: []remote.Hop{w.tunnel}}
	default:
		return remote.Target{Name: name, Host: h.IP.String()}
	}
}

func (w *world) dial(t *testing.T, ctx context.Context, name string) *remote.Client {
	t.Helper()
	c, err := w.dialer(t).Dial(ctx, w.target(name))
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// buildSystems builds toplevels of the fixture fleet with real nix on the
// runner, keyed "<host>/<variant>", rooted until the test ends.
func (w *world) buildSystems(t *testing.T, ctx context.Context, want ...[2]string) map[string]string {
	t.Helper()
	ref := testenv.FixtureFlake(t)
	out := map[string]string{}
	for _, hv := range want {
		out[hv[0]+"/"+hv[1]] = w.build(t, ctx, ref+"#"+fixture.VariantAttr(hv[0], hv[1]))
	}
	return out
}

// build builds one installable, roots it for the test's life and returns
// its output path.
func (w *world) build(t *testing.T, ctx context.Context, installable string) string {
	t.Helper()
	res, err := w.local.Build(ctx, []string{installable})
	if err != nil {
		t.Fatalf("build %s: %v", installable, err)
	}
	if len(res) != 1 || res[0].Outputs["out"] == "" {
		t.Fatalf("build %s: got %+v, want one output", installable, res)
	}
	if _, err := w.local.Realise(ctx, []string{res[0].DrvPath}, t.TempDir()); err != nil {
		t.Fatalf("root %s: %v", installable, err)
	}
	return res[0].Outputs["out"]
}

// bulkFlake builds blobs of zeros (different per blob, so each is its own
// store path) and one path referring to them all: a closure big enough to
// still be in flight when a slowed tunnel is cut.
const bulkFlake = `{
  outputs = { self }:
    let
      bb = "${builtins.path { path = ./bb; name = "busybox-static"; }}/busybox";
      mk = name: script: derivation {
        inherit name;
        system = "x86_64-linux";
        builder = bb;
        args = [ "sh" "-c" ("set -eu\n" + script) ];
      };
      tag = "%s";
      blob = i: mk "transfer-blob-${tag}-${toString i}" ''
        { echo "blob ${tag} ${toString i}"; head -c %d /dev/zero; } > "$out"
      '';
      blobs = builtins.genList (i: blob (i + 1)) %d;
    in {
      bulk = mk "transfer-bulk-${tag}" ''
        echo "${toString blobs}" > "$out"
      '';
    };
}
`

// buildBulk builds a bulk closure: n blobs of size bytes under one root,
// all named after tag (a plain word), so each tag is a closure of its own.
func (w *world) buildBulk(t *testing.T, ctx context.Context, tag string, n, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bulk")
	if err := fixture.PutBusybox(filepath.Join(dir, "bb")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), fmt.Appendf(nil, bulkFlake, tag, size, n), 0o644); err != nil {
		t.Fatal(err)
	}
	return w.build(t, ctx, fixture.FlakeRef(dir)+"#bulk")
}

// requisites is the closure of roots in the runner's store, as nix itself
// lists it (not through the code under test), with NAR sizes and
// references.
func requisites(t *testing.T, ctx context.Context, roots ...string) map[string]nix.PathInfo {
	t.Helper()
	paths := strings.Fields(string(runLocal(t, ctx, append([]string{"nix-store", "--query", "--requisites"}, roots...)...)))
	infos, err := nix.ParseDumpDB(runLocal(t, ctx, append([]string{"nix-store", "--dump-db"}, paths...)...))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]nix.PathInfo{}
	for _, in := range infos {
		out[in.Path] = in
	}
	if len(out) != len(paths) {
		t.Fatalf("closure of %v: %d paths but %d records", roots, len(paths), len(out))
	}
	return out
}

func runLocal(t *testing.T, ctx context.Context, argv ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = fixture.NixEnv(os.Environ())
	return testenv.Output(t, cmd)
}

func sortedPaths(m map[string]nix.PathInfo) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func narSize(m map[string]nix.PathInfo, paths []string) int64 {
	var n int64
	for _, p := range paths {
		n += m[p].NarSize
	}
	return n
}

// validity splits paths into those valid and those invalid in the host's
// store, asking the host's own nix-store inside the host.
func validity(t *testing.T, ctx context.Context, h *testhost.Host, paths []string) (valid, invalid []string) {
	t.Helper()
	out, err := h.Exec(ctx, append([]string{"nix-store", "--check-validity", "--print-invalid"}, paths...)...)
	if err != nil {
		t.Fatalf("check validity on %s: %v", h.Name, err)
	}
	bad := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		bad[p] = true
	}
	for _, p := range paths {
		if bad[p] {
			invalid = append(invalid, p)
		} else {
			valid = append(valid, p)
		}
	}
	return valid, invalid
}

// requireValid checks on the host itself that every path is valid and its
// contents match the hash registered for it.
func requireValid(t *testing.T, ctx context.Context, h *testhost.Host, paths []string) {
	t.Helper()
	if _, err := h.Exec(ctx, append([]string{"nix-store", "--check-validity"}, paths...)...); err != nil {
		t.Fatalf("paths not valid on %s: %v", h.Name, err)
	}
	verifyPaths(t, ctx, h, paths)
}

// verifyPaths re-hashes paths on the host: a path registered valid with
// contents that do not match is what a torn copy would leave.
func verifyPaths(t *testing.T, ctx context.Context, h *testhost.Host, paths []string) {
	t.Helper()
	if len(paths) == 0 {
		return
	}
	if _, err := h.Exec(ctx, append([]string{"nix-store", "--verify-path"}, paths...)...); err != nil {
		t.Errorf("valid paths on %s do not match their registered hashes: %v", h.Name, err)
	}
}

// sshdAccepted counts logins the host's sshd let in so far.
func sshdAccepted(t *testing.T, ctx context.Context, h *testhost.Host) int {
	t.Helper()
	log, err := h.ReadFile(ctx, "/run/testhost/sshd.log")
	if err != nil {
		t.Fatalf("read sshd log of %s: %v", h.Name, err)
	}
	return strings.Count(string(log), "Accepted publickey")
}

// running lists the commands (by name) running inside the host.
func running(t *testing.T, h *testhost.Host, name string) []int {
	t.Helper()
	pids, err := h.Pids()
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, pid := range pids {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(comm)) == name {
			out = append(out, pid)
		}
	}
	return out
}
