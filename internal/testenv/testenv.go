// Package testenv holds what tests across the tree need from the machine
// they run on, written once: the gate in front of end-to-end tests, a
// polling wait, a context bounded by the test, a command run that fails
// with its stderr, and a listener that serves until the test ends.
//
// End-to-end tests need real parts: root, nix, sshd, namespaces. Where a
// part is missing the test is skipped, loudly and with the reason, so that
// a green run on a laptop is not mistaken for a proven one; where the
// environment says the real parts must be there (TETHER_E2E=require, set by
// scripts/test.sh as root) the same test fails instead. Every end-to-end
// test goes through SkipOrFail, directly or through NeedRoot, NeedCommands,
// NeedFiles, NeedNix or testhost.StartT, so that one switch covers them
// all.
//
// It imports nothing of tether's but the fixture's constants, so every test
// package may use it, sandbox hosts (internal/testhost) included.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/internal/fixture"
)

// requireVar names the variable that turns skips into failures.
const requireVar = "TETHER_E2E"

// required reports whether the environment demands the end-to-end tests.
// It is read at each call, never cached: tests run their gate in child
// processes with and without it.
func required() bool { return os.Getenv(requireVar) == "require" }

// SkipOrFail stops a test that cannot run here: it skips it with why, in a
// line that stands out in the log, or fails it when TETHER_E2E=require.
func SkipOrFail(t testing.TB, why string) {
	t.Helper()
	if required() {
		t.Fatalf("END-TO-END TEST CANNOT RUN (%s=require): %s", requireVar, why)
	}
	t.Skipf("!!! SKIPPING END-TO-END TEST: %s (set %s=require to make this a failure)", why, requireVar)
}

// NeedRoot passes when the test runs as root, and otherwise skips or fails
// it (SkipOrFail) saying why it needs root.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root: "+why)
	}
}

// NeedCommands passes when every name is found (on PATH, or at its path
// when it holds a slash), and otherwise skips or fails the test
// (SkipOrFail) naming all the missing ones at once.
func NeedCommands(t testing.TB, names ...string) {
	t.Helper()
	need(t, "commands not found", names, func(n string) error { _, err := exec.LookPath(n); return err })
}

// NeedFiles passes when every path exists, and otherwise skips or fails
// the test (SkipOrFail) naming all the missing ones at once.
func NeedFiles(t testing.TB, paths ...string) {
	t.Helper()
	need(t, "files not found", paths, func(p string) error { _, err := os.Stat(p); return err })
}

// NeedNix passes where the fixture flake can be built: the nix CLI and the
// static busybox the fixture's derivations are built with. Otherwise it
// skips or fails the test (SkipOrFail).
func NeedNix(t testing.TB) {
	t.Helper()
	NeedCommands(t, "nix", "nix-store")
	NeedFiles(t, fixture.DefaultBusybox)
}

// need stops the test (SkipOrFail) with what and the names find does not
// find, if any.
func need(t testing.TB, what string, names []string, find func(string) error) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if find(n) != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		SkipOrFail(t, what+": "+strings.Join(missing, ", "))
	}
}

// FixtureFlake prepares the fixture fleet flake, as it comes, in a
// directory of the test's own and returns its flake reference; the test
// fails if it cannot.
func FixtureFlake(t testing.TB) string {
	t.Helper()
	ref, err := fixture.Prepare(filepath.Join(t.TempDir(), "fleet"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
