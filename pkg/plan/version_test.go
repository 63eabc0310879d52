package plan

import "testing"

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"", "", 0},
		{"1.10", "1.9", 1},
		{"1.9", "1.10", -1},
		{"2.0pre1", "2.0", -1},
		{"2.0pre", "2.0", -1},
		{"2.3pre3", "2.3pre12", -1},
		{"2.3pre1", "2.3c", -1},
		{"1.0a", "1.0", 1},
		{"2.3a", "2.3c", -1},
		{"2.3a", "2.3.1", -1}, // a word sorts before a number
		{"1.2.3", "1.2", 1},
		{"1.0.0", "1.0", 1},
		{"", "1", -1},
		{"01", "1", 0},
		{"1.0", "1-0", 0},     // '.' and '-' are both separators
		{"1.0-rc1", "1.0", 1}, // only "pre" sorts before the release
		{"1.0alpha", "1.0beta", -1},
		{"2024-01-01", "2023-12-31", 1},
		{"5.15.148", "6.1.74", -1},
		{"3.0.13", "3.0.14", -1},
		{"24.05.20240101.abcdef0", "24.05.20240215.0123456", -1},
		{"20240101123456", "9", 1}, // numbers of any length compare numerically
		{"99999999999999999999", "100000000000000000000", -1},
		{"pre", "pre", 0},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := CompareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}
