package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fixture describes a flake as the evaluator would see it.
type fixture struct {
	// deploy is the JSON deployApply would produce; "" means the flake
	// has no deploy output.
	deploy string
	// deployErr, when set, is the evaluator's error for the deploy output.
	deployErr error
	// toml is tether.toml; "" means there is none.
	toml string
	// outputs maps a top-level output ("nixosConfigurations") to the JSON
	// toplevelApply would produce.
	outputs   map[string]string
	overrides Overrides
}

func (fx fixture) load(t *testing.T) (*Fleet, *FakeEvaluator, error) {
	t.Helper()
	dir := t.TempDir()
	if fx.toml != "" {
		writeFiles(t, dir, map[string]string{"tether.toml": fx.toml})
	}
	ev := &FakeEvaluator{Results: map[string]string{}, Errors: map[string]error{}}
	if fx.deployErr != nil {
		ev.Errors[dir+"#deploy"] = fx.deployErr
	} else if fx.deploy == "" {
		ev.Errors[dir+"#deploy"] = fmt.Errorf("error: flake 'path:%s' does not provide attribute 'packages.x86_64-linux.deploy', 'legacyPackages.x86_64-linux.deploy' or 'deploy'", dir)
	} else {
		ev.Results[dir+"#deploy"] = fx.deploy
	}
	for out, res := range fx.outputs {
		ev.Results[dir+"#"+out] = res
	}
	f, err := Load(context.Background(), ev, LoadOptions{Dir: dir, LocalUser: "ci", Overrides: fx.overrides})
	return f, ev, err
}

// drv is the JSON for an evaluated derivation.
func drv(name, system string) string {
	sum := sha256.Sum256([]byte(name))
	h := hex.EncodeToString(sum[:])[:32]
	return fmt.Sprintf(`{"drvPath":"/nix/store/%s-%s.drv","out":"/nix/store/%s-%s","name":%q,"system":%q}`, h, name, h, name, name, system)
}

func storeOut(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "/nix/store/" + hex.EncodeToString(sum[:])[:32] + "-" + name
}

func pos(line int) string {
	return fmt.Sprintf(`{"file":"/nix/store/0123456789abcdfghijklmnpqrsvwxyz-source/flake.nix","line":%d}`, line)
}

// summary renders the settings a user cares about in one comparable line.
func summary(s Settings) string {
	return fmt.Sprintf("sshUser=%s user=%s sshOpts=%s fast=%v auto=%v magic=%v confirm=%v activation=%v temp=%s remote=%v isudo=%v sudo=%q",
		s.SSHUser, s.User, strings.Join(s.SSHOpts, ","), s.FastConnection, s.AutoRollback, s.MagicRollback,
		s.ConfirmTimeout, s.ActivationTimeout, s.TempPath, s.RemoteBuild, s.InteractiveSudo, s.Sudo)
}

func ptr[T any](v T) *T { return &v }

func TestSettingsInheritance(t *testing.T) {
	sys := drv("n-system", "x86_64-linux")
	tests := []struct {
		name string
		fx   fixture
		// node n, profile system
		want        string
		profilePath string
		origins     map[string]string
	}{
		{
			name:        "defaults",
			fx:          fixture{deploy: `{"nodes":{"n":{"hostname":"n.lan","profiles":{"system":{"path":` + sys + `}}}}}`},
			want:        `sshUser=ci user=ci sshOpts= fast=false auto=true magic=true confirm=30s activation=4m0s temp=/var/lib remote=false isudo=false sudo="sudo -u"`,
			profilePath: "/nix/var/nix/profiles/per-user/ci/system",
			origins:     map[string]string{KeySSHUser: "default", KeyUser: "same as sshUser", KeyConfirmTimeout: "default"},
		},
		{
			name: "deploy top < node < profile, user follows sshUser",
			fx: fixture{deploy: `{"sshUser":"top","confirmTimeout":10,"tempPath":"/var/tmp","__pos":{"sshUser":` + pos(3) + `,"confirmTimeout":` + pos(4) + `},
				"nodes":{"n":{"hostname":"n.lan","sshUser":"node","fastConnection":true,"__pos":{"sshUser":` + pos(7) + `},
				"profiles":{"system":{"path":` + sys + `,"sshUser":"root","activationTimeout":60,"__pos":{"sshUser":` + pos(9) + `}}}}}}`},
			want:        `sshUser=root user=root sshOpts= fast=true auto=true magic=true confirm=10s activation=1m0s temp=/var/tmp remote=false isudo=false sudo="sudo -u"`,
			profilePath: "/nix/var/nix/profiles/system",
			origins: map[string]string{
				KeySSHUser:        "flake.nix:9 (deploy.nodes.n.profiles.system.sshUser)",
				KeyConfirmTimeout: "flake.nix:4 (deploy.confirmTimeout)",
				KeyTempPath:       "deploy.tempPath", // no position known
			},
		},
		{
			name: "sshOpts append from least to most specific",
			fx: fixture{
				deploy: `{"sshOpts":["-o","Top=1"],"nodes":{"n":{"hostname":"n.lan","sshOpts":["-p","2222"],
					"profiles":{"system":{"path":` + sys + `,"sshOpts":["-o","Profile=3"]}}}}}`,
				toml:      "[defaults]\nssh_opts = [\"-o\", \"Defaults=2\"]\n[nodes.n]\nssh_opts = [\"-o\", \"Node=4\"]\n",
				overrides: Overrides{SSHOpts: []string{"-o", "Cli=5"}},
			},
			want:        `sshUser=ci user=ci sshOpts=-o,Top=1,-o,Defaults=2,-p,2222,-o,Profile=3,-o,Node=4,-o,Cli=5 fast=false auto=true magic=true confirm=30s activation=4m0s temp=/var/lib remote=false isudo=false sudo="sudo -u"`,
			profilePath: "/nix/var/nix/profiles/per-user/ci/system",
			origins:     map[string]string{KeySSHOpts: "command line"},
		},
		{
			name: "tether.toml defaults beat deploy top, deploy node beats them",
			fx: fixture{
				deploy: `{"magicRollback":true,"autoRollback":true,"nodes":{"n":{"hostname":"n.lan","autoRollback":true,
					"profiles":{"system":{"path":` + sys + `}}}}}`,
				toml: "[defaults]\nmagic_rollback = false\nauto_rollback = false\nssh_user = \"admin\"\n",
			},
			want:        `sshUser=admin user=admin sshOpts= fast=false auto=true magic=false confirm=30s activation=4m0s temp=/var/lib remote=false isudo=false sudo="sudo -u"`,
			profilePath: "/nix/var/nix/profiles/per-user/admin/system",
			origins:     map[string]string{KeyMagicRollback: "tether.toml:2 (defaults.magic_rollback)", KeyAutoRollback: "deploy.nodes.n.autoRollback"},
		},
		{
			name: "tether.toml node beats the profile",
			fx: fixture{
				deploy: `{"nodes":{"n":{"hostname":"n.lan","profiles":{"system":{"path":` + sys + `,"confirmTimeout":60,"user":"root"}}}}}`,
				toml:   "[nodes.n]\nssh_user = \"root\"\n\nconfirm_timeout = \"90s\"\nremote_build = true\ninteractive_sudo = true\nsudo = \"doas -u\"\n",
			},
			want:        `sshUser=root user=root sshOpts= fast=false auto=true magic=true confirm=1m30s activation=4m0s temp=/var/lib remote=true isudo=true sudo="doas -u"`,
			profilePath: "/nix/var/nix/profiles/system",
			origins:     map[string]string{KeyConfirmTimeout: "tether.toml:4 (nodes.n.confirm_timeout)", KeyUser: "deploy.nodes.n.profiles.system.user"},
		},
		{
			name: "overrides beat everything",
			fx: fixture{
				deploy:    `{"nodes":{"n":{"hostname":"n.lan","profiles":{"system":{"path":` + sys + `,"magicRollback":true,"user":"root"}}}}}`,
				toml:      "[nodes.n]\nmagic_rollback = true\n",
				overrides: Overrides{MagicRollback: ptr(false), User: ptr("alice"), ConfirmTimeout: ptr(5 * time.Second)},
			},
			want:        `sshUser=ci user=alice sshOpts= fast=false auto=true magic=false confirm=5s activation=4m0s temp=/var/lib remote=false isudo=false sudo="sudo -u"`,
			profilePath: "/nix/var/nix/profiles/per-user/alice/system",
			origins:     map[string]string{KeyMagicRollback: "command line", KeyUser: "command line"},
		},
		{
			name: "profilePath given",
			fx: fixture{
				deploy: `{"nodes":{"n":{"hostname":"n.lan","profiles":{"system":{"path":` + sys + `,"user":"alice","profilePath":"/home/alice/.local/state/nix/profiles/hm"}}}}}`,
			},
			want:        `sshUser=ci user=alice sshOpts= fast=false auto=true magic=true confirm=30s activation=4m0s temp=/var/lib remote=false isudo=false sudo="sudo -u"`,
			profilePath: "/home/alice/.local/state/nix/profiles/hm",
		},
		{
			name: "node only in tether.toml: system profile of root",
			fx: fixture{
				toml:    "[defaults]\nssh_user = \"deploy\"\n[nodes.n]\n",
				outputs: map[string]string{"nixosConfigurations": `{"n":` + sys + `}`},
			},
			want:        `sshUser=deploy user=root sshOpts= fast=false auto=true magic=true confirm=30s activation=4m0s temp=/var/lib remote=false isudo=false sudo="sudo -u"`,
			profilePath: "/nix/var/nix/profiles/system",
			origins:     map[string]string{KeyUser: "root for a system profile", KeySSHUser: "tether.toml:2 (defaults.ssh_user)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _, err := tt.fx.load(t)
			if err != nil {
				t.Fatal(err)
			}
			n := f.Nodes["n"]
			if n == nil || len(n.Profiles) != 1 {
				t.Fatalf("node n = %+v", n)
			}
			p := n.Profiles[0]
			if got := summary(p.Settings); got != tt.want {
				t.Errorf("settings\n got: %s\nwant: %s", got, tt.want)
			}
			if got := summary(n.Settings); got != tt.want {
				t.Errorf("node settings (single profile) differ from the profile's\n got: %s\nwant: %s", got, tt.want)
			}
			if p.ProfilePath != tt.profilePath {
				t.Errorf("profile path = %s, want %s", p.ProfilePath, tt.profilePath)
			}
			if p.OutPath != storeOut("n-system") || !strings.HasSuffix(p.DrvPath, "-n-system.drv") {
				t.Errorf("paths = %s %s", p.DrvPath, p.OutPath)
			}
			for key, want := range tt.origins {
				if got := p.Settings.Origins[key].String(); got != want {
					t.Errorf("origin of %s = %q, want %q", key, got, want)
				}
			}
		})
	}
}

func TestLoadNodeFields(t *testing.T) {
	fx := fixture{
		deploy: `{"nodes":{
			"frame1":{"hostname":"frame1.lan","profiles":{
				"system":{"path":` + drv("frame1-system", "x86_64-linux") + `},
				"apps":{"path":` + drv("frame1-apps", "x86_64-linux") + `},
				"zz":{"path":` + drv("frame1-zz", "x86_64-linux") + `},
				"home":{"path":` + drv("frame1-home", "x86_64-linux") + `}},
				"profilesOrder":["system","zz"]},
			"web":{"hostname":"203.0.113.7","profiles":{"app":{"path":` + drv("web-app", "aarch64-linux") + `}}}}}`,
		toml: `build_host = "frame1"
[defaults]
ssh_user = "root"
build_host = "frame1"

[nodes.frame1]
hostname = "frame1.example.org"
port = 2222
tags = ["lan", "builder"]
host_key = "` + testHostKey + `"
build_host = "local"
wave = 1

[nodes.web]
tags = ["public"]
system = "x86_64-linux"
host_key_alias = "web"

[nodes.rpi]
jump = ["frame1"]
reboot = true
`,
		outputs: map[string]string{"nixosConfigurations": `{"rpi":` + drv("rpi-toplevel", "aarch64-linux") + `}`},
	}
	// build_host at the top level is not a key: fixture must fail first.
	if _, _, err := fx.load(t); err == nil || !strings.Contains(err.Error(), "tether.toml:1: build_host: unknown key") {
		t.Fatalf("err = %v, want build_host at the top level refused", err)
	}
	fx.toml = strings.TrimPrefix(fx.toml, "build_host = \"frame1\"\n")
	f, _, err := fx.load(t)
	if err != nil {
		t.Fatal(err)
	}

	frame1 := f.Nodes["frame1"]
	var order []string
	for _, p := range frame1.Profiles {
		order = append(order, p.Name)
	}
	if got := strings.Join(order, ","); got != "system,zz,apps,home" {
		t.Errorf("profile order = %s, want profilesOrder first, then by name", got)
	}
	if frame1.Hostname != "frame1.example.org" || frame1.Port != 2222 || frame1.HostKey != testHostKey || frame1.Wave != 1 {
		t.Errorf("frame1 = %+v", frame1)
	}
	if frame1.BuildHost != "" || frame1.System != "x86_64-linux" || strings.Join(frame1.Tags, ",") != "builder,lan" {
		t.Errorf("frame1 build host %q system %q tags %v", frame1.BuildHost, frame1.System, frame1.Tags)
	}
	if got := frame1.Origins["hostname"].String(); got != "tether.toml:6 (nodes.frame1.hostname)" {
		t.Errorf("hostname origin = %q", got)
	}
	if frame1.Source != FromDeployNodes|FromConfig {
		t.Errorf("frame1 source = %v", frame1.Source)
	}

	web := f.Nodes["web"]
	if web.System != "x86_64-linux" || web.BuildHost != "frame1" || web.HostKeyAlias != "web" {
		t.Errorf("web system %q (tether.toml wins over the derivation), build host %q, alias %q", web.System, web.BuildHost, web.HostKeyAlias)
	}

	rpi := f.Nodes["rpi"]
	if rpi.Source != FromConfig || rpi.Hostname != "rpi" || rpi.System != "aarch64-linux" || !rpi.Reboot || frame1.Reboot {
		t.Errorf("rpi = %+v", rpi)
	}
	want := Hop{Node: "frame1", User: "root", Host: "frame1.example.org", Port: 2222, HostKey: testHostKey}
	if len(rpi.Jumps) != 1 || rpi.Jumps[0].String() != want.String() || rpi.Jumps[0].HostKey != testHostKey || rpi.Jumps[0].Node != "frame1" {
		t.Errorf("rpi jumps = %+v, want [%+v]", rpi.Jumps, want)
	}
}

func TestJumpExpansion(t *testing.T) {
	fx := fixture{
		toml: `[defaults]
ssh_user = "root"

[nodes.bastion]
hostname = "bastion.example.org"
proxy_command = "tunnel --host %h"
ssh_opts = ["-o", "ServerAliveInterval=10"]

[nodes.frame1]
hostname = "192.168.1.2"
jump = ["bastion"]

[nodes.rpi]
hostname = "10.0.1.20"
jump = ["frame1", "admin@10.0.2.1:2200"]

[nodes.web]
hostname = "web.example.org"
jump = ["jump.example.org"]
`,
		outputs: map[string]string{"nixosConfigurations": `{"bastion":` + drv("b", "x86_64-linux") + `,"frame1":` + drv("f", "x86_64-linux") +
			`,"rpi":` + drv("r", "aarch64-linux") + `,"web":` + drv("w", "x86_64-linux") + `}`},
	}
	f, _, err := fx.load(t)
	if err != nil {
		t.Fatal(err)
	}
	hops := func(n string) string {
		var s []string
		for _, h := range f.Nodes[n].Jumps {
			s = append(s, h.String())
		}
		return strings.Join(s, " → ")
	}
	tests := []struct{ node, hops, proxy string }{
		{"bastion", "", "tunnel --host %h"},
		{"frame1", "root@bastion.example.org", "tunnel --host %h"},
		{"rpi", "root@bastion.example.org → root@192.168.1.2 → admin@10.0.2.1:2200", "tunnel --host %h"},
		{"web", "ci@jump.example.org", ""},
	}
	for _, tt := range tests {
		if got := hops(tt.node); got != tt.hops {
			t.Errorf("%s hops = %q, want %q", tt.node, got, tt.hops)
		}
		if got := f.Nodes[tt.node].ProxyCommand; got != tt.proxy {
			t.Errorf("%s proxy = %q, want %q", tt.node, got, tt.proxy)
		}
	}
	if got := strings.Join(f.Nodes["rpi"].Jumps[0].SSHOpts, " "); got != "-o ServerAliveInterval=10" {
		t.Errorf("bastion hop keeps its node's sshOpts: %q", got)
	}
}

func TestLoadErrors(t *testing.T) {
	sys := func(n string) string { return `{"system":{"path":` + drv(n, "x86_64-linux") + `}}` }
	tops := func(names ...string) map[string]string {
		var parts []string
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%q:%s", n, drv(n, "x86_64-linux")))
		}
		return map[string]string{"nixosConfigurations": "{" + strings.Join(parts, ",") + "}"}
	}
	tests := []struct {
		name string
		fx   fixture
		want []string
	}{
		{
			name: "unknown jump target lists the nodes",
			fx:   fixture{toml: "[nodes.frame1]\n[nodes.rpi]\njump = [\"frme1\"]\n", outputs: tops("frame1", "rpi")},
			want: []string{`tether.toml:3: node rpi: jump: unknown jump target "frme1": not a node (known: frame1, rpi)`},
		},
		{
			name: "jump cycle",
			fx:   fixture{toml: "[nodes.a]\njump = [\"b\"]\n[nodes.b]\njump = [\"c\"]\n[nodes.c]\njump = [\"a\"]\n", outputs: tops("a", "b", "c")},
			want: []string{"tether.toml:6: node c: jump: jump cycle: a → b → c → a"},
		},
		{
			name: "jump to itself",
			fx:   fixture{toml: "[nodes.a]\n\njump = [\"a\"]\n", outputs: tops("a")},
			want: []string{"tether.toml:3: node a: jump: jump cycle: a → a"},
		},
		{
			name: "a node reached through hops can only be the first jump",
			fx:   fixture{toml: "[nodes.a]\nproxy_command = \"p\"\n[nodes.b]\njump = [\"x@gw.lan\", \"a\"]\n", outputs: tops("a", "b")},
			want: []string{"tether.toml:4: node b: jump: node a is itself reached through jump or proxy_command, so it can only be the first jump"},
		},
		{
			name: "two proxy commands",
			fx:   fixture{toml: "[nodes.a]\nproxy_command = \"p\"\n[nodes.b]\njump = [\"a\"]\nproxy_command = \"q\"\n", outputs: tops("a", "b")},
			want: []string{"tether.toml:5: node b: proxy_command: conflicts with the proxy_command of jump host a"},
		},
		{
			name: "unknown build host",
			fx:   fixture{toml: "[defaults]\nbuild_host = \"frame2\"\n[nodes.a]\n", outputs: tops("a")},
			want: []string{`tether.toml:2: node a: build_host: unknown build host "frame2"`},
		},
		{
			name: "deploy node without hostname",
			fx:   fixture{deploy: `{"nodes":{"a":{"profiles":` + sys("a") + `,"__at":` + pos(5) + `}}}`},
			want: []string{"flake.nix:5: node a: hostname: not set"},
		},
		{
			name: "hostile names and hosts in deploy.nodes",
			fx: fixture{deploy: `{"nodes":{
				"a b":{"hostname":"x","profiles":` + sys("x") + `,"__at":` + pos(3) + `},
				"b":{"hostname":"$(reboot)","profiles":` + sys("b") + `,"__pos":{"hostname":` + pos(8) + `}},
				"c":{"hostname":"c","sshUser":"root; reboot","profiles":` + sys("c") + `}}}`},
			want: []string{`flake.nix:3: deploy.nodes."a b": invalid node name "a b"`, `flake.nix:8: node b: hostname: invalid host name "$(reboot)"`, `node c: deploy.nodes.c.sshUser: invalid user name "root; reboot"`},
		},
		{
			name: "bad values in deploy.nodes",
			fx: fixture{deploy: `{"confirmTimeout":0,"__pos":{"confirmTimeout":` + pos(2) + `},"nodes":{
				"a":{"hostname":"a","profilesOrder":["system","nope"],"profiles":{"system":{"path":` + drv("a", "x86_64-linux") + `,"tempPath":"relative"}}},
				"b":{"hostname":"b","profiles":{"system":{}}}}}`},
			want: []string{`flake.nix:2: deploy.confirmTimeout: must be a positive number of seconds`, `node a: deploy.nodes.a.profiles.system.tempPath: path "relative" is not absolute`, `node a: deploy.nodes.a.profilesOrder: names profile "nope"`, `node b: deploy.nodes.b.profiles.system.path: not set`},
		},
		{
			name: "wrong JSON types in deploy.nodes",
			fx:   fixture{deploy: `{"nodes":{"a":{"hostname":"a","sshOpts":"-p 22","profiles":` + sys("a") + `}}}`},
			want: []string{`deploy.nodes.a: sshOpts: want []string, found string`},
		},
		{
			name: "attr on a deploy.nodes node",
			fx:   fixture{deploy: `{"nodes":{"a":{"hostname":"a","profiles":` + sys("a") + `}}}`, toml: "[nodes.a]\nattr = \"nixosConfigurations.a.config.system.build.toplevel\"\n"},
			want: []string{"tether.toml:2: node a: attr: only for nodes that are not in deploy.nodes"},
		},
		{
			name: "names differing only in case",
			fx:   fixture{deploy: `{"nodes":{"Frame1":{"hostname":"a","profiles":` + sys("a") + `}}}`, toml: "[nodes.frame1]\n", outputs: tops("frame1")},
			want: []string{`tether.toml:1: node frame1: node names "Frame1" and "frame1" differ only in case`},
		},
		{
			name: "configuration missing or not a derivation",
			fx: fixture{toml: "[nodes.a]\n[nodes.b]\nattr = \"nixosConfigurations.b.config\"\n",
				outputs: map[string]string{"nixosConfigurations": `{"a":{"missing":true},"b":{"notDerivation":true}}`}},
			want: []string{"tether.toml:1: node a: nixosConfigurations.a.config.system.build.toplevel does not exist in the flake", "tether.toml:3: node b: attr: nixosConfigurations.b.config is not a derivation"},
		},
		{
			name: "no nodes anywhere",
			fx:   fixture{},
			want: []string{"names no machines: it has no deploy output, and there is no tether.toml",
				"add a deploy.nodes output to the flake, or a [nodes.<name>] section per machine to tether.toml"},
		},
		{
			name: "no nodes, a misspelt deploy output",
			fx:   fixture{deployErr: missingAttr{"Did you mean deplo?"}},
			want: []string{"it has no deploy output (nix: Did you mean deplo?)", "add a deploy.nodes output"},
		},
		{
			name: "an empty deploy.nodes",
			fx:   fixture{deploy: `{"nodes":{}}`},
			want: []string{"its deploy.nodes is empty, and there is no tether.toml"},
		},
		{
			name: "known_hosts file missing",
			fx:   fixture{toml: "\nknown_hosts = \"secrets/known_hosts\"\n[nodes.a]\n"},
			want: []string{"tether.toml:2: known_hosts: stat ", "no such file"},
		},
		{
			name: "a package shadows the deploy output",
			fx:   fixture{deploy: `{"__shadowed":true}`},
			want: []string{"deploy: the flake attribute `deploy` resolves to a package"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.fx.load(t)
			if err == nil {
				t.Fatal("no error")
			}
			wantInOrder(t, err, tt.want)
		})
	}
}

// Nodes only in tether.toml are evaluated in one call per flake output,
// not one call per node.
func TestLoadEvaluatesOncePerOutput(t *testing.T) {
	fx := fixture{
		deploy: `{"nodes":{"frame1":{"hostname":"frame1","profiles":{"system":{"path":` + drv("f", "x86_64-linux") + `}}}}}`,
		toml: `[nodes.frame1]
[nodes.a]
[nodes.b]
[nodes.c]
attr = "nixosConfigurations.c-custom.config.system.build.toplevel"
[nodes.d]
attr = 'packages.x86_64-linux.d-image'
`,
		outputs: map[string]string{
			"nixosConfigurations": `{"a":` + drv("a", "x86_64-linux") + `,"b":` + drv("b", "x86_64-linux") + `,"c":` + drv("c", "x86_64-linux") + `}`,
			"packages":            `{"d":` + drv("d", "x86_64-linux") + `}`,
		},
	}
	f, ev, err := fx.load(t)
	if err != nil {
		t.Fatal(err)
	}
	calls := ev.Calls()
	var got []string
	for _, c := range calls {
		got = append(got, c.Installable[strings.Index(c.Installable, "#"):])
	}
	if strings.Join(got, " ") != "#deploy #nixosConfigurations #packages" {
		t.Fatalf("evaluations = %v", got)
	}
	apply := calls[1].Apply
	for _, want := range []string{`"a" = [ "a" "config" "system" "build" "toplevel" ]`, `"c" = [ "c-custom" "config"`} {
		if !strings.Contains(apply, want) {
			t.Errorf("nixosConfigurations apply lacks %s:\n%s", want, apply)
		}
	}
	if strings.Contains(apply, `"frame1"`) || strings.Contains(apply, `"d"`) {
		t.Errorf("apply evaluates nodes it should not:\n%s", apply)
	}
	if !strings.Contains(calls[2].Apply, `"d" = [ "x86_64-linux" "d-image" ]`) {
		t.Errorf("packages apply = %s", calls[2].Apply)
	}
	if f.Nodes["d"].Profiles[0].OutPath != storeOut("d") {
		t.Errorf("d = %+v", f.Nodes["d"].Profiles[0])
	}
}

func TestLoadOptions(t *testing.T) {
	ev := &FakeEvaluator{}
	if _, err := Load(context.Background(), ev, LoadOptions{Dir: t.TempDir()}); err == nil {
		t.Error("Load without LocalUser succeeded")
	}
	dir := t.TempDir()
	_, err := Load(context.Background(), ev, LoadOptions{Dir: dir, LocalUser: "ci", ConfigFile: filepath.Join(dir, "missing.toml")})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("explicit missing config file: err = %v", err)
	}
	if len(ev.Calls()) != 0 {
		t.Errorf("evaluated before the configuration was read: %v", ev.Calls())
	}

	// A config file outside the flake directory and the evaluator's
	// errors are reported as such.
	other := filepath.Join(t.TempDir(), "fleet.toml")
	writeFiles(t, filepath.Dir(other), map[string]string{"fleet.toml": "[nodes.a]\nbogus = 1\n"})
	_, err = Load(context.Background(), ev, LoadOptions{Dir: dir, LocalUser: "ci", ConfigFile: other})
	if err == nil || !strings.Contains(err.Error(), other+":2: node a: bogus: unknown key") {
		t.Errorf("err = %v", err)
	}

	boom := errors.New("nix exploded")
	ev = &FakeEvaluator{Errors: map[string]error{dir + "#deploy": boom}}
	if _, err := Load(context.Background(), ev, LoadOptions{Dir: dir, LocalUser: "ci"}); !errors.Is(err, boom) {
		t.Errorf("err = %v, want the evaluator's error wrapped", err)
	}
}

func TestFakeEvaluatorPanicsOnUnexpectedInput(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for an installable the fake was not given")
		}
	}()
	var out any
	_ = (&FakeEvaluator{}).EvalJSON(context.Background(), "/flake#deploy", deployApply, &out)
}

// missingAttr is an evaluator's error for a missing attribute that says
// so through methods, as the nix package's does, with nix's suggestion.
type missingAttr struct{ suggestion string }

func (m missingAttr) Error() string          { return "the flake does not provide it" }
func (m missingAttr) MissingAttribute() bool { return true }
func (m missingAttr) Suggestions() string    { return m.suggestion }
