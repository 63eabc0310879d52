package e2e

import (
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// TestBuildOnFrame1CopyOverLAN builds rpi's closure on frame1 and copies it
// from frame1 to rpi over their LAN: the relay in front of frame1 (the
// home uplink) must not carry the closure.
func TestBuildOnFrame1CopyOverLAN(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	// The first build on frame1 brings it the fixture's sources; from then
	// on an update sends only new derivations through the tunnel.
	if r := s.tether(ctx, "deploy", "--build-host", fixture.Frame1, fixture.RPi); r.code != exitOK {
		t.Fatalf("deploy v1 built on frame1: %s", r)
	}

	// A user of frame1 plants the fixed name the LAN copy's known_hosts
	// file used to go to: the deployer must not follow it.
	frame1 := s.fleet.Host(fixture.Frame1)
	hostSh(ctx, t, frame1, `mkdir -p /var/lib/victim && setpriv --reuid=4242 --regid=4242 --clear-groups -- ln -s /var/lib/victim /tmp/tether-lan`)

	s.setVariant(fixture.RPi, fixture.V2)
	relay := s.fleet.Relay
	before := relay.BytesUp() + relay.BytesDown()
	r := s.tether(ctx, "deploy", "--build-host", fixture.Frame1, fixture.RPi)
	if r.code != exitOK {
		t.Fatalf("deploy with --build-host frame1: %s", r)
	}
	tunnel := relay.BytesUp() + relay.BytesDown() - before
	res := result(t, r, fixture.RPi)
	s.wantRunning(ctx, fixture.RPi, fixture.V2)
	if res.BuiltOn != fixture.Frame1 || !strings.Contains(res.CopyRoute, "directly") {
		t.Errorf("built on %q, route %q; want frame1, directly", res.BuiltOn, res.CopyRoute)
	}
	if res.Copied.Bytes == 0 {
		t.Fatalf("nothing copied to rpi: %+v", res.Copied)
	}
	t.Logf("closure bytes frame1 → rpi: %d; bytes through the tunnel: %d", res.Copied.Bytes, tunnel)
	if tunnel*10 > res.Copied.Bytes {
		t.Errorf("the tunnel carried %d bytes for a %d-byte copy: the closure crossed it", tunnel, res.Copied.Bytes)
	}
	// frame1 holds the built system, rooted only for the run.
	if _, err := s.fleet.Host(fixture.Frame1).Exec(ctx, "nix-store", "--check-validity", res.New); err != nil {
		t.Errorf("the new system is not in frame1's store: %v", err)
	}
	if out := hostSh(ctx, t, frame1, "ls -d /tmp/tether.* 2>/dev/null || true"); strings.TrimSpace(out) != "" {
		t.Errorf("frame1 keeps the run's directory (GC roots, host keys) after the run: %s", out)
	}
	if out := hostSh(ctx, t, frame1, "ls -A /var/lib/victim"); out != "" {
		t.Errorf("the deployer wrote through the link planted at /tmp/tether-lan: %q", out)
	}
}

// TestBuildHostRelaysWhenItCannotReachTheNode builds web's closure on frame1,
// which has no route to web: the copy is relayed through the deployer, and
// the output says so.
func TestBuildHostRelaysWhenItCannotReachTheNode(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	r := s.tether(ctx, "deploy", "--build-host", fixture.Frame1, fixture.Web)
	if r.code != exitOK {
		t.Fatalf("deploy web built on frame1: %s", r)
	}
	s.wantRunning(ctx, fixture.Web, fixture.V1)
	res := result(t, r, fixture.Web)
	if res.Status != deploy.StatusDeployed || !strings.Contains(res.CopyRoute, "deployer") {
		t.Errorf("status %s, route %q; want deployed, relayed through the deployer", res.Status, res.CopyRoute)
	}
	if !strings.Contains(r.stderr, "relaying") {
		t.Errorf("the output does not say the copy was relayed:\n%s", r.stderr)
	}
}

// TestBuildFailureOnBuildHost: a configuration that does not build on
// frame1 is reported with the end of its build log, and nothing is
// activated anywhere.
func TestBuildFailureOnBuildHost(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	s.deployV1(ctx, fixture.RPi)
	history, _ := s.fleet.Host(fixture.RPi).ReadFile(ctx, fixture.HistoryFile)

	s.setVariant(fixture.RPi, fixture.BuildFails)
	r := s.tether(ctx, "deploy", "--build-host", fixture.Frame1, fixture.RPi)
	if r.code != exitFailed {
		t.Errorf("deploy of a configuration that does not build: exit %d, want %d", r.code, exitFailed)
	}
	res := result(t, r, fixture.RPi)
	if res.Status != deploy.StatusFailed || !strings.Contains(res.Error, "does not build (on purpose)") {
		t.Errorf("status %s, error %q; want failed with the build log's error line", res.Status, res.Error)
	}
	if !strings.Contains(res.Error, "frame1") {
		t.Errorf("error %q does not say the build failed on frame1", res.Error)
	}
	s.wantRunning(ctx, fixture.RPi, fixture.V1)
	if after, _ := s.fleet.Host(fixture.RPi).ReadFile(ctx, fixture.HistoryFile); string(after) != string(history) {
		t.Errorf("an activation ran on rpi after a failed build")
	}
}
