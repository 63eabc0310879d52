//go:build linux

package main

import (
	"bytes"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3}, 3},
		{[]time.Duration{5, 1, 3}, 3},
		{[]time.Duration{4, 1, 3, 2}, 2}, // (2+3)/2 in integer nanoseconds
		{[]time.Duration{10, 30}, 20},
	}
	for _, tt := range tests {
		in := append([]time.Duration(nil), tt.in...)
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if len(in) > 0 && in[0] != tt.in[0] {
			t.Errorf("median reordered its argument")
		}
	}
}

func TestFormats(t *testing.T) {
	tests := []struct{ got, want string }{
		{secs(1500 * time.Millisecond), "1.50 s"},
		{millis(1234567 * time.Microsecond), "1234 ms"},
		{millis(-20 * time.Millisecond), "-20 ms"},
		{ratio(3*time.Second, 2*time.Second), "1.50×"},
		{ratio(time.Second, 0), "n/a"},
		{bytesIEC(512), "512 B"},
		{bytesIEC(10 << 20), "10.0 MiB"},
		{bytesIEC(1536 << 20), "1.5 GiB"},
		{percent(1, 3), "33.3%"},
		{percent(5, 1000), "0.50%"},
		{percent(1, 100000), "0.001%"},
		{percent(1, 0), "n/a"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestTableMarkdownEscapesPipes(t *testing.T) {
	tb := table{header: []string{"a", "b"}}
	tb.add("x|y", "1")
	var b bytes.Buffer
	tb.markdown(&b)
	want := "| a | b |\n|---|---|\n| x\\|y | 1 |\n"
	if b.String() != want {
		t.Errorf("markdown:\n%s\nwant:\n%s", b.String(), want)
	}
}
