package agent

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// The rule for the directories a privileged agent lives in or follows: the
// state dir and every directory above it, and the directories above a
// profile. Whoever can write to one of them can replace what is below it —
// the agent the deployer runs as root, a profile link root activates
// through — so each must be a real directory (not a symbolic link), owned
// by root or by a user the agent trusts (its own, the one that ran sudo),
// and writable by nobody else. A sticky bit changes nothing: a directory
// others may create entries in lets them take a name first (a state dir in
// /tmp before the first deploy), and /tmp does not survive a reboot, which
// the state of an unfinished deploy must.
//
// The deployer applies it from outside, before it uploads or runs
// anything; the agent applies it again to the profile it is asked to
// activate.

// Mode bits of st_mode, as stat(2) reports them.
const (
	modeTypeMask = 0o170000
	modeDir      = 0o040000
	modeSymlink  = 0o120000
)

// UnsafeDir says why the existing path component dir, with owner uid and
// st_mode mode, fails the rule for a process trusting owners (root is
// always trusted); "" when it passes.
func UnsafeDir(uid int, mode uint32, owners []int) string {
	switch mode & modeTypeMask {
	case modeDir:
	case modeSymlink:
		return "is a symbolic link"
	default:
		return "is not a directory"
	}
	if uid != 0 && !slices.Contains(owners, uid) {
		return fmt.Sprintf("belongs to uid %d", uid)
	}
	if mode&0o022 != 0 {
		return fmt.Sprintf("is writable by other users (mode %04o)", mode&0o7777)
	}
	return ""
}

// PathPrefixes lists an absolute path and every directory above it, the
// root first: "/var/lib/tether" gives "/", "/var", "/var/lib",
// "/var/lib/tether". These are what UnsafeDir is applied to, in order.
func PathPrefixes(path string) []string {
	path = filepath.Clean(path)
	out := []string{"/"}
	if path == "/" {
		return out
	}
	cur := ""
	for _, c := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		cur += "/" + c
		out = append(out, cur)
	}
	return out
}
