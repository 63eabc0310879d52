package agent

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const testToken = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func TestRequestValidate(t *testing.T) {
	good := Request{DeployID: "deploy-20260101-1", Who: "ci@runner run 12", ProfilePath: "/nix/var/nix/profiles/system",
		Closure: "/nix/store/abc-nixos-system", MagicRollback: true, AutoRollback: true, Token: testToken}
	tests := []struct {
		name string
		mod  func(*Request)
		want string // "" = valid
	}{
		{"good", func(*Request) {}, ""},
		{"no confirmation needs no token", func(r *Request) { r.MagicRollback = false; r.Token = "" }, ""},
		{"boot needs no token", func(r *Request) { r.Action = ActionBoot; r.Token = "" }, ""},
		{"test needs a token", func(r *Request) { r.Action = ActionTest; r.Token = "" }, "token"},
		{"magic rollback needs a token", func(r *Request) { r.Token = "" }, "token"},
		{"short token", func(r *Request) { r.Token = "abcd" }, "token"},
		{"upper-case id", func(r *Request) { r.DeployID = "Deploy" }, "deployId"},
		{"id with a slash", func(r *Request) { r.DeployID = "a/../b" }, "deployId"},
		{"id starting with -", func(r *Request) { r.DeployID = "-rf" }, "deployId"},
		{"id too long", func(r *Request) { r.DeployID = strings.Repeat("a", 65) }, "deployId"},
		{"newline in who", func(r *Request) { r.Who = "me\nfake line" }, "who"},
		{"relative profile", func(r *Request) { r.ProfilePath = "profiles/system" }, "profilePath"},
		{"unclean closure", func(r *Request) { r.Closure = "/nix/store/../etc" }, "closure"},
		{"empty closure", func(r *Request) { r.Closure = "" }, "closure"},
		{"unknown action", func(r *Request) { r.Action = "reboot" }, "action"},
		{"negative timeout", func(r *Request) { r.ConfirmTimeout = -1 }, "timeout"},
		{"revert", func(r *Request) { r.Revert = &Revert{Generation: 8, Path: "/nix/store/def-nixos-system", To: 7} }, ""},
		{"revert of a test", func(r *Request) {
			r.Action = ActionTest
			r.Revert = &Revert{Generation: 8, Path: "/nix/store/def-nixos-system", To: 7}
		}, "revert"},
		{"revert to itself", func(r *Request) { r.Revert = &Revert{Generation: 8, Path: "/nix/store/def-nixos-system", To: 8} }, "revert"},
		{"revert of generation 0", func(r *Request) { r.Revert = &Revert{Path: "/nix/store/def-nixos-system", To: 7} }, "revert"},
		{"revert of a relative path", func(r *Request) { r.Revert = &Revert{Generation: 8, Path: "def", To: 7} }, "revert.path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.mod(&r)
			err := r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want ok", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || Code(err) != CodeInvalidRequest):
				t.Errorf("Validate = %v, want an invalid-request error about %s", err, tc.want)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{`30`, 30 * time.Second, false},
		{`2.5`, 2500 * time.Millisecond, false},
		{`"45"`, 45 * time.Second, false},
		{`"1m30s"`, 90 * time.Second, false},
		{`""`, 0, false},
		{`-3`, 0, true},
		{`"soon"`, 0, true},
		{`true`, 0, true},
	}
	for _, tc := range tests {
		var d Duration
		err := json.Unmarshal([]byte(tc.in), &d)
		if tc.bad != (err != nil) || (!tc.bad && d.D() != tc.want) {
			t.Errorf("%s → %v, %v; want %v (error %v)", tc.in, d.D(), err, tc.want, tc.bad)
		}
	}
	b, _ := json.Marshal(Request{ConfirmTimeout: Duration(90 * time.Second)})
	var back Request
	if err := json.Unmarshal(b, &back); err != nil || back.ConfirmTimeout.D() != 90*time.Second {
		t.Errorf("round trip %s → %v %v", b, back.ConfirmTimeout.D(), err)
	}
}

func TestNewToken(t *testing.T) {
	a, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewToken()
	if a == b || !ValidToken(a) {
		t.Errorf("tokens %q %q", a, b)
	}
}

func TestGOARCH(t *testing.T) {
	for m, want := range map[string]string{"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "armv8l": "arm", "x86_64\n": "amd64"} {
		if got, err := GOARCH(m); err != nil || got != want {
			t.Errorf("GOARCH(%q) = %q, %v; want %q", m, got, err, want)
		}
	}
	for _, m := range []string{"i686", "riscv64", "mips", ""} {
		if got, err := GOARCH(m); err == nil {
			t.Errorf("GOARCH(%q) = %q, want an error", m, got)
		}
	}
	if AgentFileName("arm64") != "tether-agent-linux-arm64" {
		t.Error(AgentFileName("arm64"))
	}
}
