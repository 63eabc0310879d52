package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"tether"}, args...), Env{"HOME=" + t.TempDir(), "USER=tester"}, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != ExitOK || !strings.HasPrefix(out, "tether ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestHelpListsOnlyWorkingCommands(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != ExitOK {
		t.Fatalf("--help: exit %d", code)
	}
	for _, cmd := range []string{"plan", "deploy", "rollback", "status", "action", "version"} {
		if !strings.Contains(out, "   "+cmd) {
			t.Errorf("--help does not list %s:\n%s", cmd, out)
		}
	}
}

func TestUsageErrorsTouchNothing(t *testing.T) {
	flake := t.TempDir()
	os.WriteFile(filepath.Join(flake, "flake.nix"), []byte("{ outputs = { self }: { }; }\n"), 0o644)
	for _, args := range [][]string{
		{"bogus"},
		{"deploy", "--flake", flake, "--dry-activate", "--boot"},
		{"deploy", "--flake", flake, "--compress", "maybe"},
		{"plan", "--flake", flake, "--format", "yaml"},
		{"deploy", "--flake", t.TempDir()},            // no flake.nix there
		{"deploy", "--flake", "github:example/fleet"}, // not a local flake
		{"rollback", "--flake", flake},                // no nodes named
		{"deploy", "--no-such-flag"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != ExitUsage {
			t.Errorf("tether %s: exit %d, want %d (usage)\n%s", strings.Join(args, " "), code, ExitUsage, stderr)
		}
	}
}

func TestReportExitCodes(t *testing.T) {
	rep := func(statuses ...deploy.Status) *deploy.Report {
		r := &deploy.Report{}
		for i, s := range statuses {
			r.Results = append(r.Results, deploy.Result{Node: string(rune('a' + i)), Status: s})
		}
		return r
	}
	for _, tc := range []struct {
		rep  *deploy.Report
		want int
	}{
		{rep(deploy.StatusDeployed, deploy.StatusRebootRequired), ExitOK},
		{rep(deploy.StatusDeployed, deploy.StatusUnreachable), ExitFailed},
		{rep(deploy.StatusRolledBack, deploy.StatusUnreachable), ExitRolledBack},
		{rep(deploy.StatusRolledBack, deploy.StatusUncertain), ExitUncertain},
		{&deploy.Report{Interrupted: true, Results: []deploy.Result{{Status: deploy.StatusDeployed}}}, ExitInterrupted},
	} {
		if got := ExitCode(reportError(tc.rep)); got != tc.want {
			t.Errorf("%+v: exit %d, want %d", tc.rep.Results, got, tc.want)
		}
	}
}
