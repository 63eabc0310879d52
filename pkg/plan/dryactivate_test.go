package plan

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDryActivateFiles(t *testing.T) {
	tests := []struct {
		file string
		want DryActivate
	}{
		{
			file: "dry-activate-perl.txt",
			want: DryActivate{
				Stop:           []string{"container@web.service", "network-addresses-eth0.service", "prometheus-node-exporter.service", "var-lib-data.mount"},
				NotStopped:     []string{"dbus.service", "display-manager.service"},
				Reload:         []string{"dbus.service", "firewall.service", "home.mount"},
				Restart:        []string{"getty@tty1.service", "sshd.service", "systemd-journald.service"},
				Start:          []string{"container@web.service", "network-addresses-eth0.service", "prometheus-node-exporter.service", "var-lib-data.mount"},
				RestartSystemd: true,
				Other: []string{
					"would remove user ‘olduser’",
					"would remove group ‘oldgroup’",
					"warning: would not apply UID change of user ‘svc’ (1001 -> 1002) in /etc/passwd",
				},
			},
		},
		{
			file: "dry-activate-perl-old.txt",
			want: DryActivate{
				StopSwap:       []string{"/dev/disk/by-uuid/3f1c1e52-8d4f-4b3a-9a40-5cf1f5e0f2b1"},
				Stop:           []string{"nginx.service"},
				Restart:        []string{"sshd.service"},
				Start:          []string{"nginx.service"},
				RestartSystemd: true,
			},
		},
		{
			file: "dry-activate-ng.txt",
			want: DryActivate{
				StopSwap:       []string{"/dev/disk/by-uuid/3f1c1e52-8d4f-4b3a-9a40-5cf1f5e0f2b1"},
				Stop:           []string{"Grafana-Agent.service", "nginx.service", "sys-kernel-debug.mount"},
				NotStopped:     []string{"systemd-journald.service"},
				Reload:         []string{"dbus-broker.service"},
				Restart:        []string{"acme-example.org.service", "nscd.service", "systemd-journald.service"},
				Start:          []string{"Grafana-Agent.service", "nginx.service", "sys-kernel-debug.mount"},
				RestartSystemd: true,
				Other:          []string{"warning: would not apply GID change of group ‘grafana’ (997 -> 1005) in /etc/group"},
			},
		},
		{
			file: "dry-activate-reboot.txt",
			want: DryActivate{
				RebootRequired: true,
				Other: []string{
					"Warning: the new NixOS configuration has an ‘init’ that is",
					"incompatible with the current configuration.  The new configuration",
					"won't take effect until you reboot the system.",
				},
			},
		},
		{
			file: "dry-activate-nothing.txt",
			want: DryActivate{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got := ParseDryActivate(string(b))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseDryActivate mismatch (-want +got):\n%s", diff)
			}
			if wantEmpty := tt.file == "dry-activate-nothing.txt"; got.Empty() != wantEmpty {
				t.Errorf("Empty() = %v, want %v", got.Empty(), wantEmpty)
			}
		})
	}
}

func TestParseDryActivateLines(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want DryActivate
	}{
		{
			name: "CRLF line ends and blank lines",
			in:   "would restart the following units: a.service, b.service\r\n\r\n   \nwould restart systemd\r\n",
			want: DryActivate{Restart: []string{"a.service", "b.service"}, RestartSystemd: true},
		},
		{
			name: "unknown lines are kept verbatim and in order",
			in:   "  indented output\nwould start the following units: x.service\nError: something <b>odd</b> | happened\n",
			want: DryActivate{Start: []string{"x.service"}, Other: []string{"  indented output", "Error: something <b>odd</b> | happened"}},
		},
		{
			name: "a line that only starts like a known one is not mistaken for it",
			in:   "would restart systemd now\nwould stop the following units:\nwould restart the following unitsX: a\n",
			want: DryActivate{Other: []string{"would restart systemd now", "would stop the following units:", "would restart the following unitsX: a"}},
		},
		{
			name: "the same list twice accumulates",
			in:   "would reload the following units: a.service\nwould reload the following units: b.service",
			want: DryActivate{Reload: []string{"a.service", "b.service"}},
		},
		{
			name: "empty output",
			in:   "",
			want: DryActivate{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseDryActivate(tt.in)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseDryActivate(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
