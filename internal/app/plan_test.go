package app

import (
	"os"
	"path/filepath"

	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/plan"
	"github.com/tetherdeploy/tether/pkg/remote/remotetest"
)

// storePath makes a store path for a package name and version.
func storePath(name string) string {
	return fmt.Sprintf("/nix/store/%032d-%s", len(name), name)
}

func closure(system string, pkgs ...string) []nix.PathInfo {
	out := []nix.PathInfo{{Path: system, NarSize: 1000}}
	for _, p := range pkgs {
		out = append(out, nix.PathInfo{Path: storePath(p), NarSize: 4096})
	}
	return out
}

// planApp is an application layer over a fake engine for nodes a and b,
// whose evaluation says where each node's new system is: it returns the
// engine, the layer, the target and each node's new system.
func planApp(t *testing.T) (*FakeEngine, *App, Target, map[string]string) {
	t.Helper()
	eng := &FakeEngine{}
	dir := t.TempDir()
	ev, err := FakeFlake(dir, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	a := &App{Eval: ev, Getenv: func(k string) string {
		return map[string]string{"USER": "tester", "HOME": t.TempDir(), "TETHER_AGENTS_DIR": t.TempDir()}[k]
	}, Engine: func(_ *Session, events deploy.Sink) Engine {
		eng.Events = events
		return eng
	}}
	tg := Target{Flake: dir, KeyFiles: []string{writeKey(t)}, KnownHosts: [][]byte{}}
	return eng, a, tg, newSystems(t, a, tg)
}

// newSystems reads the systems the fake flake gives nodes a and b.
func newSystems(t *testing.T, a *App, tg Target) map[string]string {
	t.Helper()
	s, err := a.open(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]string{}
	for _, n := range s.Nodes {
		out[n.Name] = n.Profiles[0].OutPath
	}
	return out
}

func nodePlan(t *testing.T, p *plan.Plan, name string) plan.NodePlan {
	t.Helper()
	return testenv.Find(t, p.Nodes, func(n plan.NodePlan) bool { return n.Node == name }, "no plan for %s", name)
}

func TestPlanDiffsWhatTheNodeRuns(t *testing.T) {
	eng, a, tg, sys := planApp(t)
	old := storePath("nixos-system-a-1")
	eng.Closures = map[string][]nix.PathInfo{
		"a": closure(sys["a"], "openssl-3.0.14", "curl-8.5.0"),
		"b": closure(sys["b"], "openssl-3.0.14"),
	}
	eng.States = map[string]deploy.NodeState{
		"a": {Profile: old, Closure: closure(old, "openssl-3.0.13", "curl-8.5.0", "jq-1.7.1")},
		"b": {Profile: sys["b"], Closure: closure(sys["b"], "openssl-3.0.14")},
	}
	p, err := a.Plan(context.Background(), PlanRequest{Target: tg})
	if err != nil {
		t.Fatal(err)
	}
	na := nodePlan(t, p, "a")
	if na.Status != plan.StatusOK || na.CurrentSystem != old || na.NewSystem != sys["a"] {
		t.Fatalf("a: %+v", na)
	}
	var changes []string
	for _, pk := range na.Diff.Packages {
		changes = append(changes, fmt.Sprintf("%s %s", pk.Kind, pk.Name))
	}
	for _, want := range []string{"upgraded openssl", "removed jq"} {
		if !slices.Contains(changes, want) {
			t.Errorf("a's changes %q lack %q", changes, want)
		}
	}
	if nb := nodePlan(t, p, "b"); nb.Status != plan.StatusNoChanges {
		t.Errorf("b runs its new system already: %+v", nb)
	}
	if PlanExit(p, err) != ExitOK {
		t.Errorf("exit %d for a complete plan", PlanExit(p, err))
	}
}

func TestPlanUnreachableAndUnbuiltNodes(t *testing.T) {
	eng, a, tg, sys := planApp(t)
	eng.Closures = map[string][]nix.PathInfo{"a": closure(sys["a"])}
	eng.BuildErrors = map[string]error{"b": errors.New("build: builder for '/nix/store/x-b.drv' failed with exit code 1")}
	eng.InspectErrors = map[string]error{"a": fmt.Errorf("%w: dial a.lan: no route to host", deploy.ErrUnreachable)}
	p, err := a.Plan(context.Background(), PlanRequest{Target: tg})
	if err != nil {
		t.Fatal(err)
	}
	if na := nodePlan(t, p, "a"); na.Status != plan.StatusUnreachable || !strings.Contains(na.Error, "no route to host") || na.NewSystem != sys["a"] {
		t.Errorf("a: %+v", na)
	}
	if nb := nodePlan(t, p, "b"); nb.Status != plan.StatusError || !strings.Contains(nb.Error, "failed with exit code 1") {
		t.Errorf("b: %+v", nb)
	}
	if slices.Contains(eng.Calls(), "inspect b") {
		t.Error("a node that did not build was queried")
	}
	if PlanExit(p, err) != ExitFailed {
		t.Errorf("exit %d for an incomplete plan", PlanExit(p, err))
	}
}

// A fork's pull request: no node is contacted, and every node builds on
// the deployer (a build host is a machine of the fleet too).
func TestPlanWithoutTargetsContactsNothing(t *testing.T) {
	eng, a, tg, sys := planApp(t)
	eng.Closures = map[string][]nix.PathInfo{"a": closure(sys["a"]), "b": closure(sys["b"])}
	var builtOn []string
	a.Engine = func(s *Session, events deploy.Sink) Engine {
		for _, n := range s.Nodes {
			builtOn = append(builtOn, n.Name+"@"+n.BuildHost)
		}
		return eng
	}
	tg.BuildHost = "frame1"
	p, err := a.Plan(context.Background(), PlanRequest{Target: tg, NoTargets: true, NoTargetsReason: "fork", DryActivate: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range p.Nodes {
		if n.Status != plan.StatusNotQueried || n.Error != "fork" {
			t.Errorf("%s: %+v", n.Node, n)
		}
	}
	for _, c := range eng.Calls() {
		if c != "build" {
			t.Errorf("the engine was asked to %s for a plan that may contact nothing", c)
		}
	}
	if want := []string{"a@" + deploy.Local, "b@" + deploy.Local}; !slices.Equal(builtOn, want) {
		t.Errorf("built on %q, want %q", builtOn, want)
	}
	if PlanExit(p, err) != ExitOK {
		t.Errorf("exit %d", PlanExit(p, err))
	}
}

func TestPlanDryActivateParsesEachNodesOutput(t *testing.T) {
	eng, a, tg, sys := planApp(t)
	old := storePath("nixos-system-old")
	eng.Closures = map[string][]nix.PathInfo{"a": closure(sys["a"]), "b": closure(sys["b"])}
	eng.States = map[string]deploy.NodeState{
		"a": {Profile: old, Closure: closure(old)},
		"b": {Profile: old, Closure: closure(old)},
	}
	eng.DeployReport = func(nodes []*fleet.Node, opts deploy.Options) *deploy.Report {
		if opts.Action != "dry-activate" || !opts.KeepGoing {
			t.Errorf("dry activation asked as %s, keep-going %v", opts.Action, opts.KeepGoing)
		}
		rep := &deploy.Report{}
		for _, n := range nodes {
			out := map[string]string{
				"a": "would restart the following units: nginx.service, sshd.service",
				"b": "activation script failed",
			}[n.Name]
			eng.Events(deploy.Event{Node: n.Name, Phase: deploy.PhaseActivate, Output: out})
			st := deploy.StatusDryActivated
			if n.Name == "b" {
				st = deploy.StatusFailed
			}
			rep.Results = append(rep.Results, deploy.Result{Node: n.Name, Status: st, Error: "exit 1"})
		}
		return rep
	}
	p, err := a.Plan(context.Background(), PlanRequest{Target: tg, DryActivate: true})
	if err != nil {
		t.Fatal(err)
	}
	na, nb := nodePlan(t, p, "a"), nodePlan(t, p, "b")
	if na.DryActivate == nil || !slices.Equal(na.DryActivate.Restart, []string{"nginx.service", "sshd.service"}) || na.DryActivate.Error != "" {
		t.Errorf("a's dry activation: %+v", na.DryActivate)
	}
	if nb.DryActivate == nil || !strings.Contains(nb.DryActivate.Error, "failed") {
		t.Errorf("b's dry activation: %+v", nb.DryActivate)
	}
	if PlanExit(p, err) != ExitFailed {
		t.Errorf("a failed dry activation exits %d", PlanExit(p, err))
	}
}

// writeKey writes a fresh private key for the session's credentials.
func writeKey(t *testing.T) string {
	t.Helper()
	_, key := remotetest.NewKey(t)
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
