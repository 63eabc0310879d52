package fleet

import (
	"fmt"
	"strings"

	"github.com/tetherdeploy/tether/internal/hostport"
)

// ParseHop parses a literal hop address `[user@]host[:port]`; an IPv6
// address with a port goes in brackets (`root@[fd00::1]:22`). User and
// port may be missing (empty and 0). User and host must match tether.toml's
// name patterns, which are narrower than what the ssh options accept.
func ParseHop(spec string) (Hop, error) {
	user, host, port, err := hostport.Split(spec)
	if err != nil {
		return Hop{}, fmt.Errorf("address %q: %w", spec, err)
	}
	if user != "" {
		if err := checkUser(user); err != nil {
			return Hop{}, fmt.Errorf("address %q: %w", spec, err)
		}
	}
	if err := checkHost(host); err != nil {
		return Hop{}, fmt.Errorf("address %q: %w", spec, err)
	}
	h := Hop{User: user, Host: host}
	if port != "" {
		if h.Port, err = hostport.ParsePort(port); err != nil {
			return Hop{}, fmt.Errorf("address %q: %w", spec, err)
		}
	}
	return h, nil
}

// looksLikeNodeName reports whether a jump or build host spec is a bare
// word, which tether.toml reserves for node names: a literal address must
// carry a user, a port or a dot, so a misspelt node name is an error rather
// than a DNS lookup.
func looksLikeNodeName(spec string) bool {
	return !strings.ContainsAny(spec, "@:.[")
}
