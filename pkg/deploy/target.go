package deploy

import (
	"fmt"

	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// Connection is how to reach a node: the SSH target and the extra key and
// known_hosts files its sshOpts name.
type Connection struct {
	Target          remote.Target
	IdentityFiles   []string
	KnownHostsFiles []string
}

// ConnectionFor turns a node's configuration into an SSH target. sshOpts
// are applied last, as ssh applies command-line options over its config.
func ConnectionFor(n *fleet.Node) (Connection, error) {
	t := remote.Target{
		Name:         n.Name,
		Host:         n.Hostname,
		Port:         n.Port,
		User:         n.Settings.SSHUser,
		ProxyCommand: n.ProxyCommand,
		HostKeyAlias: n.HostKeyAlias,
		HostKey:      n.HostKey,
	}
	for _, h := range n.Jumps {
		hop := remote.Hop{
			Name:         h.Node,
			Host:         h.Host,
			Port:         h.Port,
			User:         h.User,
			HostKey:      h.HostKey,
			HostKeyAlias: h.HostKeyAlias,
		}
		if len(h.SSHOpts) > 0 {
			o, err := remote.ParseSSHOpts(h.SSHOpts)
			if err != nil {
				return Connection{}, fmt.Errorf("node %s: jump host %s: sshOpts: %w", n.Name, h, err)
			}
			if hop.Port == 0 {
				hop.Port = o.Port
			}
			if hop.User == "" {
				hop.User = o.User
			}
			if hop.HostKeyAlias == "" {
				hop.HostKeyAlias = o.HostKeyAlias
			}
		}
		t.Jumps = append(t.Jumps, hop)
	}
	if len(t.Jumps) > 0 && t.ProxyCommand != "" {
		// The proxy carries the connection to the first hop.
		t.Jumps[0].ProxyCommand = t.ProxyCommand
		t.ProxyCommand = ""
	}
	o, err := remote.ParseSSHOpts(n.Settings.SSHOpts)
	if err != nil {
		return Connection{}, fmt.Errorf("node %s: sshOpts: %w", n.Name, err)
	}
	t = o.Apply(t)
	return Connection{Target: t, IdentityFiles: o.IdentityFiles, KnownHostsFiles: o.KnownHostsFiles}, nil
}
