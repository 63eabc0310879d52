package deploy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/fleet"
)

func TestMapAgentResult(t *testing.T) {
	for _, tc := range []struct {
		res     agent.Result
		err     error
		want    Status
		wantErr string
	}{
		{agent.Result{Status: agent.StatusDeployed}, nil, StatusDeployed, ""},
		{agent.Result{Status: agent.StatusRebootRequired}, nil, StatusRebootRequired, ""},
		{agent.Result{Status: agent.StatusDryActivated}, nil, StatusDryActivated, ""},
		{agent.Result{Status: agent.StatusRolledBack, Reason: "no confirmation within 30s"}, nil, StatusRolledBack, "no confirmation within 30s"},
		{agent.Result{Status: agent.StatusRollbackFailed, Reason: "activation failed", Error: "previous system gone"}, nil, StatusUncertain, "previous system gone"},
		{agent.Result{Status: agent.StatusFailed, Error: "autoRollback off"}, nil, StatusFailed, "autoRollback off"},
		{agent.Result{}, fmt.Errorf("%w: lost contact", errUncertain), StatusUncertain, "lost contact"},
		{agent.Result{}, errors.New("start system: deploy x from y in progress"), StatusFailed, "in progress"},
	} {
		got, err := mapAgentResult(tc.res, tc.err)
		if got != tc.want {
			t.Errorf("%+v, %v: status %s, want %s", tc.res, tc.err, got, tc.want)
		}
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v, %v: error %v, want %q", tc.res, tc.err, err, tc.wantErr)
		}
	}
}

func TestPickGeneration(t *testing.T) {
	st := agent.StatusReport{CurrentGeneration: 7, Generations: []agent.Generation{
		{Number: 3, Path: "/nix/store/a"}, {Number: 5, Path: "/nix/store/b"}, {Number: 7, Path: "/nix/store/c", Current: true}, {Number: 8, Path: "/nix/store/d"},
	}}
	if g, err := pickGeneration(st, 0); err != nil || g.Number != 5 {
		t.Errorf("previous of 7: %d, %v; want 5 (the newest older one, gaps allowed)", g.Number, err)
	}
	if g, err := pickGeneration(st, 3); err != nil || g.Path != "/nix/store/a" {
		t.Errorf("named 3: %+v, %v", g, err)
	}
	if _, err := pickGeneration(st, 7); err == nil || !strings.Contains(err.Error(), "already the current") {
		t.Errorf("rolling back to the current generation: %v, want a refusal", err)
	}
	if _, err := pickGeneration(st, 4); err == nil || !strings.Contains(err.Error(), "have 3, 5, 7, 8") {
		t.Errorf("missing generation: %v, want the list of existing ones", err)
	}
	first := agent.StatusReport{CurrentGeneration: 1, Generations: []agent.Generation{{Number: 1, Current: true}}}
	if _, err := pickGeneration(first, 0); err == nil {
		t.Errorf("a node with one generation has nothing to roll back to")
	}
}

func TestAgentArgvSwitchesUser(t *testing.T) {
	argv := []string{"/tmp/tether/agent-x", "status"}
	mk := func(s fleet.Settings) *agentHome { return newAgentHome("rpi", s) }
	if got := mk(fleet.Settings{SSHUser: "root", User: "root"}).argv(argv); !slices.Equal(got, argv) {
		t.Errorf("same user: %q", got)
	}
	got := mk(fleet.Settings{SSHUser: "deploy", User: "root", Sudo: "sudo -u"}).argv(argv)
	if want := []string{"sudo", "-n", "-u", "root", "/tmp/tether/agent-x", "status"}; !slices.Equal(got, want) {
		t.Errorf("sudo: %q, want %q", got, want)
	}
	got = mk(fleet.Settings{SSHUser: "deploy", User: "root", Sudo: "doas -u", InteractiveSudo: true}).argv(argv)
	if want := []string{"doas", "-u", "root", "/tmp/tether/agent-x", "status"}; !slices.Equal(got, want) {
		t.Errorf("doas: %q, want %q", got, want)
	}
}

func TestConnectionForAppliesSSHOpts(t *testing.T) {
	n := &fleet.Node{
		Name: "rpi", Hostname: "10.0.1.20",
		Jumps:    []fleet.Hop{{Node: "frame1", Host: "frame1.example.net", User: "admin", SSHOpts: []string{"-p", "2222"}}},
		Settings: fleet.Settings{SSHUser: "root", SSHOpts: []string{"-o", "Port=2200", "-i", "~/.ssh/fleet", "-o", "UserKnownHostsFile=~/.ssh/fleet_hosts"}},
	}
	c, err := ConnectionFor(n)
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Target
	if tg.Host != "10.0.1.20" || tg.Port != 2200 || tg.User != "root" {
		t.Errorf("target %+v", tg)
	}
	if len(tg.Jumps) != 1 || tg.Jumps[0].Port != 2222 || tg.Jumps[0].User != "admin" || tg.Jumps[0].Name != "frame1" {
		t.Errorf("jumps %+v", tg.Jumps)
	}
	if !slices.Equal(c.IdentityFiles, []string{"~/.ssh/fleet"}) || !slices.Equal(c.KnownHostsFiles, []string{"~/.ssh/fleet_hosts"}) {
		t.Errorf("files %q %q", c.IdentityFiles, c.KnownHostsFiles)
	}
	n.Settings.SSHOpts = []string{"-o", "StrictHostKeyChecking=no"}
	if _, err := ConnectionFor(n); err == nil || !strings.Contains(err.Error(), "StrictHostKeyChecking") {
		t.Errorf("an option that would weaken host key checking: %v, want an error naming it", err)
	}
}
