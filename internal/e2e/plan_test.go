package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/plan"
)

func (s *sandbox) plan(ctx context.Context, args ...string) (*plan.Plan, run) {
	s.t.Helper()
	r := s.tether(ctx, append([]string{"plan", "--format", "json"}, args...)...)
	var p plan.Plan
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		s.t.Fatalf("plan JSON: %v\n%s", err, r)
	}
	return &p, r
}

func nodePlan(t *testing.T, p *plan.Plan, node string) plan.NodePlan {
	t.Helper()
	return testenv.Find(t, p.Nodes, func(n plan.NodePlan) bool { return n.Node == node }, "no plan for %s", node)
}

// closureBytes sums the NAR sizes of a closure on the runner, with
// nix-store itself rather than tether's code.
func closureBytes(t *testing.T, ctx context.Context, env []string, path string) int64 {
	t.Helper()
	cmd := exec.CommandContext(ctx, "sh", "-c", `for p in $(nix-store -qR "$1"); do nix-store -q --size "$p"; done`, "sh", path)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("closure size of %s: %v", path, err)
	}
	var sum int64
	for _, f := range strings.Fields(string(out)) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	return sum
}

func TestPlanShowsWhatADeployWouldChange(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	s.deployV1(ctx, fixture.Frame1, fixture.RPi)
	for _, h := range fixture.Hosts() {
		s.setVariant(h, fixture.V2)
	}
	rpiBefore := s.running(ctx, fixture.RPi)

	p, r := s.plan(ctx)
	if r.code != exitOK {
		t.Fatalf("plan: %s", r)
	}
	rp := nodePlan(t, p, fixture.RPi)
	if rp.Status != plan.StatusOK || rp.Diff == nil {
		t.Fatalf("rpi plan: status %s, diff %v; want ok with a diff", rp.Status, rp.Diff)
	}
	got := map[string]string{}
	for _, pkg := range rp.Diff.Packages {
		got[pkg.Name] = string(pkg.Kind) + " " + strings.Join(pkg.Before, ",") + " -> " + strings.Join(pkg.After, ",")
	}
	want := map[string]string{
		"openssl": "upgraded 3.0.13 -> 3.0.14",
		"hello":   "upgraded 2.12 -> 2.12.1",
		"curl":    "downgraded 8.5.0 -> 8.4.0",
		"nano":    "removed 7.2 -> ",
		"jq":      "added  -> 1.7.1",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("rpi %s: %q, want %q", name, got[name], w)
		}
	}
	if _, ok := got["zlib"]; ok {
		t.Errorf("zlib is unchanged but listed: %q", got["zlib"])
	}
	newSys := nodePlan(t, p, fixture.RPi).NewSystem
	wantDelta := closureBytes(t, ctx, s.env, newSys) - closureBytes(t, ctx, s.env, rpiBefore.Toplevel)
	if d := rp.Diff.BytesDelta(); d != wantDelta {
		t.Errorf("rpi size delta %d, want %d (from nix-store)", d, wantDelta)
	}

	if wp := nodePlan(t, p, fixture.Web); wp.Status != plan.StatusFresh {
		t.Errorf("web (never deployed) plan status %s, want fresh", wp.Status)
	}

	// Planning changed nothing on the hosts.
	if after := s.running(ctx, fixture.RPi); after != rpiBefore {
		t.Errorf("rpi changed during plan: %v -> %v", rpiBefore, after)
	}
	if g := s.generations(ctx, fixture.RPi); len(g) != 1 {
		t.Errorf("rpi generations %v after plan, want only v1's", g)
	}

	// The same closure deployed: no changes.
	s.setVariant(fixture.Frame1, fixture.V1)
	p, _ = s.plan(ctx, fixture.Frame1)
	if fp := nodePlan(t, p, fixture.Frame1); fp.Status != plan.StatusNoChanges {
		t.Errorf("frame1 plan of its running system: %s, want no-changes", fp.Status)
	}
}

func TestPlanDryActivate(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	s.deployV1(ctx, fixture.Web)
	s.setVariant(fixture.Web, fixture.V2)
	before := s.running(ctx, fixture.Web)
	profileBefore, _ := s.fleet.Host(fixture.Web).ReadLink(ctx, "/nix/var/nix/profiles/system")

	p, r := s.plan(ctx, "--dry-activate", fixture.Web)
	if r.code != exitOK {
		t.Fatalf("plan --dry-activate: %s", r)
	}
	d := nodePlan(t, p, fixture.Web).DryActivate
	if d == nil {
		t.Fatalf("no dry-activate result\n%s", r)
	}
	want := plan.DryActivate{
		Stop:           []string{"backup.service", "old-daemon.service"},
		NotStopped:     []string{"dbus.service"},
		Reload:         []string{"nscd.service"},
		Restart:        []string{"httpd.service"},
		Start:          []string{"backup.service", "new-daemon.service"},
		RestartSystemd: true,
	}
	got := *d
	got.Other = nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dry-activate (-want +got):\n%s", diff)
	}
	if after := s.running(ctx, fixture.Web); after != before {
		t.Errorf("dry activation changed the running system: %v -> %v", before, after)
	}
	if prof, _ := s.fleet.Host(fixture.Web).ReadLink(ctx, "/nix/var/nix/profiles/system"); prof != profileBefore {
		t.Errorf("dry activation changed the profile: %s -> %s", profileBefore, prof)
	}
}

func TestPlanUnreachableNode(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	if err := s.fleet.Host(fixture.RPi).StopSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	p, r := s.plan(ctx)
	if r.code != exitFailed {
		t.Errorf("plan with an unreachable node: exit %d, want %d", r.code, exitFailed)
	}
	if rp := nodePlan(t, p, fixture.RPi); rp.Status != plan.StatusUnreachable || rp.Error == "" {
		t.Errorf("rpi: %s (%q), want unreachable with the reason", rp.Status, rp.Error)
	}
	for _, h := range []string{fixture.Frame1, fixture.Web} {
		if np := nodePlan(t, p, h); np.Status != plan.StatusFresh {
			t.Errorf("%s: %s, want fresh (still planned)", h, np.Status)
		}
	}
}

// TestPlanBuildsOnTheBuildHost plans rpi, whose tether.toml entry builds it
// on frame1: the plan builds there and reads the new closure there.
func TestPlanBuildsOnTheBuildHost(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	s.writeConfig("[nodes.rpi]\nbuild_host = \"frame1\"\n")
	s.deployV1(ctx, fixture.RPi)
	s.setVariant(fixture.RPi, fixture.V2)
	p, r := s.plan(ctx, fixture.RPi)
	if r.code != exitOK {
		t.Fatalf("plan: %s", r)
	}
	rp := nodePlan(t, p, fixture.RPi)
	if rp.Status != plan.StatusOK || rp.Diff == nil || rp.Diff.Count(plan.Added) != 1 {
		t.Fatalf("rpi plan: %s %+v, want ok with jq added", rp.Status, rp.Diff)
	}
	if !strings.Contains(r.stderr, "on frame1") {
		t.Errorf("the plan did not build on frame1:\n%s", r.stderr)
	}
	if _, err := s.fleet.Host(fixture.Frame1).Exec(ctx, "nix-store", "--check-validity", rp.NewSystem); err != nil {
		t.Errorf("the new system is not in frame1's store: %v", err)
	}
	s.wantRunning(ctx, fixture.RPi, fixture.V1)
}
