package github

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/pkg/fleet"
)

type workflow struct {
	Name        string            `yaml:"name"`
	On          map[string]any    `yaml:"on"`
	Permissions map[string]string `yaml:"permissions"`
	Concurrency *struct {
		Group            string `yaml:"group"`
		CancelInProgress bool   `yaml:"cancel-in-progress"`
	} `yaml:"concurrency"`
	Jobs map[string]struct {
		RunsOn         string       `yaml:"runs-on"`
		TimeoutMinutes int          `yaml:"timeout-minutes"`
		Steps          []actionStep `yaml:"steps"`
	} `yaml:"jobs"`
}

// usesTether reports whether a step runs this action.
func usesTether(s actionStep) bool {
	return strings.HasPrefix(s.Uses, "tetherdeploy/tether@") || s.Uses == "./"
}

func readWorkflow(t *testing.T, name string) *workflow {
	t.Helper()
	var w workflow
	readYAML(t, filepath.Join(repoRoot, "examples", "workflows", name), &w)
	return &w
}

// Every example workflow parses, installs Nix before running tether, and
// gives tether only inputs that action.yml declares.
func TestExampleWorkflows(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "examples", "workflows", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("example workflows: %v", files)
	}
	a := readActionFile(t)
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			w := readWorkflow(t, name)
			if w.Name == "" || len(w.On) == 0 || len(w.Permissions) == 0 || len(w.Jobs) == 0 {
				t.Errorf("%s lacks name, on, permissions or jobs", name)
			}
			found := false
			for job, j := range w.Jobs {
				nix := -1
				for i, s := range j.Steps {
					if strings.Contains(s.Run, "nixos.org/nix/install") {
						nix = i
					}
					if s.Run != "" {
						checkBashSyntax(t, name+" "+job+" "+s.Name, s.Run)
					}
					if !usesTether(s) {
						continue
					}
					found = true
					if nix < 0 {
						t.Errorf("%s: job %s runs tether before installing Nix", name, job)
					}
					for k := range s.With {
						if _, ok := a.Inputs[k]; !ok {
							t.Errorf("%s: step %q passes %q, which action.yml does not declare", name, s.Name, k)
						}
					}
					for _, k := range []string{"ssh-private-key", "known-hosts"} {
						if v, _ := s.With[k].(string); !strings.HasPrefix(v, "${{ secrets.") {
							t.Errorf("%s: %s comes from %q, not a secret", name, k, v)
						}
					}
				}
				if j.TimeoutMinutes == 0 {
					t.Errorf("%s: job %s has no timeout", name, job)
				}
			}
			if !found {
				t.Errorf("%s never runs tether", name)
			}
		})
	}
}

func TestExampleWorkflowPermissionsAndConcurrency(t *testing.T) {
	plan := readWorkflow(t, "plan.yml")
	if _, ok := plan.On["pull_request"]; !ok {
		t.Error("plan.yml does not run on pull_request")
	}
	if want := map[string]string{"contents": "read", "pull-requests": "write"}; !reflect.DeepEqual(plan.Permissions, want) {
		t.Errorf("plan.yml permissions %v, want exactly %v", plan.Permissions, want)
	}

	deploy := readWorkflow(t, "deploy.yml")
	push, _ := deploy.On["push"].(map[string]any)
	if branches := fmt.Sprint(push["branches"]); branches != "[main]" {
		t.Errorf("deploy.yml runs on pushes to %s", branches)
	}
	if want := map[string]string{"contents": "read", "deployments": "write", "pull-requests": "write"}; !reflect.DeepEqual(deploy.Permissions, want) {
		t.Errorf("deploy.yml permissions %v, want exactly %v", deploy.Permissions, want)
	}
	if c := deploy.Concurrency; c == nil || c.Group == "" || c.CancelInProgress {
		t.Errorf("deploy.yml concurrency %+v: deploys must queue, never run at once nor cancel each other", c)
	}

	rollback := readWorkflow(t, "rollback.yml")
	dispatch, _ := rollback.On["workflow_dispatch"].(map[string]any)
	inputs, _ := dispatch["inputs"].(map[string]any)
	if _, ok := inputs["nodes"]; !ok {
		t.Error("rollback.yml has no nodes input")
	}
	if _, ok := inputs["generation"]; !ok {
		t.Error("rollback.yml has no generation input")
	}
	if c := rollback.Concurrency; c == nil || deploy.Concurrency == nil || c.Group != deploy.Concurrency.Group || c.CancelInProgress {
		t.Errorf("rollback.yml must share the deploy's concurrency group: %+v", c)
	}
	if _, ok := rollback.Permissions["pull-requests"]; ok {
		t.Error("rollback.yml asks for pull-requests, which it does not use")
	}
	for _, j := range rollback.Jobs {
		for _, s := range j.Steps {
			if usesTether(s) {
				want := map[string]any{"command": "rollback", "nodes": "${{ inputs.nodes }}", "generation": "${{ inputs.generation }}"}
				for k, v := range want {
					if s.With[k] != v {
						t.Errorf("rollback step %s = %v, want %v", k, s.With[k], v)
					}
				}
			}
		}
	}
}

// The tether.toml examples load as a fleet: every key is known and every
// jump names a node.
func TestExampleConfigs(t *testing.T) {
	tests := []struct {
		dir   string
		check func(t *testing.T, f *fleet.Fleet)
	}{
		{"home-fleet", func(t *testing.T, f *fleet.Fleet) {
			rpi := f.Node("rpi")
			if rpi == nil || len(rpi.Jumps) != 1 || rpi.Jumps[0].Host != "home.example.org" || rpi.Jumps[0].Port != 2222 {
				t.Errorf("rpi is not reached through frame1: %+v", rpi)
			}
			if rpi.BuildHost != "frame1" {
				t.Errorf("rpi build host %q", rpi.BuildHost)
			}
		}},
		{"tunnel", func(t *testing.T, f *fleet.Fleet) {
			if f.Node("frame1").ProxyCommand == "" || f.Node("nuc").ProxyCommand == "" {
				t.Error("the tunnel is not used for frame1 and the machines behind it")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(repoRoot, "examples", tt.dir, fleet.ConfigFileName))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, fleet.ConfigFileName), data, 0o644); err != nil {
				t.Fatal(err)
			}
			ev := &fleet.FakeEvaluator{
				Results: map[string]string{dir + "#nixosConfigurations": `{"frame1":` + testDrv("frame1", "x86_64-linux") +
					`,"rpi":` + testDrv("rpi", "aarch64-linux") + `,"nuc":` + testDrv("nuc", "x86_64-linux") + `}`},
				Errors: map[string]error{dir + "#deploy": fmt.Errorf("error: flake 'path:%s' does not provide attribute 'packages.x86_64-linux.deploy', 'legacyPackages.x86_64-linux.deploy' or 'deploy'", dir)},
			}
			f, err := fleet.Load(context.Background(), ev, fleet.LoadOptions{Dir: dir, LocalUser: "runner"})
			if err != nil {
				t.Fatalf("examples/%s/tether.toml: %v", tt.dir, err)
			}
			if got := strings.Join(f.Names(), " "); got != "frame1 nuc rpi" {
				t.Errorf("nodes %q", got)
			}
			tt.check(t, f)
		})
	}
}

// testDrv is an evaluated toplevel as the fleet loader's evaluation
// returns it.
func testDrv(name, system string) string {
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:])[:32]
	return fmt.Sprintf(`{"drvPath":"/nix/store/%s-%s.drv","out":"/nix/store/%s-%s","name":%q,"system":%q}`, h, name, h, name, name, system)
}

// The Dockerfile copies only what exists and puts the agents where tether
// looks for them beside its binary.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var bin, agents string
	stages := 0
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			stages++
		case "COPY":
			if strings.HasPrefix(f[1], "--from=") {
				if strings.HasSuffix(f[3], "/tether") {
					bin = f[3]
				} else {
					agents = f[3]
				}
				continue
			}
			for _, src := range f[1 : len(f)-1] {
				if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
					t.Errorf("Dockerfile copies %s: %v", src, err)
				}
			}
		}
	}
	if stages != 2 {
		t.Errorf("%d stages, want a build stage and the final image", stages)
	}
	if want := filepath.Join(filepath.Dir(bin), "..", "share", "tether", "agents"); filepath.Clean(want) != agents {
		t.Errorf("agents at %q, tether at %q: tether looks in %q", agents, bin, filepath.Clean(want))
	}
	if !strings.Contains(string(data), "bash scripts/build-agents.sh") {
		t.Error("the image does not build the agents with scripts/build-agents.sh")
	}
}
