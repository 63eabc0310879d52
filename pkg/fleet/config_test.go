package fleet

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

const testHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// want are substrings of the error, each on its own line of the
		// joined error, in this order.
		want []string
	}{
		{
			name: "unknown key names file, line and node",
			src:  "[nodes.frame1]\nhostname = \"a\"\nhostnme = \"b\"\n",
			want: []string{"tether.toml:3: node frame1: hostnme: unknown key"},
		},
		{
			name: "camelCase key of the flake schema gets a suggestion",
			src:  "[nodes.rpi]\n\nsshUser = \"root\"\n",
			want: []string{"tether.toml:3: node rpi: sshUser: unknown key (did you mean ssh_user?)"},
		},
		{
			name: "key matched only by ignoring case is unknown",
			src:  "[nodes.rpi]\nHostname = \"x\"\n",
			want: []string{"tether.toml:2: node rpi: Hostname: unknown key (did you mean hostname?)"},
		},
		{
			name: "unknown top-level key and unknown defaults key",
			src:  "concurency = 2\n[defaults]\nmagic = true\n",
			want: []string{"tether.toml:1: concurency: unknown key", "tether.toml:3: defaults.magic: unknown key"},
		},
		{
			name: "unknown table reported once",
			src:  "[nodes.a]\n[nodes.a.extra]\nx = 1\ny = 2\n",
			want: []string{"tether.toml:2: node a: extra: unknown key"},
		},
		{
			name: "unknown key in the second health check",
			src:  "[[nodes.web.health]]\nhttp = \"http://web/\"\n\n[[nodes.web.health]]\ncommand = [\"true\"]\nexpect = 1\n",
			want: []string{"tether.toml:6: node web: health.expect: unknown key"},
		},
		{
			name: "wrong type",
			src:  "[nodes.a]\n\nwave = \"one\"\n",
			want: []string{"tether.toml:3: node a: wave: incompatible types: TOML value has type string; destination has type integer"},
		},
		{
			name: "wrong type in a list",
			src:  "[nodes.a]\ntags = \"lan\"\n",
			want: []string{"tether.toml:2: node a: tags: incompatible types"},
		},
		{
			name: "wrong type of a duration",
			src:  "[nodes.a]\nconfirm_timeout = true\n",
			want: []string{"tether.toml:2: node a: confirm_timeout: want a duration"},
		},
		{
			name: "bad duration",
			src:  "[defaults]\nactivation_timeout = \"4 minutes\"\n",
			want: []string{`tether.toml:2: defaults.activation_timeout: invalid duration "4 minutes"`},
		},
		{
			name: "non-positive duration",
			src:  "[nodes.a]\nconfirm_timeout = 0\n",
			want: []string{"tether.toml:2: node a: confirm_timeout: must be positive"},
		},
		{
			name: "nodes is not a table",
			src:  "\nnodes = 3\n",
			want: []string{"tether.toml:2: nodes: want a table of nodes"},
		},
		{
			name: "a node is not a table",
			src:  "[nodes]\na = 3\n",
			want: []string{"tether.toml:2: node a: type mismatch: expected table but found int64"},
		},
		{
			name: "duplicate node table",
			src:  "[nodes.a]\n[nodes.b]\n[nodes.\"a\"]\n",
			want: []string{"tether.toml:3: ", "already been defined"},
		},
		{
			name: "syntax error",
			src:  "[nodes.a]\nhostname = \n",
			want: []string{"tether.toml:2: "},
		},
		{
			name: "invalid node names never pass",
			src:  "[nodes.\"a;rm -rf /\"]\n[nodes.\"-oProxyCommand=x\"]\n[nodes.\"\"]\n",
			want: []string{`tether.toml:1: nodes: invalid node name "a;rm -rf /"`, `tether.toml:2: nodes: invalid node name "-oProxyCommand=x"`, `tether.toml:3: nodes: invalid node name ""`},
		},
		{
			name: "jump specs",
			src:  "[nodes.a]\njump = [\"root@\", \"x y\", \"b\", \"b\"]\n",
			want: []string{`tether.toml:2: node a: jump: address "root@"`, `invalid node name "x y"`, `"b" is listed twice`},
		},
		{
			name: "host key and alias",
			src:  "[nodes.a]\nhost_key = \"ssh-ed25519 notbase64\"\nhost_key_alias = \"a b\"\n",
			want: []string{"tether.toml:2: node a: host_key: invalid host key", "tether.toml:3: node a: host_key_alias: invalid host name"},
		},
		{
			name: "hostname with a user or a shell",
			src:  "[nodes.a]\nhostname = \"root@a\"\n[nodes.b]\nhostname = \"b;reboot\"\n",
			want: []string{`tether.toml:2: node a: hostname: invalid host name "root@a"`, `tether.toml:4: node b: hostname: invalid host name "b;reboot"`},
		},
		{
			name: "settings values",
			src:  "[defaults]\nssh_user = \"ro ot\"\ntemp_path = \"tmp\"\n[nodes.a]\nsudo = \"\"\nssh_opts = [\"-p\", \"\"]\n",
			want: []string{`tether.toml:2: defaults.ssh_user: invalid user name "ro ot"`, `tether.toml:3: defaults.temp_path: path "tmp" is not absolute`, `tether.toml:5: node a: sudo: invalid sudo command`, `tether.toml:6: node a: ssh_opts: invalid ssh option ""`},
		},
		{
			name: "node fields",
			src:  "[nodes.a]\nport = 70000\nwave = -1\ntags = [\"x\", \"x\", \"no space\"]\nsystem = \"x86_64\"\nattr = \"nixosConfigurations.a.${x}\"\n",
			want: []string{"tether.toml:2: node a: port: invalid port 70000", "tether.toml:3: node a: wave: must not be negative", `tether.toml:4: node a: tags: tag "x" is listed twice`, `tether.toml:4: node a: tags: invalid tag "no space"`, `tether.toml:5: node a: system: invalid system "x86_64"`, `tether.toml:6: node a: attr: attribute path`},
		},
		{
			name: "health checks",
			src: `[nodes.a]
[[nodes.a.health]]
http = "http://a/"
command = ["true"]
[[nodes.a.health]]
name = "nothing"
[[nodes.a.health]]
http = "ftp://a/"
status = 42
[[nodes.a.health]]
command = []
`,
			want: []string{"tether.toml:2: node a: health[0]: set exactly one of http and command", "tether.toml:5: node a: health[1]: set exactly one", `tether.toml:7: node a: health[2]: invalid http URL "ftp://a/"`, "tether.toml:7: node a: health[2]: invalid status 42", "tether.toml:10: node a: health[3]: command must be a non-empty argv list"},
		},
		{
			name: "concurrency and build host",
			src:  "concurrency = 0\n[defaults]\nbuild_host = \"root@\"\n",
			want: []string{"tether.toml:1: concurrency: must be at least 1", `tether.toml:3: defaults.build_host: address "root@"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig("tether.toml", []byte(tt.src))
			if err == nil {
				t.Fatalf("no error for:\n%s", tt.src)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *ConfigError: %v", err, err)
			}
			wantInOrder(t, err, tt.want)
		})
	}
}

// wantInOrder fails the test unless err's message holds each of want in
// this order: a joined error lists its parts as the file reads.
func wantInOrder(t *testing.T, err error, want []string) {
	t.Helper()
	msg := err.Error()
	rest := msg
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("error does not contain %q (in order):\n%s", w, msg)
		}
		rest = rest[i+len(w):]
	}
}

func TestParseConfigValid(t *testing.T) {
	src := `known_hosts = "secrets/known_hosts"
concurrency = 4

[defaults]
ssh_user = "root"
confirm_timeout = "45s"
activation_timeout = 300
build_host = "frame1"

[nodes.frame1]
tags = ["lan", "builder"]
proxy_command = "tunnel --host %h"
host_key = "` + testHostKey + ` frame1"
build_host = "local"

[nodes."rpi.lan"]
attr = 'nixosConfigurations."rpi.lan".config.system.build.toplevel'
jump = ["frame1", "admin@[fd00::1]:2222"]
system = "aarch64-linux"
wave = 2

[[nodes."rpi.lan".health]]
http = "https://rpi.lan/health"
status = 204
timeout = "5s"

[[nodes."rpi.lan".health]]
name = "nginx"
command = ["systemctl", "is-active", "nginx"]
`
	c, err := parseConfig("tether.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.knownHosts != "secrets/known_hosts" || c.concurrency != 4 || *c.defaultBuild != "frame1" {
		t.Errorf("fleet-wide keys: %+v", c)
	}
	if d := c.defaults.set; *d.SSHUser != "root" || *d.ConfirmTimeout != 45*time.Second || *d.ActivationTimeout != 300*time.Second {
		t.Errorf("defaults = %+v", d)
	}
	if at := c.defaults.at[KeyConfirmTimeout]; at.String() != "tether.toml:6 (defaults.confirm_timeout)" {
		t.Errorf("confirm_timeout origin = %q", at)
	}
	rpi := c.nodes["rpi.lan"]
	if rpi == nil {
		t.Fatal("node rpi.lan missing")
	}
	if got := strings.Join(rpi.attr, "|"); got != "nixosConfigurations|rpi.lan|config|system|build|toplevel" {
		t.Errorf("attr = %s", got)
	}
	if len(rpi.jumps) != 2 || rpi.jumps[0].hop != nil || rpi.jumps[1].hop == nil {
		t.Fatalf("jumps = %+v", rpi.jumps)
	}
	if h := *rpi.jumps[1].hop; h.User != "admin" || h.Host != "fd00::1" || h.Port != 2222 {
		t.Errorf("literal hop = %+v", h)
	}
	if len(rpi.health) != 2 {
		t.Fatalf("health = %+v", rpi.health)
	}
	if h := rpi.health[0]; h.HTTP != "https://rpi.lan/health" || h.ExpectStatus != 204 || h.Timeout != 5*time.Second || h.Origin.Line != 22 {
		t.Errorf("http check = %+v", h)
	}
	if h := rpi.health[1]; h.Name != "nginx" || len(h.Command) != 3 || h.Origin.Line != 27 {
		t.Errorf("command check = %+v", h)
	}
}

func TestParseHop(t *testing.T) {
	tests := []struct {
		in   string
		want Hop
		err  bool
	}{
		{in: "frame1.lan", want: Hop{Host: "frame1.lan"}},
		{in: "root@1.2.3.4:22", want: Hop{User: "root", Host: "1.2.3.4", Port: 22}},
		{in: "fd00::1", want: Hop{Host: "fd00::1"}},
		{in: "[fd00::1]:2222", want: Hop{Host: "fd00::1", Port: 2222}},
		{in: "u@[fd00::1]", want: Hop{User: "u", Host: "fd00::1"}},
		{in: "root@", err: true},
		{in: "@host", err: true},
		{in: "a@b@c", err: true},
		{in: "host:0", err: true},
		{in: "host:ssh", err: true},
		{in: "host:", err: true},
		{in: "root@[fd00::1]:", err: true},
		{in: "[fd00::1", err: true},
		{in: "[fd00::1]x", err: true},
		{in: "-oProxyCommand=x", err: true},
		{in: "host name", err: true},
		{in: "h;reboot", err: true},
	}
	for _, tt := range tests {
		got, err := ParseHop(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseHop(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if err == nil && got.String() != tt.want.String() {
			t.Errorf("ParseHop(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestNixString(t *testing.T) {
	tests := map[string]string{
		`plain`:        `"plain"`,
		`a"b`:          `"a\"b"`,
		`${builtins}`:  `"\${builtins}"`,
		`back\slash`:   `"back\\slash"`,
		"new\nline\tx": `"new\nline\tx"`,
	}
	for in, want := range tests {
		if got := nixString(in); got != want {
			t.Errorf("nixString(%q) = %s, want %s", in, got, want)
		}
	}
}

// The example in the configuration guide must stay valid.
func TestDocsExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```toml\n")
	example, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no toml example in docs/config.md")
	}
	c, err := parseConfig("tether.toml", []byte(example))
	if err != nil {
		t.Fatalf("docs/config.md example: %v", err)
	}
	if len(c.nodes) != 2 || len(c.nodes["rpi"].health) != 2 {
		t.Errorf("example parsed as %+v", c.nodes)
	}
}
