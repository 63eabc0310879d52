package fleet

import (
	"fmt"
	"regexp"
	"strings"
)

// The patterns below are deliberately narrow. Node names end up in unit
// names, file names, log lines and (quoted) remote commands; a name that
// could be mistaken for an option or carry a shell metacharacter is refused
// at load time rather than trusted to every later quoting step.
var (
	nodeNamePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)
	tagPattern      = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)
	userPattern     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$`)
	hostPattern     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(%[A-Za-z0-9_.-]+)?$`)
	systemPattern   = regexp.MustCompile(`^[A-Za-z0-9_]+-[A-Za-z0-9_]+$`)
	profilePattern  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,62}$`)
)

// ValidNodeName reports whether name is acceptable as a node name: letters,
// digits, `_`, `.`, `-`, not starting with `.` or `-`, at most 63 bytes.
func ValidNodeName(name string) bool { return nodeNamePattern.MatchString(name) }

func checkNodeName(name string) error {
	return checkPattern(nodeNamePattern, name, "invalid node name %q: use letters, digits, '_', '.', '-' (not first), at most 63 characters")
}

// checkPattern refuses s unless p matches it all; format says what s
// should have been, with s for its %q.
func checkPattern(p *regexp.Regexp, s, format string) error {
	if !p.MatchString(s) {
		return fmt.Errorf(format, s)
	}
	return nil
}

func checkUser(u string) error { return checkPattern(userPattern, u, "invalid user name %q") }

func checkHost(h string) error {
	if !hostPattern.MatchString(h) || strings.Contains(h, "..") {
		return fmt.Errorf("invalid host name %q: want a DNS name or an IP address, without user or port", h)
	}
	return nil
}

func checkTag(t string) error {
	return checkPattern(tagPattern, t, "invalid tag %q: use letters, digits, '_', '.', '-'")
}

func checkSystem(s string) error {
	return checkPattern(systemPattern, s, "invalid system %q: want e.g. x86_64-linux or aarch64-linux")
}

func checkProfileName(p string) error {
	return checkPattern(profilePattern, p, "invalid profile name %q")
}

// checkAbsPath accepts an absolute path without control characters and
// without `..` components, for paths used on the target.
func checkAbsPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q is not absolute", p)
	}
	if hasControl(p) {
		return fmt.Errorf("path %q contains control characters", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("path %q contains '..'", p)
		}
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}
