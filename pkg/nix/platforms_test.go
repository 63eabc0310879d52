package nix

import (
	"slices"
	"testing"
)

func TestParsePlatforms(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"system = x86_64-linux\nextra-platforms = i686-linux x86_64-v1-linux\n", []string{"x86_64-linux", "i686-linux", "x86_64-v1-linux"}},
		{"extra-platforms = aarch64-linux\nsandbox = true\nsystem = x86_64-linux\n", []string{"x86_64-linux", "aarch64-linux"}},
		{"system = aarch64-linux\nextra-platforms = \n", []string{"aarch64-linux"}},
		{"system-features = kvm big-parallel\nsystem = x86_64-linux\n", []string{"x86_64-linux"}},
	} {
		if got := ParsePlatforms(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("ParsePlatforms(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
