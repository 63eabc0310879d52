package github

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// repoRoot is where action.yml and examples/ live.
const repoRoot = "../.."

type actionFile struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Author      string `yaml:"author"`
	Branding    struct {
		Icon  string `yaml:"icon"`
		Color string `yaml:"color"`
	} `yaml:"branding"`
	Inputs map[string]struct {
		Description string  `yaml:"description"`
		Required    bool    `yaml:"required"`
		Default     *string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Description string `yaml:"description"`
		Value       string `yaml:"value"`
	} `yaml:"outputs"`
	Runs struct {
		Using string       `yaml:"using"`
		Steps []actionStep `yaml:"steps"`
	} `yaml:"runs"`
}

// actionStep is one step of action.yml or of a workflow job.
type actionStep struct {
	Name  string            `yaml:"name"`
	ID    string            `yaml:"id"`
	If    string            `yaml:"if"`
	Uses  string            `yaml:"uses"`
	Shell string            `yaml:"shell"`
	Run   string            `yaml:"run"`
	Env   map[string]string `yaml:"env"`
	With  map[string]any    `yaml:"with"`
}

func readActionFile(t *testing.T) *actionFile {
	t.Helper()
	var a actionFile
	readYAML(t, filepath.Join(repoRoot, "action.yml"), &a)
	return &a
}

// readYAML decodes the YAML file at path into v, failing the test on a key
// v has no field for: a misspelt key in a file users copy is a bug.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
}

func (a *actionFile) step(t *testing.T, id string) actionStep {
	t.Helper()
	for _, s := range a.Runs.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("action.yml has no step %q", id)
	return actionStep{}
}

func TestActionYMLInputsAndOutputs(t *testing.T) {
	a := readActionFile(t)
	if a.Runs.Using != "composite" {
		t.Errorf("runs.using = %q: the action must run on the runner, beside /nix/store", a.Runs.Using)
	}
	var names []string
	for name, in := range a.Inputs {
		names = append(names, name)
		if strings.TrimSpace(in.Description) == "" {
			t.Errorf("input %s has no description", name)
		}
		if in.Required {
			t.Errorf("input %s is required; every input has a default", name)
		}
	}
	sort.Strings(names)
	want := sortedCopy(InputNames)
	if !slices.Equal(names, want) {
		t.Errorf("action.yml inputs %v\nthe action reads %v", names, want)
	}
	if d := a.Inputs["github-token"].Default; d == nil || *d != "${{ github.token }}" {
		t.Errorf("github-token default = %v", d)
	}
	if d := a.Inputs["environment"].Default; d == nil || *d != DefaultEnvironment {
		t.Errorf("environment default = %v", d)
	}

	run := a.step(t, "tether")
	if run.Shell != "bash" {
		t.Errorf("the run step's shell is %q: only bash passes INPUT_ names with hyphens on", run.Shell)
	}
	for _, name := range InputNames {
		if got, want := run.Env[InputEnv(name)], "${{ inputs."+name+" }}"; got != want {
			t.Errorf("run step env %s = %q, want %q", InputEnv(name), got, want)
		}
	}
	for k := range run.Env {
		if strings.HasPrefix(k, "INPUT_") && !slices.ContainsFunc(InputNames, func(n string) bool { return InputEnv(n) == k }) {
			t.Errorf("run step sets %s, which is no input", k)
		}
	}
	for _, name := range []string{"result", "deployed", "rolled-back", "failed"} {
		o, ok := a.Outputs[name]
		if !ok {
			t.Errorf("no output %s", name)
			continue
		}
		if want := "${{ steps.tether.outputs." + name + " }}"; o.Value != want {
			t.Errorf("output %s = %q, want %q", name, o.Value, want)
		}
	}
	if len(a.Outputs) != 4 {
		t.Errorf("outputs: %d, want 4", len(a.Outputs))
	}

	cache := a.step(t, "cache")
	if !strings.HasPrefix(cache.Uses, "actions/cache@") || cache.With["key"] != "${{ steps.build-key.outputs.key }}" {
		t.Errorf("cache step: %+v", cache)
	}
	var build *actionStep
	for i, s := range a.Runs.Steps {
		if strings.Contains(s.Run, "go build") {
			build = &a.Runs.Steps[i]
		}
	}
	if build == nil || !strings.Contains(build.Run, "./cmd/tether") || !strings.Contains(build.Run, "scripts/build-agents.sh") ||
		build.If != "steps.cache.outputs.cache-hit != 'true'" {
		t.Errorf("build step: %+v", build)
	}
	for _, s := range a.Runs.Steps {
		if s.Run == "" {
			continue
		}
		if s.Shell == "" {
			t.Errorf("step %q has no shell (composite run steps need one)", s.Name)
		}
		checkBashSyntax(t, "action.yml step "+s.Name, s.Run)
		if strings.Contains(s.Run, "${{") {
			t.Errorf("step %q puts an expression into its script; pass it through env", s.Name)
		}
	}
}

func checkBashSyntax(t *testing.T, what, script string) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skipf("SKIPPING the shell syntax check of %s: no bash on this machine", what)
	}
	cmd := exec.Command(bash, "-n", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: bash -n: %v\n%s", what, err, out)
	}
}

var expr = regexp.MustCompile(`\$\{\{\s*([^}]*?)\s*\}\}`)

// runStep runs a step's script the way the runner does for a composite
// action's bash step, with the ${{ }} expressions of its env replaced from
// values.
func runStep(t *testing.T, s actionStep, values map[string]string, extraEnv ...string) string {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("SKIPPING: no bash on this machine to run the action's steps")
	}
	home := t.TempDir()
	// With telemetry on, the go command leaves a detached child that
	// writes under $HOME after the step returns, racing the temp dir's
	// removal. The mode file is how the go command is told "off".
	telemetry := filepath.Join(home, ".config", "go", "telemetry")
	if err := os.MkdirAll(telemetry, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(telemetry, "mode"), []byte("off"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}, extraEnv...)
	for k, v := range s.Env {
		v = expr.ReplaceAllStringFunc(v, func(m string) string {
			key := expr.FindStringSubmatch(m)[1]
			val, ok := values[key]
			if !ok {
				t.Errorf("step %q: no test value for ${{ %s }}", s.Name, key)
			}
			return val
		})
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(bash, "--noprofile", "--norc", "-eo", "pipefail", "-c", s.Run)
	cmd.Env = env
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("step %q: %v\n%s%s", s.Name, err, out.String(), stderr.String())
	}
	return out.String()
}

// The run step hands every input to tether under the name it reads, the
// key intact, and runs the binary the build step made.
func TestActionYMLRunStepPassesEveryInput(t *testing.T) {
	a := readActionFile(t)
	dir := t.TempDir()
	// This test binary stands in for the built tether (see TestMain).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(dir, "tether")); err != nil {
		t.Fatal(err)
	}
	key := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----\n"
	values := map[string]string{"steps.build-key.outputs.dir": dir}
	want := map[string]string{}
	for _, name := range InputNames {
		v := "value of " + name
		if name == "ssh-private-key" {
			v = key
		}
		values["inputs."+name] = v
		want[name] = strings.TrimSpace(v)
	}
	out := runStep(t, a.step(t, "tether"), values, fakeTetherEnv+"=1")
	env := map[string]string{}
	for _, kv := range strings.Split(out, "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if env["args"] != "action" {
		t.Errorf("tether ran with %q, want \"action\"", env["args"])
	}
	if env["TETHER_AGENTS_DIR"] != filepath.Join(dir, "agents") {
		t.Errorf("TETHER_AGENTS_DIR = %q", env["TETHER_AGENTS_DIR"])
	}
	for _, name := range InputNames {
		if got := readInput(func(k string) string { return env[k] }, name); got != want[name] {
			t.Errorf("input %s arrives as %q, want %q", name, got, want[name])
		}
	}
}

// The first step computes the cache key and the build directory.
func TestActionYMLBuildKey(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("SKIPPING: no go on PATH for the build-key step")
	}
	a := readActionFile(t)
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(t.TempDir(), "output")
	tmp := t.TempDir()
	s := a.step(t, "build-key")
	values := map[string]string{"github.action_ref": "v1.2.3; rm -rf /"}
	extra := []string{"GITHUB_ACTION_PATH=" + root, "GITHUB_OUTPUT=" + outFile, "RUNNER_OS=Linux", "RUNNER_ARCH=X64", "RUNNER_TEMP=" + tmp}
	runStep(t, s, values, extra...)
	got := readOutputs(t, outFile)
	if !regexp.MustCompile(`^tether-Linux-X64-go[0-9.]+-v1\.2\.3__rm_-rf__-[0-9a-f]{16}$`).MatchString(got["key"]) {
		t.Errorf("key = %q", got["key"])
	}
	if got["dir"] != filepath.Join(tmp, "tether-bin") {
		t.Errorf("dir = %q", got["dir"])
	}
}
