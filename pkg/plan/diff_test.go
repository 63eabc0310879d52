package plan

import (
	"crypto/sha256"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// storePath makes a valid store path for name; build distinguishes two
// builds of the same name (a rebuild gets a new hash).
func storePath(name, build string) string {
	sum := sha256.Sum256([]byte(name + "\x00" + build))
	h := make([]byte, 32)
	for i := range h {
		h[i] = nixBase32[int(sum[i])%len(nixBase32)]
	}
	return DefaultStoreDir + "/" + string(h) + "-" + name
}

func p(name string, size int64) Path       { return Path{storePath(name, "1"), size} }
func rebuilt(name string, size int64) Path { return Path{storePath(name, "2"), size} }
func closure(paths ...Path) []Path         { return paths }

func TestDiffClosures(t *testing.T) {
	base := closure(
		p("glibc-2.38-44", 30_000_000),
		p("openssl-3.0.13", 6_000_000),
		p("openssl-3.0.13-dev", 1_000_000),
		p("openssl-1.1.1w", 5_000_000),
		p("curl-8.6.0", 2_000_000),
		p("etc", 100_000),
		p("oldtool-1.0", 500_000),
		p("nginx-1.24.0", 1_500_000),
		p("python3-3.11.8", 80_000_000),
	)
	tests := []struct {
		name          string
		before, after []Path
		want          Diff
	}{
		{
			name:   "identical closures",
			before: base,
			after:  base,
			want: Diff{
				Before: Totals{9, 126_100_000},
				After:  Totals{9, 126_100_000},
			},
		},
		{
			name:   "both empty",
			before: nil,
			after:  nil,
			want:   Diff{},
		},
		{
			name:   "upgrade, downgrade, add, remove, rebuild",
			before: base,
			after: closure(
				p("glibc-2.38-44", 30_000_000),
				p("openssl-3.0.14", 6_100_000),
				p("openssl-3.0.14-dev", 1_000_000),
				p("openssl-1.1.1w", 5_000_000),
				p("curl-8.6.0", 2_000_000),
				rebuilt("etc", 100_500),
				p("newtool-0.3", 700_000),
				p("nginx-1.22.1", 1_400_000),
				p("python3-3.11.8", 80_000_000),
			),
			want: Diff{
				Before: Totals{9, 126_100_000},
				After:  Totals{9, 126_300_500},
				Packages: []Package{
					{Name: "newtool", Kind: Added, After: []string{"0.3"}, SizeAfter: 700_000, SizeDelta: 700_000},
					{Name: "nginx", Kind: Downgraded, Before: []string{"1.24.0"}, After: []string{"1.22.1"}, SizeBefore: 1_500_000, SizeAfter: 1_400_000, SizeDelta: -100_000},
					{Name: "oldtool", Kind: Removed, Before: []string{"1.0"}, SizeBefore: 500_000, SizeDelta: -500_000},
					// Two versions on each side: openssl 1.1.1w is still there.
					{Name: "openssl", Kind: Changed, Before: []string{"1.1.1w", "3.0.13"}, After: []string{"1.1.1w", "3.0.14"}, SizeBefore: 12_000_000, SizeAfter: 12_100_000, SizeDelta: 100_000},
				},
				Rebuilt: 1,
			},
		},
		{
			name:   "outputs of one package group under one version",
			before: closure(p("openssl-3.0.13", 6_000_000), p("openssl-3.0.13-dev", 1_000_000), p("openssl-3.0.13-man", 10)),
			after:  closure(p("openssl-3.0.14", 6_000_100), p("openssl-3.0.14-dev", 1_000_000)),
			want: Diff{
				Before:   Totals{3, 7_000_010},
				After:    Totals{2, 7_000_100},
				Packages: []Package{{Name: "openssl", Kind: Upgraded, Before: []string{"3.0.13"}, After: []string{"3.0.14"}, SizeBefore: 7_000_010, SizeAfter: 7_000_100, SizeDelta: 90}},
			},
		},
		{
			name:   "version order is numeric and knows pre-releases",
			before: closure(p("a-1.9", 1), p("b-2.0", 1), p("c-2.0pre1", 1), p("d-1.0", 1)),
			after:  closure(p("a-1.10", 1), p("b-2.0pre1", 1), p("c-2.0", 1), p("d-1.00", 1)),
			want: Diff{
				Before: Totals{4, 4},
				After:  Totals{4, 4},
				Packages: []Package{
					{Name: "a", Kind: Upgraded, Before: []string{"1.9"}, After: []string{"1.10"}, SizeBefore: 1, SizeAfter: 1},
					{Name: "b", Kind: Downgraded, Before: []string{"2.0"}, After: []string{"2.0pre1"}, SizeBefore: 1, SizeAfter: 1},
					{Name: "c", Kind: Upgraded, Before: []string{"2.0pre1"}, After: []string{"2.0"}, SizeBefore: 1, SizeAfter: 1},
					// Different strings, equal versions: not an upgrade, not hidden either.
					{Name: "d", Kind: Changed, Before: []string{"1.0"}, After: []string{"1.00"}, SizeBefore: 1, SizeAfter: 1},
				},
			},
		},
		{
			name:   "unversioned paths: added, removed, gaining a version",
			before: closure(p("unit-old.service", 10), p("tool", 10)),
			after:  closure(p("unit-new.service", 20), p("tool-1.0", 10)),
			want: Diff{
				Before: Totals{2, 20},
				After:  Totals{2, 30},
				Packages: []Package{
					{Name: "tool", Kind: Upgraded, Before: []string{""}, After: []string{"1.0"}, SizeBefore: 10, SizeAfter: 10},
					{Name: "unit-new.service", Kind: Added, After: []string{""}, SizeAfter: 20, SizeDelta: 20},
					{Name: "unit-old.service", Kind: Removed, Before: []string{""}, SizeBefore: 10, SizeDelta: -10},
				},
			},
		},
		{
			name:   "fresh node: everything added",
			before: nil,
			after:  closure(p("hello-2.12", 100), p("etc", 5)),
			want: Diff{
				After: Totals{2, 105},
				Packages: []Package{
					{Name: "etc", Kind: Added, After: []string{""}, SizeAfter: 5, SizeDelta: 5},
					{Name: "hello", Kind: Added, After: []string{"2.12"}, SizeAfter: 100, SizeDelta: 100},
				},
			},
		},
		{
			name:   "a path listed twice counts once",
			before: closure(p("hello-2.12", 100)),
			after:  closure(p("hello-2.12", 100), p("hello-2.12", 100)),
			want:   Diff{Before: Totals{1, 100}, After: Totals{1, 100}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DiffClosures("", tt.before, tt.after)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DiffClosures mismatch (-want +got):\n%s", diff)
			}
			// The result must not depend on input order.
			rb, ra := slices.Clone(tt.before), slices.Clone(tt.after)
			slices.Reverse(rb)
			slices.Reverse(ra)
			again, err := DiffClosures("", rb, ra)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("DiffClosures depends on input order (-forward +reversed):\n%s", diff)
			}
		})
	}
}

func TestDiffClosuresEmpty(t *testing.T) {
	c := closure(p("hello-2.12", 100), p("etc", 5))
	same, _ := DiffClosures("", c, c)
	if !same.Empty() {
		t.Errorf("identical closures: Empty() = false, diff %+v", same)
	}
	other, _ := DiffClosures("", c, closure(p("hello-2.12", 100), rebuilt("etc", 5)))
	if other.Empty() {
		t.Errorf("rebuilt etc: Empty() = true, want false")
	}
	if other.Rebuilt != 1 || other.BytesDelta() != 0 || other.PathsDelta() != 0 {
		t.Errorf("rebuilt etc: Rebuilt=%d BytesDelta=%d PathsDelta=%d, want 1 0 0", other.Rebuilt, other.BytesDelta(), other.PathsDelta())
	}
}

func TestDiffClosuresStoreDir(t *testing.T) {
	custom := strings.Replace(storePath("hello-2.12", "1"), DefaultStoreDir, "/gnu/store", 1)
	if _, err := DiffClosures("/gnu/store", nil, []Path{{custom, 1}}); err != nil {
		t.Errorf("custom store dir: %v", err)
	}
	_, err := DiffClosures("", []Path{{custom, 1}, {"/tmp/x", 1}}, nil)
	if err == nil || !strings.Contains(err.Error(), "not in /nix/store") || !strings.Contains(err.Error(), "and 1 more") {
		t.Errorf("paths outside the store: error = %v, want one naming the first and counting the rest", err)
	}
}
