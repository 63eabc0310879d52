package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

func TestDeployFleetFromDeployNodes(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})

	r := s.tether(ctx, "deploy")
	if r.code != 0 {
		t.Fatalf("deploy v1: %s", r)
	}
	for _, h := range fixture.Hosts() {
		s.wantRunning(ctx, h, fixture.V1)
		if res := result(t, r, h); res.Status != deploy.StatusDeployed || res.Copied.Paths == 0 {
			t.Errorf("%s: status %s, copied %d paths; want deployed with a copy", h, res.Status, res.Copied.Paths)
		}
	}

	// The same closure again: nothing crosses the wire.
	r = s.tether(ctx, "deploy")
	if r.code != 0 {
		t.Fatalf("redeploy v1: %s", r)
	}
	for _, h := range fixture.Hosts() {
		if res := result(t, r, h); res.Copied.Paths != 0 || res.Copied.Bytes != 0 {
			t.Errorf("%s: redeploy of the same closure copied %d paths (%d bytes), want none", h, res.Copied.Paths, res.Copied.Bytes)
		}
	}

	for _, h := range fixture.Hosts() {
		s.setVariant(h, fixture.V2)
	}
	r = s.tether(ctx, "deploy")
	if r.code != 0 {
		t.Fatalf("deploy v2: %s", r)
	}
	for _, h := range fixture.Hosts() {
		s.wantRunning(ctx, h, fixture.V2)
	}
}

// TestDeployFleetFromTetherToml deploys nodes that exist only as
// nixosConfigurations, described in tether.toml: frame1 behind the tunnel,
// rpi through frame1 by node name, selected by tag.
func TestDeployFleetFromTetherToml(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{tweak: func(h map[string]fixture.HostConf) {
		// Only web stays in the flake's deploy.nodes.
		for name := range h {
			if name != fixture.Web {
				delete(h, name)
			}
		}
	}})
	frame1 := s.fleet.Host(fixture.Frame1)
	rpi := s.fleet.Host(fixture.RPi)
	host, port, err := net.SplitHostPort(frame1.SSHAddr)
	if err != nil {
		t.Fatal(err)
	}
	s.writeConfig(fmt.Sprintf(`
[defaults]
ssh_user = "root"

[nodes.frame1]
hostname = %q
port = %s
tags = ["home"]

[nodes.rpi]
hostname = %q
jump = ["frame1"]
tags = ["home", "pi"]

[nodes.web]
tags = ["cloud"]
`, host, port, rpi.IP.String()))

	r := s.tether(ctx, "deploy", "@home")
	if r.code != exitOK {
		t.Fatalf("deploy @home: %s", r)
	}
	if len(r.report.Results) != 2 {
		t.Errorf("@home selected %d nodes, want frame1 and rpi", len(r.report.Results))
	}
	s.wantRunning(ctx, fixture.Frame1, fixture.V1)
	s.wantRunning(ctx, fixture.RPi, fixture.V1)
	if _, err := s.fleet.Host(fixture.Web).ReadFile(ctx, fixture.GenerationFile); err == nil {
		t.Errorf("web was deployed but not selected")
	}

	s.setVariant(fixture.RPi, fixture.V2)
	r = s.tether(ctx, "deploy")
	if r.code != exitOK {
		t.Fatalf("deploy all: %s", r)
	}
	s.wantRunning(ctx, fixture.RPi, fixture.V2)
	s.wantRunning(ctx, fixture.Web, fixture.V1)
	if res := result(t, r, fixture.Frame1); res.Copied.Paths != 0 {
		t.Errorf("frame1 unchanged but %d paths copied", res.Copied.Paths)
	}
}

func TestConfigErrorsTouchNothing(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{timeout: 5 * time.Minute})
	s.writeConfig("[nodes.rpi]\njump = [\"nowhere\"]\n")
	r := s.tether(ctx, "deploy")
	if r.code != exitUsage {
		t.Fatalf("deploy with a bad tether.toml: exit %d, want %d\n%s", r.code, exitUsage, r)
	}
	if !strings.Contains(r.stderr, "tether.toml:2") || !strings.Contains(r.stderr, "nowhere") {
		t.Errorf("error does not name tether.toml:2 and the unknown jump target:\n%s", r.stderr)
	}
	s.writeConfig("")
	r = s.tether(ctx, "deploy", "nosuchnode")
	if r.code != exitUsage || !strings.Contains(r.stderr, "frame1") {
		t.Errorf("unknown node: exit %d, want %d with the known nodes listed\n%s", r.code, exitUsage, r)
	}
	for _, h := range fixture.Hosts() {
		if _, err := s.fleet.Host(h).ReadFile(ctx, fixture.GenerationFile); err == nil {
			t.Errorf("%s was activated despite the configuration error", h)
		}
	}
}

// TestHealthChecksGateTheConfirmation: a deployer-side HTTP check that
// passes lets the deploy confirm; one that fails withholds the
// confirmation, and the node rolls back by itself.
func TestHealthChecksGateTheConfirmation(t *testing.T) {
	ctx, s := newSandbox(t, sandboxOpts{})
	web := s.fleet.Host(fixture.Web).IP.String()
	s.writeConfig(fmt.Sprintf(`
[[nodes.web.health]]
name = "front page"
http = "http://%s:%d/"

[[nodes.web.health]]
command = ["test", "-e", "/run/fixture/httpd.pid"]
`, web, fixture.HTTPPort))
	r := s.tether(ctx, "deploy", fixture.Web)
	if r.code != exitOK {
		t.Fatalf("deploy with passing health checks: %s", r)
	}
	if !strings.Contains(r.stderr, "health check front page passed") {
		t.Errorf("the output does not show the health check:\n%s", r.stderr)
	}

	s.writeConfig(fmt.Sprintf(`
[[nodes.web.health]]
http = "http://%s:%d/status-page-that-v2-lacks"
timeout = "2s"
`, web, fixture.HTTPPort))
	s.setVariant(fixture.Web, fixture.V2)
	r = s.tether(ctx, "deploy", "--confirm-timeout", short, fixture.Web)
	if r.code != exitRolledBack {
		t.Fatalf("deploy with a failing health check: exit %d, want %d\n%s", r.code, exitRolledBack, r)
	}
	if res := result(t, r, fixture.Web); !strings.Contains(res.Error, "status 404") {
		t.Errorf("the output does not say why the health check failed:\n%s", r.stderr)
	}
	s.wantRunning(ctx, fixture.Web, fixture.V1)
}
