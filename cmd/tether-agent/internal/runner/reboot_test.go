package runner

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// rebootHarness is a machine on old (generation 1) whose boot loader is
// set up by loaderFile (under root), with new in the store.
func rebootHarness(t *testing.T, loaderFile string) (*harness, string, string) {
	t.Helper()
	h, old, newSys := onOld(t, false)
	if loaderFile != "" {
		p := filepath.Join(h.root, loaderFile)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("default nixos-generation-1.conf\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.m.nixCalls = nil
	return h, old, newSys
}

// runUntilReboot runs a --reboot deploy until the machine goes down (the
// agent is stopped by the shutdown) and returns its dir.
func (h *harness) runUntilReboot(req agent.Request) string {
	h.t.Helper()
	req.Reboot = true
	dir := h.prepare(req)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.m.onReboot = cancel
	res, err := h.r.Run(ctx, dir)
	if err != nil {
		h.t.Fatalf("Run: %v", err)
	}
	evs := readEvents(h.t, dir)
	if last := evs[len(evs)-1]; last.Type != agent.EventRebooting {
		h.t.Fatalf("the deploy did not stop at the reboot: last event %+v (result %s %s %s)", last, res.Status, res.Reason, res.Error)
	}
	return dir
}

func TestRebootRefusedWithoutAOneShotEntry(t *testing.T) {
	h, _, newSys := rebootHarness(t, "boot/extlinux/extlinux.conf")
	req := h.request("deploy-1", newSys)
	req.Reboot = true
	dir := h.prepare(req)
	res, err := h.r.Run(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != agent.StatusFailed || !strings.Contains(res.Error, "extlinux") || !strings.Contains(res.Error, "deploy without --reboot") {
		t.Errorf("result %s: %q; want failed, naming extlinux and what to do instead", res.Status, res.Error)
	}
	if got := agent.Steps(readEvents(t, dir)); !reflect.DeepEqual(got, []string{"locked", "previous", "done"}) {
		t.Errorf("events %q: want nothing changed", got)
	}
	if len(h.m.activated()) != 0 || len(h.m.nixCalls) != 0 || len(h.m.toolCalls) != 0 {
		t.Errorf("touched the machine: activations %q, nix-env %q, tools %q", h.m.activated(), h.m.nixCalls, h.m.toolCalls)
	}
}

func TestRebootBootsTheNewSystemOnceThenCommits(t *testing.T) {
	h, old, newSys := rebootHarness(t, "boot/loader/loader.conf")
	dir := h.runUntilReboot(h.request("deploy-1", newSys))

	// Before the reboot: the new system is generation 2 with a boot entry,
	// booted once; the profile and the default are still the old one.
	if got := agent.Steps(readEvents(t, dir)); !reflect.DeepEqual(got, []string{"locked", "previous", "profile-set", "activating", "rebooting"}) {
		t.Errorf("events before the reboot %q", got)
	}
	if gens, cur := h.generations(); !reflect.DeepEqual(gens, []int{1, 2}) || cur != "old" {
		t.Errorf("profile before the reboot: %v current %s; want [1 2], old", gens, cur)
	}
	if want := []string{"bootctl set-oneshot nixos-generation-2.conf", "systemctl reboot"}; !reflect.DeepEqual(h.m.toolCalls, want) {
		t.Errorf("tools %q, want %q", h.m.toolCalls, want)
	}
	if h.m.bootDefault != "old" || !slices.Equal(h.m.activated(), []string{"old boot"}) {
		t.Errorf("boot default %s, activations %q; want the old system's boot, writing the entries", h.m.bootDefault, h.m.activated())
	}
	if info, err := readLockInfo(h.r.StateDir); err != nil || info.DeployID != "deploy-1" {
		t.Errorf("lock.json %+v %v: the deploy must stay recorded across the reboot", info, err)
	}
	if _, err := os.Stat(filepath.Join(dir, tokenHashFile)); err != nil {
		t.Errorf("no token hash kept for the confirmation after the boot: %v", err)
	}

	// The machine boots the new system; the deployer follows, confirms.
	h.reboot(newSys)
	n := len(readEvents(t, dir))
	go func() { _ = h.r.Confirm(context.Background(), dir, testToken) }()
	watchdog := time.AfterFunc(20*time.Second, func() { h.clock.Advance(time.Hour) })
	defer watchdog.Stop()
	res, err := h.r.Reconcile(context.Background(), dir)
	if err != nil || res == nil {
		t.Fatalf("Reconcile = %+v %v", res, err)
	}
	evs := readEvents(t, dir)
	want := []string{"booted", "awaiting-confirmation", "confirmed", "committing", "profile-set", "activating", "committed", "done"}
	if got := agent.Steps(evs[n:]); !reflect.DeepEqual(got, want) {
		t.Errorf("events after the boot %q, want %q", got, want)
	}
	if res.Status != agent.StatusDeployed || !res.Rebooted || res.Running != newSys {
		t.Errorf("result %s (rebooted %v, running %s) %s %s", res.Status, res.Rebooted, res.Running, res.Reason, res.Error)
	}
	if gens, cur := h.generations(); !reflect.DeepEqual(gens, []int{1, 2}) || cur != "new" || h.m.bootDefault != "new" {
		t.Errorf("after the commit: %v current %s, boot default %s; want [1 2], new, new", gens, cur, h.m.bootDefault)
	}
	_ = old
	h.checkNoSecretsLeft(dir)
}

func TestRebootThatComesBackOnTheOldSystemRollsBack(t *testing.T) {
	h, old, newSys := rebootHarness(t, "boot/loader/loader.conf")
	dir := h.runUntilReboot(h.request("deploy-1", newSys))
	// The new system did not come up; a power cycle booted the default.
	h.reboot(old)
	res, err := h.r.Reconcile(context.Background(), dir)
	if err != nil || res == nil {
		t.Fatalf("Reconcile = %+v %v", res, err)
	}
	if res.Status != agent.StatusRolledBack || !strings.Contains(res.Reason, "came back on "+old) {
		t.Errorf("result %s: %q", res.Status, res.Reason)
	}
	if gens, cur := h.generations(); !reflect.DeepEqual(gens, []int{1}) || cur != "old" || h.m.bootDefault != "old" {
		t.Errorf("after: %v current %s, boot default %s; want [1], old, old", gens, cur, h.m.bootDefault)
	}
	if _, err := os.Stat(filepath.Join(h.root, "boot/loader/entries/nixos-generation-2.conf")); err == nil {
		t.Error("the new system's boot entry is still there")
	}
	h.checkNoSecretsLeft(dir)
}

func TestRebootWithoutConfirmationRebootsBack(t *testing.T) {
	h, old, newSys := rebootHarness(t, "boot/loader/loader.conf")
	dir := h.runUntilReboot(h.request("deploy-1", newSys))
	h.reboot(newSys)
	h.m.toolCalls = nil
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.m.onReboot = cancel
	h.r.observe = func(e agent.Event) {
		if e.Type == agent.EventAwaitingConfirmation {
			h.clock.Advance(agent.DefaultConfirmTimeout)
		}
	}
	n := len(readEvents(t, dir))
	if _, err := h.r.Reconcile(ctx, dir); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, dir)
	if got, want := agent.Steps(evs[n:]), []string{"booted", "awaiting-confirmation", "rolling-back", "activating", "rebooting"}; !reflect.DeepEqual(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if gens, cur := h.generations(); !reflect.DeepEqual(gens, []int{1}) || cur != "old" || h.m.bootDefault != "old" {
		t.Errorf("before rebooting back: %v current %s, boot default %s", gens, cur, h.m.bootDefault)
	}
	if !slices.Contains(h.m.toolCalls, "systemctl reboot") {
		t.Errorf("did not reboot back: %q", h.m.toolCalls)
	}

	h.r.observe = nil
	h.setBootID("33333333-3333-3333-3333-333333333333")
	h.reboot(old)
	h.setBootID("33333333-3333-3333-3333-333333333333")
	res, err := h.r.Reconcile(context.Background(), "")
	if err != nil || res == nil {
		t.Fatalf("Reconcile after rebooting back = %+v %v", res, err)
	}
	if res.Status != agent.StatusRolledBack || !strings.Contains(res.Reason, "rebooted back into "+old) || res.Running != old {
		t.Errorf("result %s running %s: %q", res.Status, res.Running, res.Reason)
	}
	h.checkNoSecretsLeft(dir)
}

func TestGRUBEntry(t *testing.T) {
	cfg := `menuentry "NixOS" --class nixos --unrestricted {
  linux /boot/kernels/x-bzImage init=/nix/store/a-nixos-system/init
}
submenu "NixOS - All configurations" --class submenu {
menuentry "NixOS - Configuration 12 (2024-02-01 - 24.05.20240201.v2)" --class nixos {
  linux /boot/kernels/y-bzImage init=/nix/store/b-nixos-system/init
}
menuentry "NixOS - Configuration 1 (2024-01-01 - 24.05.20240101.v1)" --class nixos {
  linux /boot/kernels/x-bzImage init=/nix/store/a-nixos-system/init
}
}
`
	got, err := grubEntry(cfg, 1)
	if want := "NixOS - All configurations>NixOS - Configuration 1 (2024-01-01 - 24.05.20240101.v1)"; err != nil || got != want {
		t.Errorf("grubEntry(1) = %q, %v; want %q", got, err, want)
	}
	if _, err := grubEntry(cfg, 2); err == nil {
		t.Error("grubEntry(2) found an entry; generation 2 has none")
	}
}
