package nix_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherdeploy/tether/pkg/nix"
)

var xp = []string{"--extra-experimental-features", "nix-command flakes"}

func argv(parts ...any) []string {
	var out []string
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			out = append(out, p)
		case []string:
			out = append(out, p...)
		default:
			panic(fmt.Sprintf("argv: %T", p))
		}
	}
	return out
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    nix.Version
		lix     bool
		atLeast [2]int
	}{
		{"nix (Nix) 2.8.0\n", nix.Version{Impl: "Nix", Major: 2, Minor: 8, Patch: 0, Raw: "nix (Nix) 2.8.0"}, false, [2]int{2, 8}},
		{"nix (Lix, like Nix) 2.91.1\n", nix.Version{Impl: "Lix, like Nix", Major: 2, Minor: 91, Patch: 1, Raw: "nix (Lix, like Nix) 2.91.1"}, true, [2]int{2, 90}},
		{"nix (Nix) 2.24.10pre20241016_a1b2c3d\n", nix.Version{Impl: "Nix", Major: 2, Minor: 24, Patch: 10, Suffix: "pre20241016_a1b2c3d", Raw: "nix (Nix) 2.24.10pre20241016_a1b2c3d"}, false, [2]int{2, 19}},
		{"nix (Determinate Nix 3.1.0) 2.28.1", nix.Version{Impl: "Determinate Nix 3.1.0", Major: 2, Minor: 28, Patch: 1, Raw: "nix (Determinate Nix 3.1.0) 2.28.1"}, false, [2]int{2, 28}},
		{"nix (Nix) 2.3\nSystem type: x86_64-linux\n", nix.Version{Impl: "Nix", Major: 2, Minor: 3, Raw: "nix (Nix) 2.3"}, false, [2]int{2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := nix.ParseVersion(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if got.Lix() != tt.lix {
				t.Errorf("Lix() = %v, want %v", got.Lix(), tt.lix)
			}
			if !got.AtLeast(tt.atLeast[0], tt.atLeast[1]) || got.AtLeast(got.Major, got.Minor+1) || got.AtLeast(got.Major+1, 0) {
				t.Errorf("AtLeast wrong for %v", got)
			}
		})
	}
	for _, bad := range []string{"", "nix 2.8.0", "Nix (Nix) two.eight", "bash: nix: command not found"} {
		if _, err := nix.ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted garbage", bad)
		}
	}
}

func TestVersionIsAskedOnce(t *testing.T) {
	f := &nix.FakeExecutor{}
	call := f.Expect([]string{"nix", "--version"}, "nix (Nix) 2.8.0\n")
	r := &nix.Runner{Exec: f}
	for range 3 {
		v, err := r.Version(context.Background())
		if err != nil || !v.AtLeast(2, 8) || v.AtLeast(2, 9) {
			t.Fatalf("Version = %v, %v", v, err)
		}
	}
	if call.Calls != 1 {
		t.Errorf("nix --version ran %d times, want once", call.Calls)
	}
	f.Check(t)
}

func TestVersionFailureIsNotRemembered(t *testing.T) {
	f := &nix.FakeExecutor{}
	call := f.Expect([]string{"nix", "--version"}, "")
	call.ExitCode, call.Stderr = 127, "nix: not found\n"
	r := &nix.Runner{Exec: f}
	if _, err := r.Version(context.Background()); err == nil {
		t.Fatal("Version succeeded on a failing nix")
	}
	call.ExitCode, call.Stdout = 0, "nix (Nix) 2.18.1\n"
	if v, err := r.Version(context.Background()); err != nil || v.Minor != 18 {
		t.Fatalf("second Version = %v, %v; want 2.18.1", v, err)
	}
}

// dumpDB is real `nix-store --dump-db` output of a small closure.
const dumpDB = `/nix/store/146cqk20a7ailxfhvawjywp1gi8faibq-a-1.0
10551daed7fa467d0b58826e7eb9a0f2af7d693de319f2ef775fffcda244b9f6
120
/nix/store/ha11z7dki9ym5qnqxi68qylxskxwz4sz-a-1.0.drv
0
/nix/store/6n4jlzgmvplkq47sndi9vj45qnmibnar-b-2.0
8cf2a3da5f43e1a3f0903b61705f755eab4cd06848e61e9e1e8339a086e99c94
168

2
/nix/store/146cqk20a7ailxfhvawjywp1gi8faibq-a-1.0
/nix/store/6n4jlzgmvplkq47sndi9vj45qnmibnar-b-2.0
`

const (
	pathA = "/nix/store/146cqk20a7ailxfhvawjywp1gi8faibq-a-1.0"
	pathB = "/nix/store/6n4jlzgmvplkq47sndi9vj45qnmibnar-b-2.0"
)

func TestParseDumpDB(t *testing.T) {
	got, err := nix.ParseDumpDB([]byte(dumpDB))
	if err != nil {
		t.Fatal(err)
	}
	want := []nix.PathInfo{
		{Path: pathA, NarHash: "10551daed7fa467d0b58826e7eb9a0f2af7d693de319f2ef775fffcda244b9f6", NarSize: 120, Deriver: "/nix/store/ha11z7dki9ym5qnqxi68qylxskxwz4sz-a-1.0.drv", References: []string{}},
		{Path: pathB, NarHash: "8cf2a3da5f43e1a3f0903b61705f755eab4cd06848e61e9e1e8339a086e99c94", NarSize: 168, References: []string{pathA, pathB}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}

	for name, bad := range map[string]string{
		"cut short":       "/nix/store/x-a\nabc\n12\n",
		"missing refs":    "/nix/store/x-a\nabc\n12\n\n3\n/nix/store/y-b\n",
		"size not number": "/nix/store/x-a\nabc\ntwelve\n\n0\n",
		"not a path":      "x-a\nabc\n12\n\n0\n",
	} {
		if _, err := nix.ParseDumpDB([]byte(bad)); err == nil {
			t.Errorf("%s: ParseDumpDB accepted %q", name, bad)
		}
	}
}

func TestSortReferencesFirst(t *testing.T) {
	infos := []nix.PathInfo{
		{Path: "/nix/store/a-top", References: []string{"/nix/store/d-lib", "/nix/store/c-app", "/nix/store/a-top"}},
		{Path: "/nix/store/c-app", References: []string{"/nix/store/d-lib", "/nix/store/z-not-in-closure"}},
		{Path: "/nix/store/d-lib", References: []string{"/nix/store/e-libc"}},
		{Path: "/nix/store/e-libc"},
		{Path: "/nix/store/b-doc"},
	}
	got, err := nix.SortReferencesFirst(infos)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, in := range got {
		order = append(order, strings.TrimPrefix(in.Path, "/nix/store/"))
	}
	want := []string{"e-libc", "d-lib", "c-app", "a-top", "b-doc"}
	if d := cmp.Diff(want, order); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}

	cyclic := []nix.PathInfo{
		{Path: "/nix/store/a", References: []string{"/nix/store/b"}},
		{Path: "/nix/store/b", References: []string{"/nix/store/a"}},
	}
	if _, err := nix.SortReferencesFirst(cyclic); err == nil {
		t.Errorf("a reference cycle was accepted")
	}
}

func TestClosureQueriesRequisitesThenPathInfo(t *testing.T) {
	f := &nix.FakeExecutor{}
	f.Expect([]string{"nix-store", "--query", "--requisites", pathB}, pathA+"\n"+pathB+"\n")
	f.Expect([]string{"nix-store", "--dump-db", pathA, pathB}, dumpDB)
	got, err := (&nix.Runner{Exec: f}).Closure(context.Background(), []string{pathB, pathB})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Path != pathA || got[1].Path != pathB || got[1].NarSize != 168 {
		t.Errorf("Closure = %+v, want a then b with b's size 168", got)
	}
	f.Check(t)
}

func storePaths(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("/nix/store/%032d-p", i)
	}
	return out
}

func TestMissingCutsLongListsAndKeepsOrder(t *testing.T) {
	paths := storePaths(2500)
	f := &nix.FakeExecutor{}
	// Each chunk must fit one command line; answer the invalid ones.
	f.Expect(argv("nix-store", "--check-validity", "--print-invalid", paths[:1000]), paths[999]+"\n"+paths[3]+"\n")
	f.Expect(argv("nix-store", "--check-validity", "--print-invalid", paths[1000:2000]), "")
	f.Expect(argv("nix-store", "--check-validity", "--print-invalid", paths[2000:]), paths[2499]+"\n")
	got, err := (&nix.Runner{Exec: f}).Missing(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{paths[3], paths[999], paths[2499]}, got); d != "" {
		t.Errorf("missing (-want +got):\n%s", d)
	}
	f.Check(t)
}

func TestStoreOptionReachesEveryCommand(t *testing.T) {
	f := &nix.FakeExecutor{}
	r := &nix.Runner{Exec: f, Store: "local?root=/srv/other"}
	f.Expect([]string{"nix-store", "--store", "local?root=/srv/other", "--check-validity", "--print-invalid", pathA}, pathA+"\n")
	f.Expect(argv("nix", "eval", xp, "--store", "local?root=/srv/other", "--json", ".#x"), "1")
	if _, err := r.Missing(context.Background(), []string{pathA}); err != nil {
		t.Fatal(err)
	}
	var x int
	if err := r.EvalJSON(context.Background(), ".#x", "", &x); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"nix-store", "--store", "local?root=/srv/other", "--import"}, r.ImportArgv()); d != "" {
		t.Errorf("ImportArgv (-want +got):\n%s", d)
	}
	f.Check(t)
}

func TestEvalJSONAppliesAndDecodes(t *testing.T) {
	f := &nix.FakeExecutor{}
	apply := "d: builtins.attrNames d.nodes"
	f.Expect(argv("nix", "eval", xp, "--json", "--apply", apply, "path:/fleet#deploy"), `["frame1","web"]`)
	var nodes []string
	if err := (&nix.Runner{Exec: f}).EvalJSON(context.Background(), "path:/fleet#deploy", apply, &nodes); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"frame1", "web"}, nodes); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	f.Check(t)
}

// TestEvalJSONMissingAttribute: a flake without the output asked for
// is a MissingAttributeError keeping only nix's suggestion, and nix's
// message does not reach the log (the caller says it in its own words);
// any other failure, and a success's warnings, do reach it.
func TestEvalJSONMissingAttribute(t *testing.T) {
	const missing = "error: flake 'path:/fleet' does not provide attribute 'packages.x86_64-linux.deploy', 'legacyPackages.x86_64-linux.deploy' or 'deploy'\n"
	cases := []struct {
		name, stderr string
		exit         int
		wantHint     string // for a missing attribute
		wantLog      string // "" means nothing logged
	}{
		{name: "missing", stderr: missing, exit: 1},
		{name: "missing, with a suggestion", stderr: missing + "       Did you mean deplo?\n", exit: 1, wantHint: "Did you mean deplo?"},
		{name: "syntax error", stderr: "error: syntax error, unexpected '}'\n       at /fleet/flake.nix:3:1\n", exit: 1, wantLog: "syntax error"},
		{name: "warning", stderr: "warning: unknown setting 'foo'\n", wantLog: "unknown setting"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &nix.FakeExecutor{}
			call := f.Expect(argv("nix", "eval", xp, "--json", "path:/fleet#deploy"), "{}")
			call.Stderr, call.ExitCode = c.stderr, c.exit
			var log bytes.Buffer
			var out any
			err := (&nix.Runner{Exec: f, Log: &log}).EvalJSON(context.Background(), "path:/fleet#deploy", "", &out)
			var m *nix.MissingAttributeError
			isMissing := errors.As(err, &m)
			switch {
			case strings.HasPrefix(c.name, "missing") && !isMissing:
				t.Fatalf("err = %v, want a MissingAttributeError", err)
			case strings.HasPrefix(c.name, "missing") && m.Hint != c.wantHint:
				t.Errorf("hint %q, want %q", m.Hint, c.wantHint)
			case !strings.HasPrefix(c.name, "missing") && isMissing:
				t.Errorf("%v taken for a missing attribute", err)
			case c.exit != 0 && err == nil:
				t.Error("no error")
			}
			if c.wantLog == "" && log.Len() != 0 {
				t.Errorf("nix's message reached the log: %q", log.String())
			}
			if c.wantLog != "" && !strings.Contains(log.String(), c.wantLog) {
				t.Errorf("log %q lacks %q", log.String(), c.wantLog)
			}
		})
	}
}

func TestRealiseRootsEveryOutput(t *testing.T) {
	drvA := "/nix/store/ha11z7dki9ym5qnqxi68qylxskxwz4sz-a-1.0.drv"
	drvB := "/nix/store/a2f7000qd69099a73s6na2sb5xk8hac1-b-2.0.drv"
	f := &nix.FakeExecutor{}
	f.Expect([]string{"nix-store", "--query", "--outputs", drvA}, pathA+"\n/nix/store/1g3zmp85v7pvrpxis9kl0z8142h750wl-a-1.0-dev\n")
	f.Expect([]string{"nix-store", "--query", "--outputs", drvB}, pathB+"\n")
	// The root name is fixed for a set of derivations, whatever their order.
	root := "/var/lib/tether/roots/build-3503f2224ea0671f"
	call := f.Expect([]string{"nix-store", "--realise", drvA, drvB, "--add-root", root}, root+"\n")
	call.Stderr = "building '" + drvA + "'...\n"
	f.Expect([]string{"nix-store", "--realise", drvB, drvA, "--add-root", root}, root+"\n")
	var log bytes.Buffer
	r := &nix.Runner{Exec: f, Log: &log}
	got, err := r.Realise(context.Background(), []string{drvA, drvB, drvA}, "/var/lib/tether/roots")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		drvA: {pathA, "/nix/store/1g3zmp85v7pvrpxis9kl0z8142h750wl-a-1.0-dev"},
		drvB: {pathB},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("outputs (-want +got):\n%s", d)
	}
	if !strings.Contains(log.String(), "building '"+drvA) {
		t.Errorf("build log not streamed to Log: %q", log.String())
	}
	if _, err := r.Realise(context.Background(), []string{drvB, drvA}, "/var/lib/tether/roots"); err != nil {
		t.Fatal(err)
	}
	f.Check(t)

	for _, bad := range []struct {
		drvs []string
		root string
	}{
		{[]string{pathA}, ""},
		{[]string{"relative.drv"}, ""},
		{[]string{drvA}, "roots"},
	} {
		if _, err := r.Realise(context.Background(), bad.drvs, bad.root); err == nil {
			t.Errorf("Realise(%v, %q) accepted bad input", bad.drvs, bad.root)
		}
	}
}

func TestCmdErrorKeepsArgvExitCodeAndStderrTail(t *testing.T) {
	f := &nix.FakeExecutor{}
	var stderr strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&stderr, "log line %d\n", i)
	}
	call := f.Expect([]string{"nix-store", "--check-validity", "--print-invalid", "/nix/store/x y"}, "")
	call.ExitCode, call.Stderr = 1, stderr.String()+"error: path '/nix/store/x y' is not in the Nix store\n"

	_, err := (&nix.Runner{Exec: f}).Missing(context.Background(), []string{"/nix/store/x y"})
	var ce *nix.CmdError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *CmdError", err)
	}
	if ce.ExitCode != 1 {
		t.Errorf("ExitCode = %d, want 1", ce.ExitCode)
	}
	tail := strings.Split(ce.StderrTail, "\n")
	if len(tail) != 20 || tail[0] != "log line 12" || tail[19] != "error: path '/nix/store/x y' is not in the Nix store" {
		t.Errorf("StderrTail = %q, want the last 20 lines", ce.StderrTail)
	}
	msg := err.Error()
	for _, want := range []string{`nix-store --check-validity --print-invalid "/nix/store/x y": exit status 1`, "is not in the Nix store"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "log line 11\n") {
		t.Errorf("error message holds more than the tail:\n%s", msg)
	}
}

func TestFormatArgvCutsLongLists(t *testing.T) {
	got := nix.FormatArgv(append([]string{"nix-store", "--export"}, storePaths(10)...))
	if !strings.HasSuffix(got, "... (4 more)") || !strings.HasPrefix(got, "nix-store --export /nix/store/") {
		t.Errorf("FormatArgv = %q", got)
	}
	if got := nix.FormatArgv([]string{"nix", "eval", "--apply", "x: x", ""}); got != `nix eval --apply "x: x" ""` {
		t.Errorf("FormatArgv quoting = %q", got)
	}
}

func TestFakeRejectsUnexpectedCommands(t *testing.T) {
	f := &nix.FakeExecutor{}
	f.Expect([]string{"nix-store", "--import"}, "")
	err := f.Run(context.Background(), []string{"nix-store", "--delete", pathA}, nil, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("fake ran an unexpected command")
	}
	rec := &recorder{}
	f.Check(rec)
	if len(rec.errs) != 2 {
		t.Errorf("Check reported %q, want the unexpected command and the unused expectation", rec.errs)
	}
}

type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestImportSendsStreamAndReturnsPaths(t *testing.T) {
	f := &nix.FakeExecutor{}
	call := f.Expect([]string{"nix-store", "--import"}, pathA+"\n"+pathB+"\n")
	got, err := (&nix.Runner{Exec: f}).Import(context.Background(), strings.NewReader("NAR-STREAM"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{pathA, pathB}, got); d != "" || call.Stdin.String() != "NAR-STREAM" {
		t.Errorf("Import = %v (diff %s), stdin %q", got, d, call.Stdin.String())
	}
}

func TestLocalUsesInjectedEnvironment(t *testing.T) {
	sh := "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		t.Skip("SKIPPING: no /bin/sh")
	}
	var out bytes.Buffer
	l := nix.Local{Env: []string{"TETHER_PROBE=seen"}}
	if err := l.Run(context.Background(), []string{sh, "-c", `printf %s "$TETHER_PROBE"; printf %s "${HOME:-nohome}"`}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != "seennohome" {
		t.Errorf("child saw %q, want only the injected environment", out.String())
	}
}

// cancelOnWrite ends the context when the command first writes, which
// proves the command is running when it is cancelled.
type cancelOnWrite struct{ cancel context.CancelFunc }

func (c cancelOnWrite) Write(p []byte) (int, error) { c.cancel(); return len(p), nil }

func TestCancelledCommandReportsContextError(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("SKIPPING: no /bin/sh")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &nix.Runner{Exec: runAs{argv: []string{"/bin/sh", "-c", "echo started; exec sleep 100"}, stdout: cancelOnWrite{cancel}}}
	_, err := r.Import(ctx, nil)
	var ce *nix.CmdError
	if !errors.As(err, &ce) || !errors.Is(err, context.Canceled) || ce.ExitCode != -1 {
		t.Fatalf("error = %v, want a *CmdError wrapping context.Canceled with exit code -1", err)
	}
}

// runAs runs a fixed local command in place of whatever nix command is
// asked for, to test how the Runner treats a real process.
type runAs struct {
	argv   []string
	stdout io.Writer
}

func (r runAs) Run(ctx context.Context, _ []string, stdin io.Reader, _, stderr io.Writer) error {
	return nix.Local{}.Run(ctx, r.argv, stdin, r.stdout, stderr)
}

func TestArgvBuildersWorkWithoutARunner(t *testing.T) {
	var r *nix.Runner
	if d := cmp.Diff([]string{"nix-store", "--export", pathA, pathB}, r.ExportArgv([]string{pathA, pathB})); d != "" {
		t.Errorf("ExportArgv (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"nix-env", "--profile", "/nix/var/nix/profiles/system", "--set", pathB}, nix.SetProfileArgv("/nix/var/nix/profiles/system", pathB)); d != "" {
		t.Errorf("SetProfileArgv (-want +got):\n%s", d)
	}
}
