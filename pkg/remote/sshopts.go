package remote

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/internal/hostport"
)

// Options holds what tether understands of the ssh command-line options a
// deploy configuration carries in sshOpts. As with ssh itself, the first value
// given for an option wins (sshOpts append across levels, so this keeps the
// meaning those lists already have), except -i and IdentityFile, which add up.
//
// Anything tether does not implement is an error naming the option: silently
// ignoring, say, a port or a proxy would connect somewhere else.
type Options struct {
	Port int
	User string
	// RouteSet reports that -J, ProxyJump or ProxyCommand was given. Then
	// either Jumps or ProxyCommand holds the route, or both are empty when
	// the route is "none" (connect directly).
	RouteSet     bool
	Jumps        []Hop
	ProxyCommand string
	// IdentityFiles and KnownHostsFiles are paths as written; "~/" is not
	// expanded here (see ExpandHome).
	IdentityFiles   []string
	KnownHostsFiles []string
	HostKeyAlias    string
	// ConnectTimeout, KeepaliveInterval (ServerAliveInterval) and
	// KeepaliveMax (ServerAliveCountMax) are zero when not given.
	ConnectTimeout    time.Duration
	KeepaliveInterval time.Duration
	KeepaliveMax      int
}

// Apply returns t with the options that concern it (port, user, route, host
// key alias) overriding its fields.
func (o Options) Apply(t Target) Target {
	if o.Port != 0 {
		t.Port = o.Port
	}
	if o.User != "" {
		t.User = o.User
	}
	if o.RouteSet {
		t.Jumps = append([]Hop(nil), o.Jumps...)
		t.ProxyCommand = o.ProxyCommand
	}
	if o.HostKeyAlias != "" {
		t.HostKeyAlias = o.HostKeyAlias
	}
	return t
}

// ExpandHome replaces a leading "~/" in path with home.
func ExpandHome(path, home string) string {
	if rest, ok := strings.CutPrefix(path, "~/"); ok && home != "" {
		return strings.TrimSuffix(home, "/") + "/" + rest
	}
	return path
}

// ParseSSHOpts parses ssh command-line options: -p N, -l USER, -J SPEC,
// -i FILE and -o in all its spellings (-oKey=val, -o Key=val, -o "Key val").
// Supported -o keys: Port, User, ProxyJump, ProxyCommand, HostKeyAlias,
// UserKnownHostsFile, IdentityFile, ConnectTimeout, ServerAliveInterval,
// ServerAliveCountMax, and StrictHostKeyChecking/BatchMode when "yes" (what
// tether always does).
func ParseSSHOpts(opts []string) (Options, error) {
	var o Options
	var portSet, userSet bool
	for i := 0; i < len(opts); i++ {
		arg := opts[i]
		if len(arg) < 2 || arg[0] != '-' || arg == "--" {
			return Options{}, fmt.Errorf("sshOpts: unexpected argument %q (only options are allowed)", arg)
		}
		flag := arg[:2]
		val := arg[2:]
		switch flag {
		case "-p", "-l", "-J", "-i", "-o":
		default:
			return Options{}, fmt.Errorf("sshOpts: option %q is not supported by tether", arg)
		}
		if val == "" {
			if i+1 >= len(opts) {
				return Options{}, fmt.Errorf("sshOpts: option %s needs a value", flag)
			}
			i++
			val = opts[i]
		}
		var err error
		switch flag {
		case "-p":
			err = o.setPort(val, &portSet)
		case "-l":
			o.setUser(val, &userSet)
		case "-J":
			err = o.setJump(val)
		case "-i":
			o.IdentityFiles = append(o.IdentityFiles, val)
		case "-o":
			err = o.setOption(val, &portSet, &userSet)
		}
		if err != nil {
			return Options{}, fmt.Errorf("sshOpts: %s %s: %w", flag, val, err)
		}
	}
	return o, nil
}

func (o *Options) setPort(v string, set *bool) error {
	p, err := hostport.ParsePort(strings.TrimSpace(v))
	if err != nil {
		return err
	}
	if !*set {
		o.Port, *set = p, true
	}
	return nil
}

func (o *Options) setUser(v string, set *bool) {
	if !*set {
		o.User, *set = v, true
	}
}

func (o *Options) setJump(v string) error {
	var hops []Hop
	if !strings.EqualFold(v, "none") {
		for _, spec := range strings.Split(v, ",") {
			h, err := ParseHop(strings.TrimSpace(spec))
			if err != nil {
				return err
			}
			hops = append(hops, h)
		}
	}
	if !o.RouteSet {
		o.RouteSet, o.Jumps = true, hops
	}
	return nil
}

// setOption handles one -o argument. As in an ssh config line the key ends at
// whitespace or '=' (one '=' with optional blanks around it).
func (o *Options) setOption(line string, portSet, userSet *bool) error {
	line = strings.TrimSpace(line)
	end := strings.IndexAny(line, " \t=")
	if end < 0 {
		return fmt.Errorf("option %q has no value", line)
	}
	key := line[:end]
	val := strings.TrimLeft(line[end:], " \t")
	if strings.HasPrefix(val, "=") {
		val = strings.TrimLeft(val[1:], " \t")
	}
	val = strings.TrimRight(val, " \t")
	if !strings.EqualFold(key, "ProxyCommand") && len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
		val = val[1 : len(val)-1]
	}
	if val == "" {
		return fmt.Errorf("option %s has no value", key)
	}
	switch strings.ToLower(key) {
	case "port":
		return o.setPort(val, portSet)
	case "user":
		o.setUser(val, userSet)
	case "proxyjump":
		return o.setJump(val)
	case "proxycommand":
		if !o.RouteSet {
			o.RouteSet = true
			if !strings.EqualFold(val, "none") {
				o.ProxyCommand = val
			}
		}
	case "hostkeyalias":
		if o.HostKeyAlias == "" {
			o.HostKeyAlias = val
		}
	case "userknownhostsfile":
		if strings.EqualFold(val, "none") || val == "/dev/null" {
			return fmt.Errorf("UserKnownHostsFile %s would leave no pinned host keys; tether refuses unknown hosts", val)
		}
		if o.KnownHostsFiles == nil {
			o.KnownHostsFiles = strings.Fields(val)
		}
	case "identityfile":
		o.IdentityFiles = append(o.IdentityFiles, val)
	case "connecttimeout":
		return setSeconds(&o.ConnectTimeout, val)
	case "serveraliveinterval":
		return setSeconds(&o.KeepaliveInterval, val)
	case "serveralivecountmax":
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return fmt.Errorf("ServerAliveCountMax %q is not a positive number", val)
		}
		if o.KeepaliveMax == 0 {
			o.KeepaliveMax = n
		}
	case "stricthostkeychecking", "batchmode":
		if !strings.EqualFold(val, "yes") {
			return fmt.Errorf("%s %s is not supported: tether never prompts and only connects to hosts whose key is pinned (known_hosts or hostKey)", key, val)
		}
	default:
		return fmt.Errorf("ssh option %s is not supported by tether", key)
	}
	return nil
}

func setSeconds(d *time.Duration, v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a number of seconds", v)
	}
	if *d == 0 {
		*d = time.Duration(n) * time.Second
	}
	return nil
}
