package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/plan"
)

// A node whose new kernel (or initrd, modules, systemd) differs from the
// one it booted is flagged, per node, in every rendering of the plan and
// of the deploy; a node that needs no reboot is not.
func TestRebootRequiredIsShownPerNode(t *testing.T) {
	const want = "needs a reboot: the kernel, initrd, kernel-modules differ from the booted system"
	p := plan.New("path:/fleet", "", time.Unix(0, 0).UTC(), []plan.NodePlan{
		plan.ForNode(plan.NodeInput{Node: "rpi", CurrentSystem: "/nix/store/aaaa-nixos-system-rpi-1", NewSystem: "/nix/store/bbbb-nixos-system-rpi-2",
			BootedLinks: map[string]string{"kernel": "/nix/store/k1/bzImage", "initrd": "/nix/store/i1/initrd", "kernel-modules": "/nix/store/m1/lib", "systemd": "/nix/store/s"},
			NewLinks:    map[string]string{"kernel": "/nix/store/k2/bzImage", "initrd": "/nix/store/i2/initrd", "kernel-modules": "/nix/store/m2/lib", "systemd": "/nix/store/s"}}),
		plan.ForNode(plan.NodeInput{Node: "web", CurrentSystem: "/nix/store/cccc-nixos-system-web-1", NewSystem: "/nix/store/dddd-nixos-system-web-2",
			BootedLinks: map[string]string{"kernel": "/nix/store/k1/bzImage"}, NewLinks: map[string]string{"kernel": "/nix/store/k1/bzImage"}}),
	})
	var text bytes.Buffer
	if err := PlanText(&text, p); err != nil {
		t.Fatal(err)
	}
	md := PlanMarkdown(p, PlanMarkdownOptions{})
	for what, out := range map[string]string{"plan text": text.String(), "plan markdown": md} {
		if strings.Count(out, want) != 1 {
			t.Errorf("%s: want the reboot line once (for rpi):\n%s", what, out)
		}
	}
	if i, j := strings.Index(md, want), strings.Index(md, "<details><summary><code>web</code>"); i < 0 || j < 0 || i > j {
		t.Errorf("plan markdown: the reboot line is not in rpi's block:\n%s", md)
	}

	rep := &deploy.Report{DeployID: "d", Action: "switch", Started: time.Unix(0, 0), Finished: time.Unix(9, 0), Results: []deploy.Result{
		{Node: "rpi", Status: deploy.StatusRebootRequired, Action: "switch", RebootFor: []string{"kernel"}},
		{Node: "web", Status: deploy.StatusDeployed, Action: "switch"},
	}}
	text.Reset()
	if err := DeployText(&text, rep); err != nil {
		t.Fatal(err)
	}
	const one = "needs a reboot: the kernel differs from the booted system"
	for what, out := range map[string]string{"deploy text": text.String(), "deploy markdown": DeployMarkdown(rep, DeployMarkdownOptions{})} {
		if strings.Count(out, one) != 1 {
			t.Errorf("%s: want the reboot line once (for rpi):\n%s", what, out)
		}
	}
}
