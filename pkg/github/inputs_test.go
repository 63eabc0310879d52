package github

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-githubactions"
)

// The action reads each input under the name go-githubactions' GetInput
// looks up, hyphens kept.
func TestInputEnvMatchesGetInput(t *testing.T) {
	for _, name := range InputNames {
		env := map[string]string{InputEnv(name): "value of " + name}
		a := githubactions.New(githubactions.WithGetenv(func(k string) string { return env[k] }))
		if got := a.GetInput(name); got != "value of "+name {
			t.Errorf("GetInput(%q) reads %v, not %s", name, got, InputEnv(name))
		}
		if got := readInput(func(k string) string { return env[k] }, name); got != "value of "+name {
			t.Errorf("readInput(%q) = %q", name, got)
		}
	}
	if got := InputEnv("ssh-private-key"); got != "INPUT_SSH-PRIVATE-KEY" {
		t.Errorf("InputEnv = %q", got)
	}
}

func TestParseInputs(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Inputs
		err  string
	}{
		{
			name: "defaults",
			env:  map[string]string{},
			want: Inputs{Command: "auto", Flake: ".", Environment: "production", Comment: true},
		},
		{
			name: "everything",
			env: map[string]string{
				"INPUT_COMMAND": " Deploy ", "INPUT_FLAKE": "github:example/fleet", "INPUT_NODES": "frame1, rpi\n@lan  web*",
				"INPUT_SSH-PRIVATE-KEY": "-----BEGIN KEY-----\r\nabc\r\n-----END KEY-----\r\n", "INPUT_KNOWN-HOSTS": "frame1 ssh-ed25519 AAAA",
				"INPUT_CONFIRM-TIMEOUT": "90", "INPUT_DRY-ACTIVATE": "on", "INPUT_BUILD-HOST": "frame1", "INPUT_PARALLEL": "4",
				"INPUT_KEEP-GOING": "yes", "INPUT_REBOOT": "true", "INPUT_GITHUB-TOKEN": "t", "INPUT_COMMENT": "off", "INPUT_ENVIRONMENT": "home",
				"INPUT_WORKING-DIRECTORY": "infra", "INPUT_GENERATION": "41",
			},
			want: Inputs{
				Command: "deploy", Flake: "github:example/fleet", Nodes: []string{"frame1", "rpi", "@lan", "web*"},
				SSHPrivateKey: "-----BEGIN KEY-----\nabc\n-----END KEY-----\n", KnownHosts: "frame1 ssh-ed25519 AAAA\n",
				ConfirmTimeout: 90 * time.Second, DryActivate: true, BuildHost: "frame1", Parallel: 4, KeepGoing: true, Reboot: true,
				GitHubToken: "t", Comment: false, Environment: "home", WorkingDirectory: "infra", Generation: 41,
			},
		},
		{
			name: "underscore spelling from other CIs",
			env:  map[string]string{"INPUT_SSH_PRIVATE_KEY": "k", "INPUT_CONFIRM_TIMEOUT": "2m"},
			want: Inputs{Command: "auto", Flake: ".", Environment: "production", Comment: true, SSHPrivateKey: "k\n", ConfirmTimeout: 2 * time.Minute},
		},
		{
			name: "every problem at once",
			env:  map[string]string{"INPUT_COMMAND": "destroy", "INPUT_PARALLEL": "-1", "INPUT_CONFIRM-TIMEOUT": "soon", "INPUT_COMMENT": "maybe", "INPUT_GENERATION": "1.5"},
			err:  "input command: \"destroy\" is not one of auto, plan, deploy, rollback\ninput confirm-timeout: \"soon\" is not a duration such as 30s or 2m, or a number of seconds\ninput comment: \"maybe\" is not a boolean (true/false, on/off)\ninput parallel: \"-1\" is not a non-negative whole number\ninput generation: \"1.5\" is not a non-negative whole number",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInputs(func(k string) string { return tt.env[k] })
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err = %v\nwant %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestMarker(t *testing.T) {
	tests := []struct{ kind, key, want string }{
		{"plan", "Deploy/tether", "<!-- tether:plan Deploy/tether -->"},
		{"plan", "My workflow --> <b>x</b>/job", "<!-- tether:plan My-workflow-b-x-/b-/job -->"},
		{"deploy", "", "<!-- tether:deploy -->"},
		{"plan", "--", "<!-- tether:plan -->"},
	}
	for _, tt := range tests {
		got := marker(tt.kind, tt.key)
		if got != tt.want {
			t.Errorf("marker(%q, %q) = %q, want %q", tt.kind, tt.key, got, tt.want)
		}
		if strings.Count(got, "--") != 2 {
			t.Errorf("marker %q holds a '--' inside the comment", got)
		}
	}
	if !hasMarker("<!-- tether:plan a -->\nbody", "<!-- tether:plan a -->") || hasMarker("<!-- tether:plan a -->x", "<!-- tether:plan a -->") {
		t.Error("hasMarker must match the marker as a whole first line")
	}
}
