package nix_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/nix"
)

// requireReal gates the tests that write to the real nix store.
func requireReal(t *testing.T) {
	t.Helper()
	testenv.NeedNix(t)
	testenv.NeedRoot(t, "writes to the nix store")
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func realRunner(t *testing.T) *nix.Runner {
	return &nix.Runner{Exec: nix.Local{Env: fixture.NixEnv(os.Environ())}, Log: testLog{t}}
}

// builtFleet evaluates frame1's v1 and v2 to derivations and realises them
// with GC roots, as a deploy does.
func builtFleet(t *testing.T, r *nix.Runner) (tops map[string]string, roots string) {
	t.Helper()
	ctx := testenv.Context(t, 5*time.Minute)
	ref := testenv.FixtureFlake(t)
	var drvs map[string]string
	if err := r.EvalJSON(ctx, ref+"#variants.frame1", `vs: { inherit (builtins.mapAttrs (_: v: v.drvPath) vs) v1 v2; }`, &drvs); err != nil {
		t.Fatal(err)
	}
	roots = filepath.Join(t.TempDir(), "roots")
	outs, err := r.Realise(ctx, []string{drvs["v1"], drvs["v2"]}, roots)
	if err != nil {
		t.Fatal(err)
	}
	tops = map[string]string{}
	for v, drv := range drvs {
		if len(outs[drv]) != 1 {
			t.Fatalf("outputs of %s = %v, want one", drv, outs[drv])
		}
		tops[v] = outs[drv][0]
	}
	return tops, roots
}

func TestRealVersion(t *testing.T) {
	requireReal(t)
	v, err := realRunner(t).Version(testenv.Context(t, 5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if v.Major != 2 || !strings.HasPrefix(v.Raw, "nix (") {
		t.Errorf("Version = %+v", v)
	}
	t.Logf("running against %v", v)
}

func TestRealRealiseRootsOutputs(t *testing.T) {
	requireReal(t)
	r := realRunner(t)
	tops, roots := builtFleet(t, r)
	if !strings.HasSuffix(tops["v1"], "-nixos-system-frame1-24.05.20240101.v1") || !strings.HasSuffix(tops["v2"], "-nixos-system-frame1-24.05.20240201.v2") {
		t.Errorf("realised toplevels = %v", tops)
	}
	entries, err := os.ReadDir(roots)
	if err != nil {
		t.Fatal(err)
	}
	var rooted []string
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(roots, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		rooted = append(rooted, target)
	}
	slices.Sort(rooted)
	want := []string{tops["v1"], tops["v2"]}
	slices.Sort(want)
	if d := cmp.Diff(want, rooted); d != "" {
		t.Errorf("GC roots (-want +got):\n%s", d)
	}
	missing, err := r.Missing(testenv.Context(t, 5*time.Minute), want)
	if err != nil || len(missing) != 0 {
		t.Errorf("realised outputs missing from the store: %v %v", missing, err)
	}
}

// A derivation never built before, with two outputs: Realise must build it,
// stream the log, and map and root both outputs.
func TestRealRealiseBuildsNewMultiOutputDerivation(t *testing.T) {
	requireReal(t)
	ctx := testenv.Context(t, 5*time.Minute)
	dir := t.TempDir()
	if err := fixture.PutBusybox(filepath.Join(dir, "bb")); err != nil {
		t.Fatal(err)
	}
	salt := strconv.FormatInt(time.Now().UnixNano(), 36)
	expr := `derivation {
	  name = "realise-probe-` + salt + `"; system = "x86_64-linux"; outputs = [ "out" "dev" ];
	  builder = "${builtins.path { path = ` + dir + `/bb; name = "busybox-static"; }}/busybox";
	  args = [ "sh" "-c" "echo building the probe >&2; echo out > $out; echo dev > $dev" ];
	}`
	cmd := exec.CommandContext(ctx, "nix-instantiate", "--expr", expr)
	cmd.Env = fixture.NixEnv(os.Environ())
	drv := strings.TrimSpace(string(testenv.Output(t, cmd)))

	var log bytes.Buffer
	r := &nix.Runner{Exec: nix.Local{Env: fixture.NixEnv(os.Environ())}, Log: &log}
	roots := filepath.Join(t.TempDir(), "roots")
	outs, err := r.Realise(ctx, []string{drv}, roots)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, p := range outs[drv] {
		content, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		byName[strings.TrimSpace(string(content))] = p
	}
	if len(outs[drv]) != 2 || !strings.HasSuffix(byName["out"], "-realise-probe-"+salt) || !strings.HasSuffix(byName["dev"], "-realise-probe-"+salt+"-dev") {
		t.Fatalf("outputs = %v, want out and dev", outs[drv])
	}
	if !strings.Contains(log.String(), "building the probe") {
		t.Errorf("build log did not reach Log:\n%s", log.String())
	}
	entries, err := os.ReadDir(roots)
	if err != nil || len(entries) != 2 {
		t.Errorf("roots = %v (%v), want one per output", entries, err)
	}
}

func TestRealClosureMatchesTheStore(t *testing.T) {
	requireReal(t)
	r := realRunner(t)
	tops, _ := builtFleet(t, r)
	ctx := testenv.Context(t, 5*time.Minute)
	closure, err := r.Closure(ctx, []string{tops["v2"]})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	seen := map[string]bool{}
	for _, in := range closure {
		for _, ref := range in.References {
			if ref != in.Path && !seen[ref] {
				t.Errorf("%s comes before its reference %s", in.Path, ref)
			}
		}
		seen[in.Path] = true
		paths = append(paths, in.Path)
	}
	if paths[len(paths)-1] != tops["v2"] {
		t.Errorf("the toplevel is not last: %v", paths)
	}

	// Same paths and sizes as nix-store reports directly.
	want := strings.Fields(string(testenv.Output(t, exec.Command("nix-store", "--query", "--requisites", tops["v2"]))))
	got := slices.Clone(paths)
	slices.Sort(want)
	slices.Sort(got)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("closure paths (-nix-store +Closure):\n%s", d)
	}
	out := testenv.Output(t, exec.Command("nix-store", append([]string{"--query", "--size"}, paths...)...))
	for i, s := range strings.Fields(string(out)) {
		if n, _ := strconv.ParseInt(s, 10, 64); n != closure[i].NarSize || n == 0 {
			t.Errorf("%s: NarSize %d, nix-store says %s", closure[i].Path, closure[i].NarSize, s)
		}
	}
}

// One query for two systems, split per system, gives what a query per
// system gives, in an order a copy can import.
func TestRealSubclosureOfAFleetQuery(t *testing.T) {
	requireReal(t)
	r := realRunner(t)
	tops, _ := builtFleet(t, r)
	ctx := testenv.Context(t, 5*time.Minute)
	both, err := r.Closure(ctx, []string{tops["v1"], tops["v2"]})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1", "v2"} {
		want, err := r.Closure(ctx, []string{tops[v]})
		if err != nil {
			t.Fatal(err)
		}
		got, err := nix.Subclosure(both, []string{tops[v]})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= len(both) {
			t.Errorf("%s: subclosure has %d paths, the union %d: nothing was left out", v, len(got), len(both))
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: Subclosure (-own query +from the union):\n%s", v, d)
		}
	}
	if _, err := nix.Subclosure(both[:1], []string{tops["v2"]}); err == nil {
		t.Error("Subclosure of a root outside the given closure: no error")
	}
}

func TestRealExportImportIntoAnotherStore(t *testing.T) {
	requireReal(t)
	r := realRunner(t)
	tops, _ := builtFleet(t, r)
	ctx := testenv.Context(t, 5*time.Minute)
	other := &nix.Runner{Exec: r.Exec, Log: r.Log, Store: "local?root=" + filepath.Join(t.TempDir(), "other")}

	copyClosure := func(top string) (sent []string) {
		t.Helper()
		closure, err := r.Closure(ctx, []string{top})
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, in := range closure {
			paths = append(paths, in.Path)
		}
		missing, err := other.Missing(ctx, paths)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) == 0 {
			return nil
		}
		var stream bytes.Buffer
		if err := r.Export(ctx, missing, &stream); err != nil {
			t.Fatal(err)
		}
		imported, err := other.Import(ctx, &stream)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(imported)
		want := slices.Clone(missing)
		slices.Sort(want)
		if d := cmp.Diff(want, imported); d != "" {
			t.Errorf("imported paths (-sent +imported):\n%s", d)
		}
		if still, err := other.Missing(ctx, paths); err != nil || len(still) != 0 {
			t.Errorf("after import the other store still lacks %v (%v)", still, err)
		}
		return missing
	}

	sentV1 := copyClosure(tops["v1"])
	if len(sentV1) < 10 {
		t.Fatalf("sent %d paths for v1 to an empty store, want its whole closure", len(sentV1))
	}
	// v2 shares busybox and zlib with v1: they are not sent again.
	sentV2 := copyClosure(tops["v2"])
	for _, p := range sentV2 {
		if slices.Contains(sentV1, p) {
			t.Errorf("%s sent twice", p)
		}
	}
	shared := 0
	for _, p := range sentV1 {
		if strings.HasSuffix(p, "-zlib-1.3.1") || strings.HasSuffix(p, "-busybox-static") {
			shared++
		}
	}
	if shared != 2 || len(sentV2) == 0 {
		t.Errorf("v1 sent %d of zlib/busybox, v2 sent %d paths", shared, len(sentV2))
	}

	// The copy is whole: the other store reports the same closure.
	here, err := r.Closure(ctx, []string{tops["v2"]})
	if err != nil {
		t.Fatal(err)
	}
	there, err := other.Closure(ctx, []string{tops["v2"]})
	if err != nil {
		t.Fatal(err)
	}
	sizes := func(infos []nix.PathInfo) map[string]int64 {
		m := map[string]int64{}
		for _, in := range infos {
			m[in.Path] = in.NarSize
		}
		return m
	}
	if d := cmp.Diff(sizes(here), sizes(there)); d != "" {
		t.Errorf("closure in the other store (-here +there):\n%s", d)
	}
}

func TestRealBuildAndFailureReport(t *testing.T) {
	requireReal(t)
	r := realRunner(t)
	ctx := testenv.Context(t, 5*time.Minute)
	ref := testenv.FixtureFlake(t)
	res, err := r.Build(ctx, []string{ref + "#" + fixture.ProfileAttr(fixture.Web, fixture.V1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || !strings.Contains(res[0].Outputs["out"], "-activatable-nixos-system-web-") {
		t.Errorf("Build = %+v", res)
	}
	_, err = r.Build(ctx, []string{ref + "#variants.frame1.no-such-variant"})
	var ce *nix.CmdError
	if !errors.As(err, &ce) || ce.ExitCode != 1 || !strings.Contains(ce.StderrTail, "no-such-variant") {
		t.Errorf("failed build error = %v, want a *CmdError with exit 1 naming the attribute", err)
	}
}
