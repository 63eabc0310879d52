package deploy

import (
	"context"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
)

func TestCheckPlatforms(t *testing.T) {
	config := "system = x86_64-linux\nextra-platforms = i686-linux\n"
	run := func(name, nodeSystem, drvSystem string) *nodeRun {
		return &nodeRun{node: &fleet.Node{Name: name, System: nodeSystem, Profiles: []*fleet.Profile{{Name: "system", DrvPath: "/nix/store/x-" + name + ".drv", System: drvSystem}}}}
	}
	for _, tc := range []struct {
		name    string
		runs    []*nodeRun
		wantErr string // "" for none
	}{
		{"same system", []*nodeRun{run("web", "", "x86_64-linux")}, ""},
		{"extra platform", []*nodeRun{run("old", "", "i686-linux")}, ""},
		{"pi on an x86 builder", []*nodeRun{run("web", "", "x86_64-linux"), run("rpi", "aarch64-linux", "aarch64-linux")},
			"node rpi is aarch64-linux, but build host frame1 builds only x86_64-linux, i686-linux"},
		{"system from tether.toml when the derivation says none", []*nodeRun{run("rpi", "aarch64-linux", "")}, "node rpi is aarch64-linux"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &nix.FakeExecutor{}
			fake.Expect([]string{"nix", "show-config", "--extra-experimental-features", "nix-command flakes"}, config)
			err := checkPlatforms(context.Background(), &nix.Runner{Exec: fake}, tc.runs, "build host frame1")
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestBuildLogLinesAreCut: a build host's log is shown line by line, and a
// line without end is cut instead of held.
func TestBuildLogLinesAreCut(t *testing.T) {
	var lines []string
	w := &prefixWriter{emit: func(l string) { lines = append(lines, l) }}
	w.Write([]byte("building\nhalf "))
	w.Write([]byte("a line\n"))
	chunk := []byte(strings.Repeat("x", 4096))
	for range 100 { // 400 KiB without a newline
		w.Write(chunk)
	}
	if len(w.buf) > maxLogLine {
		t.Errorf("holds %d bytes of an endless line, want at most %d", len(w.buf), maxLogLine)
	}
	w.Write([]byte("xx\ndone\n"))
	if len(lines) != 4 || lines[0] != "building" || lines[1] != "half a line" || lines[3] != "done" {
		t.Fatalf("lines %q", lines)
	}
	if want := strings.Repeat("x", maxLogLine) + " …(cut)"; lines[2] != want {
		t.Errorf("the long line is shown as %d bytes, want it cut at %d", len(lines[2]), maxLogLine)
	}
}
