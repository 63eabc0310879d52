package remote

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/tetherdeploy/tether/internal/hostport"
)

// Target is a node to connect to and the way to reach it.
//
// The first machine dialled from the runner (Jumps[0], or the target itself
// when there are no jumps) may be reached through a ProxyCommand; every later
// one is dialled through the SSH connection to the one before it, so names on
// a private LAN are resolved by the jump host, never by the runner.
type Target struct {
	// Name labels the node in errors and logs; Host is used when empty.
	Name string
	Host string
	// Port defaults to 22.
	Port int
	// User defaults to Dialer.DefaultUser.
	User string
	// Jumps are dialled in order; each one through the connection to the
	// previous one.
	Jumps []Hop
	// ProxyCommand, when set, is run with sh -c and its stdin/stdout used as
	// the connection to the target. Tokens: %h host, %p port, %r user,
	// %n the node name, %% a literal %. Substituted values are quoted with
	// Quote. It cannot be combined with Jumps (put it on Jumps[0] instead).
	ProxyCommand string
	// HostKeyAlias replaces host:port when looking the host key up.
	HostKeyAlias string
	// HostKey, when set, pins the target's key (authorized_keys format,
	// "ssh-ed25519 AAAA... comment"); known_hosts is then not consulted.
	HostKey string
}

// Hop is one jump host on the way to a Target.
type Hop struct {
	// Name labels the hop in errors; Host is used when empty.
	Name string
	Host string
	Port int
	// User defaults to Dialer.DefaultUser (not to the target's user: a jump
	// host is a different machine, as with ProxyJump).
	User         string
	HostKeyAlias string
	HostKey      string
	// ProxyCommand is only allowed on the first hop.
	ProxyCommand string
}

func (t Target) label() string {
	if t.Name != "" {
		return t.Name
	}
	return t.Host
}

func (h Hop) label() string {
	if h.Name != "" {
		return h.Name
	}
	return h.Host
}

// endpoint is one machine in the chain, target or hop alike.
type endpoint struct {
	name, host   string
	port         int
	user         string
	alias        string
	hostKey      string
	proxyCommand string
}

func (e endpoint) addr() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// chain lists the machines to dial in order, the target last, with defaults
// filled in and the rules on hops and proxy commands checked.
func (t Target) chain(defaultUser string) ([]endpoint, error) {
	if t.ProxyCommand != "" && len(t.Jumps) > 0 {
		return nil, errors.New("both jump hosts and a proxy command are set; put the proxy command on the first jump host")
	}
	var eps []endpoint
	for i, h := range t.Jumps {
		if h.ProxyCommand != "" && i > 0 {
			return nil, fmt.Errorf("jump host %s: only the first jump host can use a proxy command", h.label())
		}
		eps = append(eps, endpoint{h.label(), h.Host, h.Port, h.User, h.HostKeyAlias, h.HostKey, h.ProxyCommand})
	}
	eps = append(eps, endpoint{t.label(), t.Host, t.Port, t.User, t.HostKeyAlias, t.HostKey, t.ProxyCommand})
	for i := range eps {
		e := &eps[i]
		if err := checkHost(e.host); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		if e.port == 0 {
			e.port = 22
		}
		if e.port < 0 || e.port > 65535 {
			return nil, fmt.Errorf("%s: port %d out of range", e.name, e.port)
		}
		if e.user == "" {
			e.user = defaultUser
		}
		if e.user == "" {
			return nil, fmt.Errorf("%s: no user given and no default user", e.name)
		}
	}
	return eps, nil
}

// checkHost refuses host names that cannot be a DNS name or an address.
// Leading '-' is refused because proxy commands and tools treat it as an option.
func checkHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if h[0] == '-' {
		return fmt.Errorf("host %q starts with '-'", h)
	}
	for _, r := range h {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`'"\;&|<>$`+"`()[]{}/,@*?!#", r) {
			return fmt.Errorf("host %q contains %q", h, r)
		}
	}
	return nil
}

// ParseHop parses a jump host as written after -J or in ProxyJump:
// [user@]host[:port], ssh://[user@]host[:port], IPv6 addresses in brackets
// ("[fd00::1]:2222"), or a bare IPv6 address without a port.
func ParseHop(spec string) (Hop, error) {
	rest, uri := strings.CutPrefix(spec, "ssh://")
	if uri {
		rest = strings.TrimSuffix(rest, "/")
	}
	user, host, port, err := hostport.Split(rest)
	if err != nil {
		return Hop{}, fmt.Errorf("jump host %q: %w", spec, err)
	}
	if uri && user != "" {
		if user, err = url.PathUnescape(user); err != nil {
			return Hop{}, fmt.Errorf("jump host %q: user: %w", spec, err)
		}
	}
	if strings.ContainsAny(user, ";\x00\n") {
		return Hop{}, fmt.Errorf("jump host %q: invalid user", spec)
	}
	if strings.Contains(host, ":") {
		bracketed := strings.HasPrefix(rest[strings.LastIndexByte(rest, '@')+1:], "[")
		if uri && !bracketed {
			return Hop{}, fmt.Errorf("jump host %q: an IPv6 address in an ssh:// URI needs brackets", spec)
		}
		if net.ParseIP(host) == nil {
			return Hop{}, fmt.Errorf("jump host %q: %q is not an IPv6 address", spec, host)
		}
	}
	if err := checkHost(host); err != nil {
		return Hop{}, fmt.Errorf("jump host %q: %w", spec, err)
	}
	h := Hop{Name: host, Host: host, User: user}
	if port != "" {
		if h.Port, err = hostport.ParsePort(port); err != nil {
			return Hop{}, fmt.Errorf("jump host %q: %w", spec, err)
		}
	}
	return h, nil
}
