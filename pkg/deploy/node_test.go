package deploy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/remote"
)

func TestConnectionForProxyCommandCarriesTheFirstHop(t *testing.T) {
	n := &fleet.Node{
		Name: "rpi", Hostname: "192.168.1.20", ProxyCommand: "tunnel-client access ssh --hostname %h",
		Jumps:    []fleet.Hop{{Node: "frame1", Host: "frame1.internal"}},
		Settings: fleet.Settings{SSHUser: "root"},
	}
	c, err := ConnectionFor(n)
	if err != nil {
		t.Fatal(err)
	}
	if c.Target.ProxyCommand != "" || len(c.Target.Jumps) != 1 || c.Target.Jumps[0].ProxyCommand != n.ProxyCommand {
		t.Errorf("the proxy must reach the first hop, not the node: %+v", c.Target)
	}
	n.Jumps = nil
	c, err = ConnectionFor(n)
	if err != nil || c.Target.ProxyCommand != n.ProxyCommand {
		t.Errorf("without hops the proxy reaches the node: %+v %v", c.Target, err)
	}
}

func TestConnectionForBadHopOptionsNameTheHop(t *testing.T) {
	n := &fleet.Node{Name: "rpi", Hostname: "rpi.lan",
		Jumps: []fleet.Hop{{Node: "frame1", Host: "frame1.lan", SSHOpts: []string{"-o", "ForwardX11=yes"}}}}
	_, err := ConnectionFor(n)
	if err == nil || !strings.Contains(err.Error(), "node rpi") || !strings.Contains(err.Error(), "jump host") || !strings.Contains(err.Error(), "ForwardX11") {
		t.Errorf("error %v, want it to name the node, the hop and the option", err)
	}
}

func TestDescribeTarget(t *testing.T) {
	for _, tc := range []struct {
		t    remote.Target
		want string
	}{
		{remote.Target{Host: "web.example.net"}, "web.example.net"},
		{remote.Target{Host: "web.example.net", Port: 22}, "web.example.net"},
		{remote.Target{Host: "10.0.0.5", Port: 2222}, "10.0.0.5:2222"},
		{remote.Target{Host: "rpi.lan", Jumps: []remote.Hop{{Host: "tunnel"}, {Host: "frame1"}}}, "rpi.lan via tunnel, frame1"},
	} {
		if got := describeTarget(tc.t); got != tc.want {
			t.Errorf("describeTarget(%+v) = %q, want %q", tc.t, got, tc.want)
		}
	}
}

func TestCompressFollowsFastConnection(t *testing.T) {
	for _, tc := range []struct {
		mode Compression
		fast bool
		want bool
	}{
		{CompressAuto, false, true},
		{CompressAuto, true, false},
		{"", false, true},
		{CompressAlways, true, true},
		{CompressNever, false, false},
	} {
		n := &nodeRun{node: &fleet.Node{Settings: fleet.Settings{FastConnection: tc.fast}}, opts: Options{Compress: tc.mode}}
		if got := n.compress(); got != tc.want {
			t.Errorf("compress %q, fastConnection %v: %v, want %v", tc.mode, tc.fast, got, tc.want)
		}
	}
}

// The run's options override a profile's timeouts; every request carries
// a fresh token, and the token never repeats.
func TestRequestTimeoutsAndTokens(t *testing.T) {
	p := &fleet.Profile{Name: "system", ProfilePath: "/nix/var/nix/profiles/system",
		Settings: fleet.Settings{ConfirmTimeout: 30 * time.Second, ActivationTimeout: 4 * time.Minute, MagicRollback: true, AutoRollback: true}}
	n := &nodeRun{node: &fleet.Node{Name: "web"}, opts: Options{Who: "ci"}}
	r1 := n.request(p, "/nix/store/x-system", agent.ActionSwitch, "id-1")
	if r1.ConfirmTimeout.D() != 30*time.Second || r1.ActivationTimeout.D() != 4*time.Minute || !r1.MagicRollback || r1.Who != "ci" {
		t.Errorf("from the profile: %+v", r1)
	}
	n.opts.ConfirmTimeout, n.opts.ActivationTimeout = 5*time.Second, time.Minute
	r2 := n.request(p, "/nix/store/x-system", agent.ActionSwitch, "id-2")
	if r2.ConfirmTimeout.D() != 5*time.Second || r2.ActivationTimeout.D() != time.Minute {
		t.Errorf("overridden: %+v", r2)
	}
	if r1.Token == r2.Token || len(r1.Token) < 32 {
		t.Errorf("tokens %q and %q: want fresh random ones", r1.Token, r2.Token)
	}
	if err := r2.Validate(); err != nil {
		t.Errorf("the request does not validate: %v", err)
	}
}

func TestBuilderName(t *testing.T) {
	for _, tc := range []struct {
		n    fleet.Node
		want string
	}{
		{fleet.Node{Name: "web"}, ""},
		{fleet.Node{Name: "web", BuildHost: Local}, ""},
		{fleet.Node{Name: "rpi", BuildHost: "frame1"}, "frame1"},
		{fleet.Node{Name: "nuc", BuildHost: "frame1", Settings: fleet.Settings{RemoteBuild: true}}, "nuc"},
	} {
		if got := builderName(&tc.n); got != tc.want {
			t.Errorf("%s with build host %q: built on %q, want %q", tc.n.Name, tc.n.BuildHost, got, tc.want)
		}
	}
}

func TestBuilderTargetResolvesNodesAndAddresses(t *testing.T) {
	f := &fleet.Fleet{Nodes: map[string]*fleet.Node{
		"frame1": {Name: "frame1", Hostname: "frame1.example.net", Port: 2222, Settings: fleet.Settings{SSHUser: "admin"}},
	}}
	e := &Engine{Fleet: f}
	tg, err := e.builderTarget("frame1")
	if err != nil || tg.Host != "frame1.example.net" || tg.Port != 2222 || tg.User != "admin" {
		t.Errorf("a node as build host: %+v %v", tg, err)
	}
	tg, err = e.builderTarget("nix@builder.lan:2200")
	if err != nil || tg.Host != "builder.lan" || tg.Port != 2200 || tg.User != "nix" {
		t.Errorf("an address as build host: %+v %v", tg, err)
	}
	if _, err := e.builderTarget("bad host;name"); err == nil {
		t.Error("a malformed build host was accepted")
	}
}

func TestProfilePaths(t *testing.T) {
	runs := []*nodeRun{
		{node: &fleet.Node{Profiles: []*fleet.Profile{{DrvPath: "/nix/store/a.drv", OutPath: "/nix/store/a"}, {OutPath: "/nix/store/b"}}}},
		{node: &fleet.Node{Profiles: []*fleet.Profile{{DrvPath: "/nix/store/c.drv", OutPath: "/nix/store/c"}}}},
	}
	if got := profilePaths(runs, func(p *fleet.Profile) string { return p.DrvPath }); !slices.Equal(got, []string{"/nix/store/a.drv", "/nix/store/c.drv"}) {
		t.Errorf("derivations %q: a profile given as a store path has none", got)
	}
	if got := profilePaths(runs, func(p *fleet.Profile) string { return p.OutPath }); len(got) != 3 {
		t.Errorf("outputs %q", got)
	}
}

func TestReportNodesAndOK(t *testing.T) {
	rep := &Report{Results: []Result{
		{Node: "a", Status: StatusDeployed}, {Node: "b", Status: StatusRolledBack},
		{Node: "c", Status: StatusRebootRequired}, {Node: "d", Status: StatusSkipped},
	}}
	if got := rep.Nodes(StatusDeployed, StatusRebootRequired); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("Nodes = %q", got)
	}
	if rep.OK() {
		t.Error("a report with a rolled-back node is OK")
	}
	rep.Results = rep.Results[:1]
	if !rep.OK() {
		t.Error("a report whose only node deployed is not OK")
	}
}

// The JSON report is an interface (--json, the Action's result output):
// timings are seconds with millisecond precision, and they read back.
func TestReportJSONRoundTrip(t *testing.T) {
	rep := Report{DeployID: "x", Action: ActionRollback, Results: []Result{{
		Node: "web", Status: StatusDeployed, Action: ActionRollback,
		Timings: Timings{Copy: Seconds(1500 * time.Millisecond), Total: Seconds(2*time.Second + 3*time.Millisecond)},
	}}}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"copy":1.500`, `"total":2.003`, `"action":"rollback"`, `"status":"deployed"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Results[0].Timings != rep.Results[0].Timings || !back.Action.IsRollback() {
		t.Errorf("read back %+v, want %+v", back.Results[0], rep.Results[0])
	}
	var s Seconds
	if err := s.UnmarshalJSON([]byte(`"soon"`)); err == nil {
		t.Error("a non-number read as seconds")
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5<<30 + 1<<29: "5.5 GiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
