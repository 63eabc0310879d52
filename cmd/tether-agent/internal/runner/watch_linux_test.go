//go:build linux

package runner

import (
	"encoding/binary"
	"syscall"
	"testing"
)

// inotifyEvent encodes an event as the kernel returns it: the name padded
// with NULs to a multiple of 16 bytes.
func inotifyEvent(mask uint32, name string) []byte {
	n := 0
	if name != "" {
		n = (len(name) + 1 + 15) / 16 * 16
	}
	b := make([]byte, syscall.SizeofInotifyEvent+n)
	binary.NativeEndian.PutUint32(b[0:], 1)
	binary.NativeEndian.PutUint32(b[4:], mask)
	binary.NativeEndian.PutUint32(b[12:], uint32(n))
	copy(b[syscall.SizeofInotifyEvent:], name)
	return b
}

func TestInotifyWants(t *testing.T) {
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		buf   []byte
		names []string
		want  bool
	}{
		{"the file appended to", inotifyEvent(syscall.IN_MODIFY, "events.jsonl"), []string{"events.jsonl"}, true},
		{"another file", inotifyEvent(syscall.IN_MODIFY, "agent.log"), []string{"events.jsonl"}, false},
		{"a temp file of an atomic write", inotifyEvent(syscall.IN_CREATE, ".confirm.tmp-123"), []string{"confirm"}, false},
		{"its rename into place, after others", cat(
			inotifyEvent(syscall.IN_CREATE, ".confirm.tmp-123"),
			inotifyEvent(syscall.IN_MODIFY, ".confirm.tmp-123"),
			inotifyEvent(syscall.IN_MOVED_TO, "confirm"),
		), []string{"confirm"}, true},
		{"a name that only starts alike", inotifyEvent(syscall.IN_MOVED_FROM, "confirm.claimed"), []string{"confirm"}, false},
		{"one of several names", inotifyEvent(syscall.IN_CLOSE_WRITE, "lock"), []string{"lock", "lock.json"}, true},
		{"any name when none is given", inotifyEvent(syscall.IN_DELETE, "x"), nil, true},
		{"events lost", inotifyEvent(syscall.IN_Q_OVERFLOW, ""), []string{"confirm"}, true},
		{"the directory removed", cat(inotifyEvent(syscall.IN_DELETE_SELF, ""), inotifyEvent(syscall.IN_IGNORED, "")), []string{"confirm"}, true},
		{"nothing", nil, []string{"confirm"}, false},
		{"a cut event", inotifyEvent(syscall.IN_MODIFY, "events.jsonl")[:20], []string{"confirm"}, true},
	} {
		if got := inotifyWants(tc.buf, tc.names); got != tc.want {
			t.Errorf("%s: inotifyWants = %v, want %v", tc.name, got, tc.want)
		}
	}
}
