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
