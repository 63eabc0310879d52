package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

func TestDeployFleetFromDeployNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := newSandbox(t, sandboxOpts{})

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
