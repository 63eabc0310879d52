package runner

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/agent"
)

func TestStatusAndGeneration(t *testing.T) {
	h := newHarness(t)
	a := h.system("a", fakeSystem{}, false)
	b := h.system("b", fakeSystem{}, false)
	h.installed(a)
	h.installed(b)
	h.running(b)

	// Before any deploy: no state dir, still a full answer.
	rep, err := h.r.Status(context.Background(), h.profile)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CurrentSystem != b || rep.CurrentGeneration != 2 || rep.ProfilePath != b || rep.InProgress != nil || rep.Last != nil {
		t.Errorf("status = %+v", rep)
	}
	if len(rep.Generations) != 2 || rep.Generations[0].Path != a || rep.Generations[0].Current ||
		rep.Generations[1].Number != 2 || !rep.Generations[1].Current || rep.Generations[1].Date.IsZero() {
		t.Errorf("generations = %+v", rep.Generations)
	}

	// A deploy in progress and a last result.
	if err := ensureStateDir(h.r.StateDir, nil); err != nil {
		t.Fatal(err)
	}
	if err := writeJSONAtomic(filepath.Join(h.r.StateDir, lastFile), agent.Result{DeployID: "earlier", Status: agent.StatusRolledBack}); err != nil {
		t.Fatal(err)
	}
	lock, err := acquireLock(context.Background(), h.r.StateDir, agent.LockInfo{DeployID: "now", Who: "ci"}, h.clock, 0)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = h.r.Status(context.Background(), h.profile)
	if err != nil {
		t.Fatal(err)
	}
	if rep.InProgress == nil || rep.InProgress.DeployID != "now" || rep.Last == nil || rep.Last.Status != agent.StatusRolledBack {
		t.Errorf("status during a deploy = %+v", rep)
	}
	lock.release()
	// A crashed runner's lock.json does not make a deploy "in progress".
	if err := writeJSONAtomic(filepath.Join(h.r.StateDir, lockInfoFile), agent.LockInfo{DeployID: "crashed"}); err != nil {
		t.Fatal(err)
	}
	if rep, _ = h.r.Status(context.Background(), h.profile); rep.InProgress != nil {
		t.Errorf("stale lock.json reported in progress: %+v", rep.InProgress)
	}

	g, err := h.r.Generation(h.profile, 1)
	if err != nil || g.Path != a || g.Current {
		t.Errorf("generation 1 = %+v %v", g, err)
	}
	if _, err := h.r.Generation(h.profile, 7); agent.Code(err) != agent.CodeNotFound {
		t.Errorf("generation 7: %v", err)
	}

	// No profile at all.
	rep, err = h.r.Status(context.Background(), filepath.Join(filepath.Dir(h.profile), "none"))
	if err != nil || rep.CurrentGeneration != 0 || len(rep.Generations) != 0 {
		t.Errorf("status of a missing profile = %+v %v", rep, err)
	}
}

func TestReadProfile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "system")
	mk := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	mk("/nix/store/aaa-one", filepath.Join(dir, "system-3-link"))
	mk("/nix/store/bbb-two", filepath.Join(dir, "system-12-link"))
	mk("/nix/store/ccc-other", filepath.Join(dir, "systemd-1-link")) // another profile's
	mk("system-12-link", p)
	st, err := readProfile(p)
	if err != nil || st.Generation != 12 || st.Path != "/nix/store/bbb-two" {
		t.Errorf("readProfile = %+v %v", st, err)
	}
	gens, err := listGenerations(p)
	if err != nil || len(gens) != 2 || gens[0].Number != 3 || gens[1].Number != 12 || !gens[1].Current {
		t.Errorf("listGenerations = %+v %v", gens, err)
	}
	// A profile pointing straight at a store path has no generation.
	q := filepath.Join(dir, "direct")
	mk("/nix/store/ddd-direct", q)
	if st, err := readProfile(q); err != nil || st.Generation != 0 || st.Path != "/nix/store/ddd-direct" {
		t.Errorf("direct profile = %+v %v", st, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readProfile(filepath.Join(dir, "file")); err == nil {
		t.Error("a regular file read as a profile")
	}
}

func TestStateDirOwner(t *testing.T) {
	testenv.NeedRoot(t, "to give the state dir another owner")
	dir := filepath.Join(t.TempDir(), "tether")
	if err := ensureStateDir(dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	if err := checkPrivateDir(dir, nil); agent.Code(err) != agent.CodeUnsafeStateDir {
		t.Errorf("dir of another user: %v", err)
	}
	if err := checkPrivateDir(dir, []int{12345}); err != nil {
		t.Errorf("dir of the sudo caller: %v", err)
	}
	if err := os.Chmod(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	if err := checkPrivateDir(dir, []int{12345}); agent.Code(err) != agent.CodeUnsafeStateDir {
		t.Errorf("group-writable dir: %v", err)
	}
	link := dir + "-link"
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if err := checkPrivateDir(link, []int{12345}); agent.Code(err) != agent.CodeUnsafeStateDir {
		t.Errorf("symlinked state dir: %v", err)
	}

	// status does not fail on a state dir it cannot trust; it says so.
	r := &Runner{StateDir: dir}
	rep, err := r.Status(context.Background(), filepath.Join(t.TempDir(), "system"))
	if err != nil || rep.Warning == "" {
		t.Errorf("status with an untrusted state dir: %+v %v", rep, err)
	}
}
