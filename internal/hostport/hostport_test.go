package hostport

import (
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		spec             string
		user, host, port string
		err              string
	}{
		{spec: "frame1", host: "frame1"},
		{spec: "ops@frame1:2222", user: "ops", host: "frame1", port: "2222"},
		{spec: "a@b@frame1", user: "a@b", host: "frame1"},
		{spec: "fd00::1", host: "fd00::1"},
		{spec: "[fd00::1]:22", host: "fd00::1", port: "22"},
		{spec: "root@[fd00::1]", user: "root", host: "fd00::1"},
		{spec: "", host: ""},
		{spec: "@frame1", err: "empty user"},
		{spec: "frame1:", err: "empty port"},
		{spec: "[fd00::1]:", err: "empty port"},
		{spec: "[fd00::1", err: "missing ']'"},
		{spec: "[fd00::1]x", err: `unexpected "x" after ']'`},
	}
	for _, tt := range tests {
		user, host, port, err := Split(tt.spec)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Split(%q) error = %v, want one containing %q", tt.spec, err, tt.err)
			}
			continue
		}
		if err != nil || user != tt.user || host != tt.host || port != tt.port {
			t.Errorf("Split(%q) = %q, %q, %q, %v; want %q, %q, %q", tt.spec, user, host, port, err, tt.user, tt.host, tt.port)
		}
	}
}

func TestParsePort(t *testing.T) {
	for _, s := range []string{"1", "22", "65535"} {
		if _, err := ParsePort(s); err != nil {
			t.Errorf("ParsePort(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "0", "65536", "-1", "ssh", " 22"} {
		if n, err := ParsePort(s); err == nil {
			t.Errorf("ParsePort(%q) = %d, want an error", s, n)
		}
	}
}
