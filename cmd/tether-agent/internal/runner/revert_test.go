package runner

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// revertHarness deploys "new" over "old" (generation 1) with a
// confirmation, as the first half of a fleet deploy does, and returns the
// result the deployer would build its Revert from.
func revertHarness(t *testing.T, newSys fakeSystem) (*harness, string, string, agent.Result) {
	t.Helper()
	h := newHarness(t)
	old, newPath := h.oldAndNew(newSys, false)
	h.running(old)
	res := h.runConfirmed(h.request("deploy-1", newPath))
	if res.Status != agent.StatusDeployed {
		t.Fatalf("first deploy: %s %s %s", res.Status, res.Reason, res.Error)
	}
	return h, old, newPath, res
}

// runConfirmed runs a deploy whose confirmation arrives as it should.
func (h *harness) runConfirmed(req agent.Request) agent.Result {
	h.t.Helper()
	dir := h.prepare(req)
	ctx := context.Background()
	go func() { _ = h.r.Confirm(ctx, dir, testToken) }()
	watchdog := time.AfterFunc(20*time.Second, func() { h.clock.Advance(time.Hour) })
	defer watchdog.Stop()
	res, err := h.r.Run(ctx, dir)
	if err != nil {
		h.t.Fatalf("Run: %v", err)
	}
	h.checkNoSecretsLeft(dir)
	return res
}

func TestRevertLeavesTheGenerationsAsBefore(t *testing.T) {
	h, old, newPath, first := revertHarness(t, fakeSystem{})
	if first.PreviousGeneration != 1 || first.Generation != 2 || !first.GenerationCreated {
		t.Fatalf("first deploy result: previous generation %d, generation %d, created %v; want 1, 2, true",
			first.PreviousGeneration, first.Generation, first.GenerationCreated)
	}

	req := h.request("deploy-1-rb", old)
	req.Revert = &agent.Revert{Generation: first.Generation, Path: newPath, To: first.PreviousGeneration}
	res := h.runConfirmed(req)
	if res.Status != agent.StatusDeployed {
		t.Fatalf("revert: %s %s %s", res.Status, res.Reason, res.Error)
	}
	if gens, cur := h.generations(); !reflect.DeepEqual(gens, []int{1}) || cur != "old" {
		t.Errorf("generations %v, current %q; want [1], old", gens, cur)
	}
	if res.Generation != 1 || res.GenerationCreated {
		t.Errorf("revert result: generation %d, created %v; want 1, false", res.Generation, res.GenerationCreated)
	}
	// Both in two phases: live, then committed once confirmed.
	if got, want := h.m.activated(), []string{"new test", "new boot", "old test", "old boot"}; !reflect.DeepEqual(got, want) {
		t.Errorf("activations %q, want %q", got, want)
	}
	if !slices.Contains(h.m.nixCalls, "-p "+h.profile+" --switch-generation 1") {
		t.Errorf("nix-env calls %q: no switch back to generation 1", h.m.nixCalls)
	}
}

// A revert whose activation fails is itself rolled back: the machine stays
// on what the fleet deploy gave it, generation 2 intact.
func TestRevertThatFailsKeepsTheDeployedGeneration(t *testing.T) {
	h, old, newPath, first := revertHarness(t, fakeSystem{})
	h.m.systems[old] = fakeSystem{code: 2}

	req := h.request("deploy-1-rb", old)
	req.Revert = &agent.Revert{Generation: first.Generation, Path: newPath, To: first.PreviousGeneration}
	res := h.runConfirmed(req)
	if res.Status != agent.StatusRolledBack {
		t.Fatalf("revert: %s, want rolled-back", res.Status)
	}
	if gens, cur := h.generations(); !reflect.DeepEqual(gens, []int{1, 2}) || cur != "new" {
		t.Errorf("generations %v, current %q; want [1 2], new", gens, cur)
	}
	if h.m.bootDefault != "new" {
		t.Errorf("boot default %s, want new: the failed revert never reached its commit", h.m.bootDefault)
	}
}

// When the profile moved after the deploy being reverted, the revert makes
// a new generation as any deploy would, says why, and deletes nothing.
func TestRevertAfterTheProfileMovedDeletesNothing(t *testing.T) {
	h, old, newPath, first := revertHarness(t, fakeSystem{})
	other := h.system("other", fakeSystem{}, false)
	h.installed(other) // generation 3, by someone else

	req := h.request("deploy-1-rb", old)
	req.Revert = &agent.Revert{Generation: first.Generation, Path: newPath, To: first.PreviousGeneration}
	dir := h.prepare(req)
	go func() { _ = h.r.Confirm(context.Background(), dir, testToken) }()
	res, err := h.r.Run(context.Background(), dir)
	if err != nil || res.Status != agent.StatusDeployed {
		t.Fatalf("revert: %v %s %s", err, res.Status, res.Error)
	}
	if gens, cur := h.generations(); !reflect.DeepEqual(gens, []int{1, 2, 3, 4}) || cur != "old" {
		t.Errorf("generations %v, current %q; want [1 2 3 4], old", gens, cur)
	}
	w, ok := findEvent(readEvents(t, dir), agent.EventWarning)
	if !ok || !strings.Contains(w.Error, "generation 3") {
		t.Errorf("warning %+v, want one saying the profile is at generation 3", w)
	}
}
