//go:build linux

package runner

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"syscall"
)

// watchMask is what the loops wait for: a write to a file (the event log
// grows), a file made, renamed into place (atomic writes: the confirmation,
// lock.json) or removed, and a writer closing one (the runner closing the
// lock file after dropping its flock). Opening and reading are left out:
// the loops read the files they watch, and must not wake themselves.
const watchMask = syscall.IN_MODIFY | syscall.IN_CLOSE_WRITE | syscall.IN_CREATE | syscall.IN_DELETE |
	syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF | syscall.IN_ONLYDIR

// watchDir watches dir with inotify. The descriptor is non-blocking, so the
// runtime's poller waits on it and closing the file ends the goroutine's
// read; no thread is held for a watch.
func watchDir(dir string, names ...string) (*fileWatch, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, os.NewSyscallError("inotify_init1", err))
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, watchMask); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", dir, os.NewSyscallError("inotify_add_watch", err))
	}
	f := os.NewFile(uintptr(fd), "inotify:"+dir)
	w := &fileWatch{c: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Room for many events at once; one is at most 16 bytes and a
		// name of up to 255 (NAME_MAX) with its padding.
		buf := make([]byte, 16<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				// Closed, or the descriptor is not pollable after
				// all: the loop's poll goes on alone.
				return
			}
			if inotifyWants(buf[:n], names) {
				w.wake()
			}
		}
	}()
	w.stop = func() {
		f.Close()
		<-done
	}
	return w, nil
}

// inotifyWants reports whether the inotify events in buf concern one of
// names (any, when names is empty) or say that events may have been lost
// (queue overflow) or that the directory went: then only a look tells.
func inotifyWants(buf []byte, names []string) bool {
	const header = syscall.SizeofInotifyEvent
	for len(buf) >= header {
		mask := binary.NativeEndian.Uint32(buf[4:8])
		n := int(binary.NativeEndian.Uint32(buf[12:16]))
		if n > len(buf)-header {
			// Cannot happen: the kernel returns whole events.
			return true
		}
		name := string(bytes.TrimRight(buf[header:header+n], "\x00"))
		buf = buf[header+n:]
		if mask&(syscall.IN_Q_OVERFLOW|syscall.IN_IGNORED|syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0 {
			return true
		}
		if len(names) == 0 || slices.Contains(names, name) {
			return true
		}
	}
	return false
}
