package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/fleet"
)

// completeWith runs `tether __complete words...` on an application layer
// whose flake evaluation is ev.
func completeWith(t *testing.T, ev fleet.Evaluator, home string, words ...string) []string {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app.App{Eval: ev}
	code := RunApp(context.Background(), a, append([]string{"tether", completeCommand}, words...), Env{"HOME=" + home}, &out, &errb)
	if code != app.ExitOK {
		t.Fatalf("tether __complete %q: exit %d\n%s", words, code, errb.String())
	}
	return strings.Fields(out.String())
}

// fleetDir is a flake directory whose tether.toml names nas (tagged home)
// and whose deploy.nodes, as ev evaluates them, hold frame1 and rpi.
func fleetDir(t *testing.T) (string, *fleet.FakeEvaluator) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = { self }: { }; }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "tether.toml"), []byte("[nodes.nas]\ntags = [\"home\"]\n"), 0o644)
	return dir, &fleet.FakeEvaluator{Results: map[string]string{dir + "#deploy.nodes": `["frame1", "rpi"]`}}
}

func TestComplete(t *testing.T) {
	dir, ev := fleetDir(t)
	home := t.TempDir()
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{""}, []string{"plan", "deploy", "rollback", "status", "action", "version", "completion", "help"}},
		{[]string{"ro"}, []string{"rollback"}},
		{[]string{"deploy", "--js"}, []string{"--json"}},
		{[]string{"deploy", "--compress", ""}, []string{"auto", "on", "off"}},
		{[]string{"deploy", "--json", ""}, []string{":file"}},
		{[]string{"deploy", "--flake", ""}, []string{":dir"}},
		{[]string{"plan", "-o", ""}, []string{":file"}},
		{[]string{"completion", ""}, []string{"bash", "fish", "zsh"}},
		{[]string{"deploy", "--flake", dir, ""}, []string{"frame1", "nas", "rpi", "@home"}},
		{[]string{"deploy", "--flake=" + dir, "--keep-going", "r"}, []string{"rpi"}},
		{[]string{"rollback", "--flake", dir, "frame1", "@"}, []string{"@home"}},
		// After --, a word with a dash is a node name, not a flag.
		{[]string{"status", "--flake", dir, "--", "--"}, nil},
		{[]string{"version", ""}, nil},
	} {
		if got := completeWith(t, ev, home, tc.words...); !slices.Equal(got, tc.want) {
			t.Errorf("complete %q: %q, want %q", tc.words, got, tc.want)
		}
	}
}

// A flake that cannot be evaluated in time (or at all) still completes:
// with the names of the last evaluation that finished, and tether.toml's.
func TestCompleteFallsBackToTheLastNames(t *testing.T) {
	dir, ev := fleetDir(t)
	home := t.TempDir()
	completeWith(t, ev, home, "deploy", "--flake", dir, "")
	broken := &fleet.FakeEvaluator{Errors: map[string]error{dir + "#deploy.nodes": errors.New("error: evaluation aborted")}}
	if got, want := completeWith(t, broken, home, "deploy", "--flake", dir, ""), []string{"frame1", "nas", "rpi", "@home"}; !slices.Equal(got, want) {
		t.Errorf("with the evaluation failing: %q, want the cached %q", got, want)
	}
	if got, want := completeWith(t, broken, t.TempDir(), "deploy", "--flake", dir, ""), []string{"nas", "@home"}; !slices.Equal(got, want) {
		t.Errorf("with no cache: %q, want tether.toml's %q", got, want)
	}
}

func TestCompletionScriptsLoad(t *testing.T) {
	for shell, check := range map[string][]string{
		"bash": {"bash", "-n"},
		"zsh":  {"zsh", "-n"},
		"fish": {"fish", "--no-execute"},
	} {
		t.Run(shell, func(t *testing.T) {
			code, script, _ := runCLI(t, "completion", shell)
			if code != app.ExitOK || !strings.Contains(script, completeCommand) {
				t.Fatalf("tether completion %s: exit %d\n%s", shell, code, script)
			}
			testenv.NeedCommands(t, check[0])
			file := filepath.Join(t.TempDir(), "tether."+shell)
			if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(check[0], append(check[1:], file)...).CombinedOutput(); err != nil {
				t.Errorf("%s rejects the script: %v\n%s", shell, err, out)
			}
		})
	}
	if code, _, _ := runCLI(t, "completion", "tcsh"); code != app.ExitUsage {
		t.Errorf("tether completion tcsh: exit %d, want %d", code, app.ExitUsage)
	}
}

// The scripts complete for real: a shell loads one and asks it, with a
// tether binary on PATH, for a partial command line.
func TestCompletionScriptsComplete(t *testing.T) {
	bin := t.TempDir()
	cmd := exec.Command(testenv.GoCommand(t), "build", "-o", filepath.Join(bin, "tether"), "github.com/tetherdeploy/tether/cmd/tether")
	testenv.Output(t, cmd)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = { self }: { }; }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "tether.toml"), []byte("[nodes.alpha]\n[nodes.albert]\n[nodes.beta]\n"), 0o644)
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	for _, tc := range []struct {
		shell string
		argv  []string
	}{
		{"bash", []string{"bash", "-c", `source <(tether completion bash)
COMP_WORDS=(tether deploy --flake "$1" al); COMP_CWORD=4; _tether; printf '%s\n' "${COMPREPLY[@]}"`, "bash", dir}},
		{"fish", []string{"fish", "-c", `tether completion fish | source; complete -C "tether deploy --flake $argv[1] al"`, dir}},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			testenv.NeedCommands(t, tc.shell)
			c := exec.Command(tc.argv[0], tc.argv[1:]...)
			c.Env = env
			c.Dir = dir
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(string(testenv.Output(t, c))), "\n") {
				got = append(got, strings.Fields(l)[0]) // fish adds a description column
			}
			slices.Sort(got)
			if want := []string{"albert", "alpha"}; !slices.Equal(got, want) {
				t.Errorf("%s completes `tether deploy --flake DIR al` to %q, want %q", tc.shell, got, want)
			}
		})
	}
}
