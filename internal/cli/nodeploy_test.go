package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/internal/testenv"
)

// TestNoDeployOutputSaysWhatToAdd runs real nix on a flake that names no
// machines: one message, tether's, saying what to add; nix's own text only
// where it adds something (its suggestion for a misspelt output).
func TestNoDeployOutputSaysWhatToAdd(t *testing.T) {
	testenv.NeedCommands(t, "nix")
	for _, c := range []struct {
		outputs string
		want    string
	}{
		{`nixosConfigurations = { };`, "it has no deploy output, and there is no tether.toml"},
		{`deplo = { nodes = { }; };`, "it has no deploy output (nix: Did you mean deplo?), and there is no tether.toml"},
	} {
		flake := t.TempDir()
		os.WriteFile(filepath.Join(flake, "flake.nix"), []byte("{ outputs = { self }: { "+c.outputs+" }; }\n"), 0o644)
		code, _, stderr := runCLI(t, "plan", "--flake", flake)
		lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
		if code != app.ExitUsage || len(lines) != 1 {
			t.Errorf("flake with %s: exit %d, want %d and one line:\n%s", c.outputs, code, app.ExitUsage, stderr)
		}
		for _, want := range []string{"tether: load fleet: flake " + flake + " names no machines: ", c.want,
			"add a deploy.nodes output to the flake, or a [nodes.<name>] section per machine to tether.toml"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("flake with %s: stderr does not say %q:\n%s", c.outputs, want, stderr)
			}
		}
	}
}
