// Package hostport splits the SSH address form `[user@]host[:port]` that
// tether.toml's jump and build hosts and the ssh options' -J share. It only
// cuts the address into its parts; what a valid user or host is stays with
// each caller, whose rules differ (tether.toml is stricter).
package hostport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Split cuts spec into user, host and port. An IPv6 address with a port
// goes in brackets (`root@[fd00::1]:22`); without brackets, an address with
// more than one ':' is a bare IPv6 address with no port. User and port are
// "" when not given; an '@' with no user before it, or a ':' with no port
// after it, is an error. The user ends at the last '@', as the ssh options
// read it.
func Split(spec string) (user, host, port string, err error) {
	rest := spec
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, rest = rest[:at], rest[at+1:]
		if user == "" {
			return "", "", "", errors.New("empty user")
		}
	}
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", "", "", errors.New("missing ']'")
		}
		host, rest = rest[1:end], rest[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return "", "", "", fmt.Errorf("unexpected %q after ']'", rest)
			}
			if p == "" {
				return "", "", "", errors.New("empty port")
			}
			port = p
		}
	case strings.Count(rest, ":") == 1:
		host, port, _ = strings.Cut(rest, ":")
		if port == "" {
			return "", "", "", errors.New("empty port")
		}
	default:
		host = rest
	}
	return user, host, port, nil
}

// ParsePort reads a TCP port, 1 to 65535.
func ParsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return n, nil
}
