package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// TestDeployWithReboot deploys a new kernel with --reboot to two nodes in
// two waves: each boots the new system once, is confirmed from that boot,
// and only then has it as its boot default; the second wave reboots after
// the first is done. A release that does not come back from its one boot
// leaves the node's default on the previous system, and the report says a
// power cycle brings it back — which it does. A boot loader without a
// one-shot entry is refused before anything changes.
func TestDeployWithReboot(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{topology: testhost.Direct(3), timeout: 20 * time.Minute})
	if r := s.tether(ctx, "deploy", "h01", "h02", "h03"); r.code != exitOK {
		t.Fatalf("deploy v1: %s", r)
	}
	s.writeConfig("[nodes.h02]\nwave = 1\n")
	// Booted from their boot loader, as machines are: /run/booted-system
	// is v1.
	for _, h := range []string{"h01", "h02"} {
		if err := s.fleet.Host(h).Reset(ctx); err != nil {
			t.Fatal(err)
		}
		s.waitSSH(ctx, h)
	}

	t.Run("boots once, confirmed from that boot, then the default; one wave at a time", func(t *testing.T) {
		s.t = t
		before := map[string]machine{}
		boots := map[string]string{}
		for _, h := range []string{"h01", "h02"} {
			before[h] = s.machine(ctx, h)
			boots[h] = s.fleet.Host(h).BootID()
			s.setVariant(h, fixture.Kernel)
		}
		// The plan says the new kernel needs a reboot.
		if p := s.tether(ctx, "plan", "h01"); p.code != exitOK || !strings.Contains(p.stdout, "reboot") {
			t.Errorf("plan does not say the kernel change needs a reboot:\n%s", p)
		}
		r := s.tether(ctx, "deploy", "--reboot", "h01", "h02")
		if r.code != exitOK {
			t.Fatalf("deploy --reboot: %s", r)
		}
		for _, h := range []string{"h01", "h02"} {
			res := result(t, r, h)
			m := s.machine(ctx, h)
			if res.Status != deploy.StatusDeployed || !res.Rebooted || res.Current != m.running {
				t.Errorf("%s: report %s, rebooted %v, runs %s; want deployed after a reboot", h, res.Status, res.Rebooted, res.Current)
			}
			if s.fleet.Host(h).BootID() == boots[h] {
				t.Errorf("%s did not reboot", h)
			}
			s.wantRunning(ctx, h, fixture.Kernel)
			if m.booted != m.running || m.bootDefault != m.running || len(m.gens) != len(before[h].gens)+1 {
				t.Errorf("%s: %+v; want the new system booted, the default, one generation more than %v", h, m, before[h].gens)
			}
		}
		// Wave 1 was activated (and so rebooted) only once wave 0 had
		// rebooted and committed; its copy may run ahead, which changes
		// nothing on it.
		i0 := strings.Index(r.stderr, "[h01] done: deployed")
		i1 := strings.Index(r.stderr, "[h02] activate:")
		if i0 < 0 || i1 < 0 || i1 < i0 {
			t.Errorf("h02 (wave 1) was activated before h01 (wave 0) was done:\n%s", r.stderr)
		}
	})

	t.Run("not back in time: the default is still the previous system", func(t *testing.T) {
		s.t = t
		h := s.fleet.Host("h01")
		before := s.machine(ctx, "h01")
		s.setVariant("h01", fixture.Hang) // hangs while booting: sshd never starts
		start := time.Now()
		r := s.tether(ctx, "deploy", "--reboot", "--activation-timeout", "8s", "--confirm-timeout", "5s", "h01")
		t.Logf("gave up after %s", time.Since(start).Round(time.Second))
		res := result(t, r, "h01")
		if r.code == exitOK || res.Status != deploy.StatusUncertain || !strings.Contains(res.Error, "power cycle brings it back") ||
			!strings.Contains(res.Error, before.running) {
			t.Fatalf("report %s: %q; want uncertain, saying a power cycle brings back %s", res.Status, res.Error, before.running)
		}
		if m := s.machine(ctx, "h01"); m.bootDefault != before.running {
			t.Errorf("boot default %s while the new system hangs, want still %s", m.bootDefault, before.running)
		}
		// Someone power-cycles it: back on the previous system, and the
		// next contact ends the deploy as rolled back.
		if err := h.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		s.waitSSH(ctx, "h01")
		st := s.tether(ctx, "status", "--json", "h01")
		if !strings.Contains(st.stdout, "rolled-back") || !strings.Contains(st.stdout, "came back on") {
			t.Errorf("status after the power cycle does not report the deploy rolled back:\n%s", st)
		}
		m := s.machine(ctx, "h01")
		if m.running != before.running || m.bootDefault != before.running || !slices.Equal(m.gens, before.gens) || m.profile != before.profile {
			t.Errorf("after the power cycle: %+v; want exactly as before: %+v", m, before)
		}
	})

	t.Run("a boot loader without a one-shot entry is refused", func(t *testing.T) {
		s.t = t
		h := s.fleet.Host("h03")
		// An extlinux machine (a Raspberry Pi booted by U-Boot).
		if err := os.RemoveAll(filepath.Join(h.Dir, "boot", "loader")); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(h.Dir, "boot", "extlinux"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(h.Dir, "boot", "extlinux", "extlinux.conf"), []byte("DEFAULT nixos-default\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := s.machine(ctx, "h03")
		history, _ := h.ReadFile(ctx, fixture.HistoryFile)
		s.setVariant("h03", fixture.Kernel)
		r := s.tether(ctx, "deploy", "--reboot", "h03")
		res := result(t, r, "h03")
		if r.code == exitOK || res.Status != deploy.StatusFailed || !strings.Contains(res.Error, "extlinux") || !strings.Contains(res.Error, "deploy without --reboot") {
			t.Errorf("report %s: %q; want failed, naming extlinux and what to do instead", res.Status, res.Error)
		}
		after, _ := h.ReadFile(ctx, fixture.HistoryFile)
		if m := s.machine(ctx, "h03"); m.running != before.running || m.profile != before.profile || !slices.Equal(m.gens, before.gens) || string(after) != string(history) {
			t.Errorf("the machine changed: %+v (before %+v)", m, before)
		}
	})
}
