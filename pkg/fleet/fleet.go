// Package fleet is the model every other part of tether works from: the
// machines (nodes) of a flake, how to reach them, what to activate on them
// and with which deploy settings.
//
// A fleet comes from two sources merged into one model: the `deploy.nodes`
// schema read from the flake (so an existing flake deploys with no change),
// and an optional tether.toml beside flake.nix for what that schema cannot
// say (tags, waves, jump hosts, pinned host keys, build hosts, health
// checks). Loading evaluates the flake but builds nothing, and every
// configuration mistake is reported with its file:line before any machine
// is touched.
package fleet

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Fleet is every node known to a flake, fully resolved.
type Fleet struct {
	// Dir is the local directory holding flake.nix and tether.toml.
	Dir string
	// Flake is the flake reference the nodes were evaluated from.
	Flake string
	// ConfigFile is the tether.toml that was read, "" when there was none.
	ConfigFile string
	// KnownHosts is the absolute path of the fleet-wide known_hosts file
	// named in tether.toml, "" when none was named.
	KnownHosts string
	// Concurrency is the most nodes to handle at once; 0 leaves the choice
	// to the deployer.
	Concurrency int
	// Nodes by name.
	Nodes map[string]*Node
}

// Names returns the node names, sorted.
func (f *Fleet) Names() []string {
	names := make([]string, 0, len(f.Nodes))
	for name := range f.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Node returns the named node, or nil.
func (f *Fleet) Node(name string) *Node { return f.Nodes[name] }

// Source says which configuration a node came from.
type Source uint8

const (
	// FromDeployNodes marks a node found in the flake's deploy.nodes.
	FromDeployNodes Source = 1 << iota
	// FromConfig marks a node found in tether.toml.
	FromConfig
)

func (s Source) String() string {
	switch s {
	case FromDeployNodes:
		return "deploy.nodes"
	case FromConfig:
		return "tether.toml"
	case FromDeployNodes | FromConfig:
		return "deploy.nodes+tether.toml"
	}
	return "unknown"
}

// Node is one machine: how to reach it, what to activate on it, and when.
type Node struct {
	Name   string
	Source Source

	// Hostname is the address to connect to (name or IP, no port).
	Hostname string
	// Port is the SSH port; 0 means not set (22, unless sshOpts say
	// otherwise).
	Port int
	// Jumps are the hops to go through, in dialling order, already
	// expanded: a jump through another node brings that node's own hops
	// first.
	Jumps []Hop
	// ProxyCommand, when set, carries the connection to the first hop (or
	// to the node itself when there are no hops). `%h` and `%p` are left
	// for the transport to expand.
	ProxyCommand string
	// HostKey is the pinned public key in authorized_keys form
	// ("ssh-ed25519 AAAA..."), "" when the key comes from known_hosts.
	HostKey string
	// HostKeyAlias is the name the host key is looked up under in
	// known_hosts, "" to use Hostname (and Port).
	HostKeyAlias string

	Tags []string // sorted, unique
	// System is the Nix system type ("x86_64-linux", "aarch64-linux"), ""
	// when neither tether.toml nor the evaluated derivations said.
	System string
	// BuildHost is where this node's closure is built: "" (on the runner),
	// the name of another node, or a `[user@]host[:port]` address.
	BuildHost string
	// Wave orders deployment: all nodes of a lower wave finish first.
	Wave int
	// Reboot deploys the node's system by booting it once and committing
	// it only when confirmed from that boot (deploy --reboot).
	Reboot bool
	Health []HealthCheck

	// Profiles to activate, in order (profilesOrder first, then the rest
	// sorted by name).
	Profiles []*Profile

	// Settings are the node's deploy settings as a whole, used for its
	// connection: those of its first profile (most nodes have only
	// `system`), or the node-level settings when it has no profile.
	Settings Settings

	// Origins tells where the node-level fields above came from, keyed by
	// "hostname", "port", "jump", "proxyCommand", "hostKey", "hostKeyAlias",
	// "tags", "system", "buildHost", "wave", "reboot", "health" and "node" (the node
	// itself).
	Origins map[string]Origin
}

// Profile is one Nix profile to set and activate on a node.
type Profile struct {
	Name string
	// DrvPath is the derivation to realise; "" when the flake gave an
	// already built store path.
	DrvPath string
	// OutPath is the store path that activation switches to.
	OutPath string
	// DrvName is the derivation's name.
	DrvName string
	// System is the derivation's system type, "" when unknown.
	System string
	// ProfilePath is the profile to set on the target, e.g.
	// /nix/var/nix/profiles/system.
	ProfilePath string
	// Settings are the deploy settings resolved for this profile;
	// Settings.User is the user the profile belongs to.
	Settings Settings
	// Origin is where the profile was defined.
	Origin Origin
}

// Hop is one intermediate SSH server on the way to a node.
type Hop struct {
	// Node is the fleet node this hop is, "" for a literal address.
	Node string
	User string
	Host string
	// Port is 0 when not given (22).
	Port         int
	HostKey      string
	HostKeyAlias string
	// SSHOpts are the raw sshOpts of the node this hop is, if any.
	SSHOpts []string
}

// String renders the hop as `user@host[:port]`.
func (h Hop) String() string {
	host := h.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	s := host
	if h.User != "" {
		s = h.User + "@" + s
	}
	if h.Port != 0 {
		s = fmt.Sprintf("%s:%d", s, h.Port)
	}
	return s
}

// HealthCheck is one check that must pass before a deploy is confirmed.
// Exactly one of HTTP and Command is set.
type HealthCheck struct {
	Name string
	// HTTP is a URL fetched from the deployer; the answer must have
	// ExpectStatus.
	HTTP         string
	ExpectStatus int
	// Command is an argv run on the target; it must exit 0.
	Command []string
	// Timeout is 0 when the checker's default applies.
	Timeout time.Duration
	Origin  Origin
}

// Settings are the deploy settings of the `deploy.nodes` schema, resolved.
// Every field has a value; Origins says where each came from.
type Settings struct {
	SSHUser string
	// User owns the profile (activation runs as this user, through Sudo
	// when it differs from SSHUser).
	User string
	// SSHOpts are the raw ssh options from every level, least specific
	// first (deploy top level, tether.toml defaults, node, profile,
	// tether.toml node, command line): a parser should let later values
	// win.
	SSHOpts           []string
	FastConnection    bool
	AutoRollback      bool
	MagicRollback     bool
	ConfirmTimeout    time.Duration
	ActivationTimeout time.Duration
	TempPath          string
	RemoteBuild       bool
	InteractiveSudo   bool
	// Sudo is the command prefix that switches to User, e.g. "sudo -u".
	// It is split on white space into argv, never given to a shell.
	Sudo string

	// Origins maps each key (the schema names: "sshUser", "user",
	// "sshOpts", "fastConnection", "autoRollback", "magicRollback",
	// "confirmTimeout", "activationTimeout", "tempPath", "remoteBuild",
	// "interactiveSudo", "sudo") to where its value came from. For
	// "sshOpts" it is the most specific level that added options.
	Origins map[string]Origin
}

// Setting keys, as spelt in the deploy.nodes schema.
const (
	KeySSHUser           = "sshUser"
	KeyUser              = "user"
	KeySSHOpts           = "sshOpts"
	KeyFastConnection    = "fastConnection"
	KeyAutoRollback      = "autoRollback"
	KeyMagicRollback     = "magicRollback"
	KeyConfirmTimeout    = "confirmTimeout"
	KeyActivationTimeout = "activationTimeout"
	KeyTempPath          = "tempPath"
	KeyRemoteBuild       = "remoteBuild"
	KeyInteractiveSudo   = "interactiveSudo"
	KeySudo              = "sudo"
)

// Default values of settings nobody set.
const (
	DefaultConfirmTimeout    = 30 * time.Second
	DefaultActivationTimeout = 240 * time.Second
	DefaultTempPath          = "/var/lib"
	DefaultSudo              = "sudo -u"
)

// Origin says where a value was set, for error messages and `status`.
type Origin struct {
	// Source is "default", "deploy.nodes", "tether.toml" or
	// "command line".
	Source string
	// Key is the full key, e.g. "deploy.nodes.rpi.profiles.system.sshUser"
	// or "nodes.rpi.ssh_user".
	Key string
	// File and Line locate the definition when known (File relative to
	// the flake directory).
	File string
	Line int
}

func (o Origin) String() string {
	loc := ""
	if o.File != "" {
		loc = o.File
		if o.Line > 0 {
			loc = fmt.Sprintf("%s:%d", o.File, o.Line)
		}
	}
	switch {
	case loc != "" && o.Key != "":
		return loc + " (" + o.Key + ")"
	case loc != "":
		return loc
	case o.Key != "":
		return o.Key
	case o.Source != "":
		return o.Source
	}
	return "unknown"
}

// Source names used in Origin.
const (
	OriginDefault     = "default"
	OriginDeployNodes = "deploy.nodes"
	OriginConfig      = "tether.toml"
	OriginOverride    = "command line"
)
