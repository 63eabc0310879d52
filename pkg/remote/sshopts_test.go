package remote

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseSSHOpts(t *testing.T) {
	tests := []struct {
		name    string
		opts    []string
		want    Options
		wantErr string
	}{
		{name: "empty", opts: nil, want: Options{}},
		{name: "port split", opts: []string{"-p", "2222"}, want: Options{Port: 2222}},
		{name: "port joined", opts: []string{"-p2222"}, want: Options{Port: 2222}},
		{name: "port with blank as one arg", opts: []string{"-p 2222"}, want: Options{Port: 2222}},
		{name: "first port wins", opts: []string{"-p", "1", "-o", "Port=2"}, want: Options{Port: 1}},
		{name: "login name", opts: []string{"-l", "deploy"}, want: Options{User: "deploy"}},
		{name: "o key=val", opts: []string{"-o", "User=ops"}, want: Options{User: "ops"}},
		{name: "o joined", opts: []string{"-oPort=2200"}, want: Options{Port: 2200}},
		{name: "o key space val", opts: []string{"-o", "Port 2201"}, want: Options{Port: 2201}},
		{name: "o key = val", opts: []string{"-o", "Port = 2202"}, want: Options{Port: 2202}},
		{name: "o case-insensitive", opts: []string{"-o", "hostkeyalias=frame1"}, want: Options{HostKeyAlias: "frame1"}},
		{
			name: "jump chain",
			opts: []string{"-J", "ops@frame1:2222,[fd00::1]:22"},
			want: Options{RouteSet: true, Jumps: []Hop{
				{Name: "frame1", Host: "frame1", Port: 2222, User: "ops"},
				{Name: "fd00::1", Host: "fd00::1", Port: 22},
			}},
		},
		{
			name: "proxyjump uri",
			opts: []string{"-o", "ProxyJump=ssh://root@gw.example:2022"},
			want: Options{RouteSet: true, Jumps: []Hop{{Name: "gw.example", Host: "gw.example", Port: 2022, User: "root"}}},
		},
		{name: "jump none", opts: []string{"-J", "none", "-J", "frame1"}, want: Options{RouteSet: true}},
		{
			name: "proxy command keeps spaces and tokens",
			opts: []string{"-o", "ProxyCommand=tunnel-client ssh --hostname %h"},
			want: Options{RouteSet: true, ProxyCommand: "tunnel-client ssh --hostname %h"},
		},
		{
			name: "proxy command in key space value form",
			opts: []string{"-o", "ProxyCommand nc %h %p"},
			want: Options{RouteSet: true, ProxyCommand: "nc %h %p"},
		},
		{name: "proxy command none", opts: []string{"-o", "ProxyCommand=none"}, want: Options{RouteSet: true}},
		{
			name: "first route wins",
			opts: []string{"-o", "ProxyCommand=nc %h %p", "-J", "frame1"},
			want: Options{RouteSet: true, ProxyCommand: "nc %h %p"},
		},
		{
			name: "identity files add up",
			opts: []string{"-i", "/k1", "-i/k2", "-o", "IdentityFile=~/.ssh/k3"},
			want: Options{IdentityFiles: []string{"/k1", "/k2", "~/.ssh/k3"}},
		},
		{
			name: "known hosts files",
			opts: []string{"-o", "UserKnownHostsFile=/a/known /b/known"},
			want: Options{KnownHostsFiles: []string{"/a/known", "/b/known"}},
		},
		{
			name: "timeouts and keepalives",
			opts: []string{"-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=2"},
			want: Options{ConnectTimeout: 5 * time.Second, KeepaliveInterval: 10 * time.Second, KeepaliveMax: 2},
		},
		{name: "strict checking yes is what we do", opts: []string{"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode yes"}, want: Options{}},
		{name: "strict checking no refused", opts: []string{"-o", "StrictHostKeyChecking=no"}, wantErr: "StrictHostKeyChecking no is not supported"},
		{name: "known hosts /dev/null refused", opts: []string{"-o", "UserKnownHostsFile=/dev/null"}, wantErr: "no pinned host keys"},
		{name: "unknown -o option named", opts: []string{"-o", "Compression=yes"}, wantErr: "ssh option Compression is not supported"},
		{name: "unknown flag named", opts: []string{"-A"}, wantErr: `option "-A" is not supported`},
		{name: "combined flags named", opts: []string{"-tt"}, wantErr: `option "-tt" is not supported`},
		{name: "non-option", opts: []string{"root@host"}, wantErr: `unexpected argument "root@host"`},
		{name: "missing value", opts: []string{"-p"}, wantErr: "option -p needs a value"},
		{name: "bad port", opts: []string{"-p", "99999"}, wantErr: `bad port "99999"`},
		{name: "o without value", opts: []string{"-o", "Port"}, wantErr: `option "Port" has no value`},
		{name: "bad jump", opts: []string{"-J", "a@"}, wantErr: "empty host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSSHOpts(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSSHOpts(%q) error = %v, want it to contain %q", tt.opts, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSSHOpts(%q): %v", tt.opts, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseSSHOpts(%q) mismatch (-want +got):\n%s", tt.opts, diff)
			}
		})
	}
}

func TestOptionsApply(t *testing.T) {
	base := Target{Name: "rpi", Host: "10.0.0.3", User: "root", Jumps: []Hop{{Host: "frame1"}}}
	o, err := ParseSSHOpts([]string{"-p", "2222", "-o", "User=deploy", "-o", "ProxyCommand=nc %h %p", "-o", "HostKeyAlias=rpi"})
	if err != nil {
		t.Fatal(err)
	}
	got := o.Apply(base)
	want := Target{Name: "rpi", Host: "10.0.0.3", Port: 2222, User: "deploy", ProxyCommand: "nc %h %p", HostKeyAlias: "rpi"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Apply mismatch (-want +got):\n%s", diff)
	}
	none, _ := ParseSSHOpts([]string{"-J", "none"})
	if got := none.Apply(base); len(got.Jumps) != 0 || got.ProxyCommand != "" {
		t.Errorf("-J none left a route: %+v", got)
	}
	if got := (Options{}).Apply(base); !cmp.Equal(got, base) {
		t.Errorf("empty options changed the target: %+v", got)
	}
}

func TestParseHop(t *testing.T) {
	tests := []struct {
		spec    string
		want    Hop
		wantErr string
	}{
		{spec: "frame1", want: Hop{Name: "frame1", Host: "frame1"}},
		{spec: "ops@frame1", want: Hop{Name: "frame1", Host: "frame1", User: "ops"}},
		{spec: "ops@frame1:2222", want: Hop{Name: "frame1", Host: "frame1", Port: 2222, User: "ops"}},
		{spec: "a@b@frame1", want: Hop{Name: "frame1", Host: "frame1", User: "a@b"}},
		{spec: "[fd00::1]:2222", want: Hop{Name: "fd00::1", Host: "fd00::1", Port: 2222}},
		{spec: "root@[fd00::1]", want: Hop{Name: "fd00::1", Host: "fd00::1", User: "root"}},
		{spec: "fd00::1", want: Hop{Name: "fd00::1", Host: "fd00::1"}},
		{spec: "ssh://ops@frame1:2222", want: Hop{Name: "frame1", Host: "frame1", Port: 2222, User: "ops"}},
		{spec: "ssh://a%40b@frame1/", want: Hop{Name: "frame1", Host: "frame1", User: "a@b"}},
		{spec: "ssh://[fd00::1]:22", want: Hop{Name: "fd00::1", Host: "fd00::1", Port: 22}},
		{spec: "", wantErr: "empty host"},
		{spec: "frame1:", wantErr: "empty port"},
		{spec: "frame1:0", wantErr: "bad port"},
		{spec: "frame1:ssh", wantErr: "bad port"},
		{spec: "[fd00::1", wantErr: "missing ']'"},
		{spec: "[fd00::1]x", wantErr: "unexpected"},
		{spec: "[frame1]:22", want: Hop{Name: "frame1", Host: "frame1", Port: 22}},
		{spec: "ssh://fd00::1", wantErr: "needs brackets"},
		{spec: "ssh://a[b@fd00::1", wantErr: "needs brackets"},
		{spec: "-oProxyCommand=x", wantErr: "starts with '-'"},
		{spec: "host;reboot", wantErr: "contains ';'"},
		{spec: "ho st", wantErr: "contains ' '"},
	}
	for _, tt := range tests {
		got, err := ParseHop(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseHop(%q) = %+v, %v; want error containing %q", tt.spec, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseHop(%q): %v", tt.spec, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseHop(%q) = %+v, want %+v", tt.spec, got, tt.want)
		}
	}
}

func TestExpandHome(t *testing.T) {
	if got := ExpandHome("~/.ssh/id", "/home/u"); got != "/home/u/.ssh/id" {
		t.Errorf("ExpandHome = %q", got)
	}
	if got := ExpandHome("/abs", "/home/u"); got != "/abs" {
		t.Errorf("ExpandHome = %q", got)
	}
}
