package plan

import (
	"strings"
	"testing"
)

func TestSplitName(t *testing.T) {
	tests := []struct {
		in   string
		want Name
	}{
		{"openssl-3.0.13", Name{"openssl", "3.0.13", ""}},
		{"openssl-3.0.13-dev", Name{"openssl", "3.0.13", "dev"}},
		{"openssl-3.0.13-man", Name{"openssl", "3.0.13", "man"}},
		{"gcc-12.3.0-lib", Name{"gcc", "12.3.0", "lib"}},
		{"util-linux-minimal-2.39.3-bin", Name{"util-linux-minimal", "2.39.3", "bin"}},
		{"linux-6.1.74-modules", Name{"linux", "6.1.74", "modules"}},
		{"python3.11-requests-2.31.0-dist", Name{"python3.11-requests", "2.31.0", "dist"}},
		{"apache-httpd-2.0.48", Name{"apache-httpd", "2.0.48", ""}},
		{"perl5.38.0-Net-SSLeay-1.92", Name{"perl5.38.0-Net-SSLeay", "1.92", ""}},
		{"foo-unstable-2024-01-01", Name{"foo-unstable", "2024-01-01", ""}},
		{"glibc-2.38-44", Name{"glibc", "2.38-44", ""}},
		{"hello-1.0-rc1", Name{"hello", "1.0-rc1", ""}},
		{"nixos-system-frame1-24.05.20240101.abcdef0", Name{"nixos-system-frame1", "24.05.20240101.abcdef0", ""}},
		// Nix's rule is "a dash not followed by a letter", not "followed by a digit".
		{"foo-_bar", Name{"foo", "_bar", ""}},
		{"foo-.1", Name{"foo", ".1", ""}},
		// No version: the whole name, output-looking suffix included.
		{"etc", Name{"etc", "", ""}},
		{"unit-sshd.service", Name{"unit-sshd.service", "", ""}},
		{"hello-man", Name{"hello-man", "", ""}},
		{"system-units", Name{"system-units", "", ""}},
		{"foo-", Name{"foo-", "", ""}},
		// A version that is only an output word stays a version.
		{"foo-1-dev", Name{"foo", "1", "dev"}},
		{"foo-1dev", Name{"foo", "1dev", ""}},
	}
	for _, tt := range tests {
		if got := SplitName(tt.in); got != tt.want {
			t.Errorf("SplitName(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseStorePath(t *testing.T) {
	const h = "0c3b5j7r9zq3v8l2w4y6x1a2b3c4d5f6" // 32 chars of the store alphabet
	tests := []struct {
		dir, path string
		want      StorePath
		wantErr   string
	}{
		{"", "/nix/store/" + h + "-openssl-3.0.13-dev", StorePath{h, Name{"openssl", "3.0.13", "dev"}}, ""},
		{"/nix/store", "/nix/store/" + h + "-etc", StorePath{h, Name{"etc", "", ""}}, ""},
		{"/custom/store/", "/custom/store/" + h + "-hello-2.12", StorePath{h, Name{"hello", "2.12", ""}}, ""},
		{"/custom/store", "/nix/store/" + h + "-hello-2.12", StorePath{}, "not in /custom/store"},
		{"", "/nix/store/abc-hello-2.12", StorePath{}, "32-char hash"},
		{"", "/nix/store/" + strings.Replace(h, "0", "e", 1) + "-hello", StorePath{}, "32-char hash"},
		{"", "/nix/store/" + h + "-hello/bin/hello", StorePath{}, "32-char hash"},
		{"", "/nix/store/" + h, StorePath{}, "32-char hash"},
		{"", "/nix/store/" + h + "-", StorePath{}, "32-char hash"},
		{"", "", StorePath{}, "not in /nix/store"},
	}
	for _, tt := range tests {
		got, err := ParseStorePath(tt.dir, tt.path)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseStorePath(%q, %q) error = %v, want one containing %q", tt.dir, tt.path, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseStorePath(%q, %q) = %+v, %v; want %+v", tt.dir, tt.path, got, err, tt.want)
		}
	}
}
