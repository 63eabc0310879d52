package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/internal/app"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"tether"}, args...), Env{"HOME=" + t.TempDir(), "USER=tester"}, &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != app.ExitOK || !strings.HasPrefix(out, "tether ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestHelpListsOnlyWorkingCommands(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != app.ExitOK {
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
		if code != app.ExitUsage {
			t.Errorf("tether %s: exit %d, want %d (usage)\n%s", strings.Join(args, " "), code, app.ExitUsage, stderr)
		}
	}
}
