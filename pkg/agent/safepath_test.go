package agent

import (
	"slices"
	"testing"
)

func TestUnsafeDir(t *testing.T) {
	const alice = 1000
	for _, tc := range []struct {
		uid  int
		mode uint32
		want string
	}{
		{0, 0o040755, ""},
		{alice, 0o040700, ""}, // a trusted owner
		{4242, 0o040700, "belongs to uid 4242"},
		{0, 0o041777, "is writable by other users (mode 1777)"}, // /tmp: sticky changes nothing
		{0, 0o040775, "is writable by other users (mode 0775)"},
		{0, 0o120777, "is a symbolic link"},
		{0, 0o100644, "is not a directory"},
	} {
		if got := UnsafeDir(tc.uid, tc.mode, []int{alice}); got != tc.want {
			t.Errorf("uid %d mode %o: %q, want %q", tc.uid, tc.mode, got, tc.want)
		}
	}
}

func TestPathPrefixes(t *testing.T) {
	for path, want := range map[string][]string{
		"/var/lib/tether":   {"/", "/var", "/var/lib", "/var/lib/tether"},
		"/var//lib/../lib/": {"/", "/var", "/var/lib"},
		"/":                 {"/"},
	} {
		if got := PathPrefixes(path); !slices.Equal(got, want) {
			t.Errorf("%q: %q, want %q", path, got, want)
		}
	}
}
