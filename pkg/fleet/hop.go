package fleet

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseHop parses a literal hop address `[user@]host[:port]`; an IPv6
// address with a port goes in brackets (`root@[fd00::1]:22`). User and
// port may be missing (empty and 0).
func ParseHop(spec string) (Hop, error) {
	var h Hop
	rest := spec
	if user, host, ok := strings.Cut(spec, "@"); ok {
		if err := checkUser(user); err != nil {
			return Hop{}, fmt.Errorf("address %q: %w", spec, err)
		}
		h.User, rest = user, host
	}
	host, port := rest, ""
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.Index(rest, "]")
		if end < 0 {
			return Hop{}, fmt.Errorf("address %q: missing ']'", spec)
		}
		host = rest[1:end]
		after := rest[end+1:]
		if after != "" {
			p, ok := strings.CutPrefix(after, ":")
			if !ok {
				return Hop{}, fmt.Errorf("address %q: unexpected %q after ']'", spec, after)
			}
			port = p
		}
	case strings.Count(rest, ":") == 1:
		host, port, _ = strings.Cut(rest, ":")
	}
	if err := checkHost(host); err != nil {
		return Hop{}, fmt.Errorf("address %q: %w", spec, err)
	}
	h.Host = host
	if port != "" {
		n, err := parsePort(port)
		if err != nil {
			return Hop{}, fmt.Errorf("address %q: %w", spec, err)
		}
		h.Port = n
	}
	return h, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return n, nil
}

// looksLikeNodeName reports whether a jump or build host spec is a bare
// word, which tether.toml reserves for node names: a literal address must
// carry a user, a port or a dot, so a misspelt node name is an error rather
// than a DNS lookup.
func looksLikeNodeName(spec string) bool {
	return !strings.ContainsAny(spec, "@:.[")
}
