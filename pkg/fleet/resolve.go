package fleet

import (
	"fmt"
	"sort"
	"strings"
)

// resolveInput is everything Load gathered; resolve itself touches neither
// Nix nor the file system, so the merge rules are tested as a pure
// function.
type resolveInput struct {
	dir, flake string
	configFile string
	knownHosts string
	cfg        *config     // nil without tether.toml
	deploy     *deployData // never nil
	// toplevels holds the evaluated configuration of each node only
	// tether.toml names.
	toplevels map[string]rawPath
	localUser string
	overrides Overrides
}

// resolve merges the two sources. Settings are layered from least to most
// specific, and a later level replaces a key (sshOpts are appended):
//
//	defaults < deploy (top level) < tether.toml [defaults] < deploy.nodes.<n>
//	  < deploy.nodes.<n>.profiles.<p> < tether.toml [nodes.<n>] < overrides
//
// tether.toml sits just above its flake counterpart at each level: it is
// the file a user edits to override the flake without touching Nix code.
func resolve(in resolveInput) (*Fleet, error) {
	f := &Fleet{
		Dir:        in.dir,
		Flake:      in.flake,
		ConfigFile: in.configFile,
		KnownHosts: in.knownHosts,
		Nodes:      map[string]*Node{},
	}
	cfgNodes := map[string]*configNode{}
	var cfgDefaults layer
	if in.cfg != nil {
		f.Concurrency = in.cfg.concurrency
		cfgNodes = in.cfg.nodes
		cfgDefaults = in.cfg.defaults
	}
	var errs errorList

	names := map[string]bool{}
	for name := range in.deploy.nodes {
		names[name] = true
	}
	for name := range cfgNodes {
		names[name] = true
	}
	sorted := make([]string, 0, len(names))
	for name := range names {
		sorted = append(sorted, name)
	}
	sort.Strings(sorted)

	folded := map[string]string{}
	for _, name := range sorted {
		if other, ok := folded[strings.ToLower(name)]; ok {
			at := Origin{}
			if cn := cfgNodes[name]; cn != nil {
				at = cn.at
			} else if dn := in.deploy.nodes[name]; dn != nil {
				at = dn.at
			}
			errs.add(at, name, "", "node names %q and %q differ only in case", other, name)
			continue
		}
		folded[strings.ToLower(name)] = name
		if n := resolveNode(name, in.deploy, in.deploy.nodes[name], cfgDefaults, cfgNodes[name], in, &errs); n != nil {
			f.Nodes[name] = n
		}
	}

	jr := jumpResolver{f: f, cfg: cfgNodes, state: map[string]int{}, localUser: in.localUser, errs: &errs}
	for _, name := range sorted {
		if f.Nodes[name] != nil {
			jr.resolve(name)
		}
	}
	for _, name := range sorted {
		n := f.Nodes[name]
		if n == nil || n.BuildHost == "" {
			continue
		}
		if looksLikeNodeName(n.BuildHost) && f.Nodes[n.BuildHost] == nil {
			errs.add(n.Origins["buildHost"], name, "build_host", "unknown build host %q: not a node (known: %s), and an address needs a user, port or dot", n.BuildHost, strings.Join(f.Names(), ", "))
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return f, nil
}

func resolveNode(name string, dd *deployData, dn *deployNode, cfgDefaults layer, cn *configNode, in resolveInput, errs *errorList) *Node {
	n := &Node{Name: name, Origins: map[string]Origin{}}
	if dn != nil {
		n.Source |= FromDeployNodes
		n.Origins["node"] = dn.at
	}
	if cn != nil {
		n.Source |= FromConfig
		n.Origins["node"] = cn.at
	}

	base := defaultSettings(in.localUser)
	base.apply(dd.top)
	base.apply(cfgDefaults)
	if dn != nil {
		base.apply(dn.settings)
	}
	finish := func(s Settings, extra ...layer) Settings {
		for _, l := range extra {
			s.apply(l)
		}
		if cn != nil {
			s.apply(cn.settings)
		}
		s.apply(overridesLayer(in.overrides))
		if s.Origins[KeyUser] == (Origin{Source: OriginDefault}) {
			// The profile belongs to the SSH user unless told otherwise.
			s.User = s.SSHUser
			s.Origins[KeyUser] = Origin{Source: OriginDefault, Key: "same as sshUser"}
		}
		return s
	}

	switch {
	case dn != nil:
		if cn != nil && cn.attr != nil {
			errs.add(cn.origin("attr"), name, "attr", "only for nodes that are not in deploy.nodes; this node's profiles come from deploy.nodes.%s", attrName(name))
		}
		for _, pname := range profileOrder(dn) {
			dp := dn.profiles[pname]
			p := &Profile{
				Name:     pname,
				DrvPath:  dp.path.DrvPath,
				OutPath:  dp.path.OutPath,
				DrvName:  dp.path.Name,
				System:   dp.path.System,
				Settings: finish(base.clone(), dp.settings),
				Origin:   dp.at,
			}
			p.ProfilePath = defaultProfilePath(p.Settings.User, pname)
			if dp.profilePath != nil {
				p.ProfilePath = *dp.profilePath
			}
			n.Profiles = append(n.Profiles, p)
		}
	case cn != nil:
		tl, ok := in.toplevels[name]
		if !ok {
			// Load reports a missing configuration; resolve called
			// directly (tests) without one gets the same complaint.
			errs.add(cn.at, name, "", "no configuration was evaluated for this node")
			return nil
		}
		s := base.clone()
		if s.Origins[KeyUser] == (Origin{Source: OriginDefault}) {
			// A NixOS system profile belongs to root.
			s.User = "root"
			s.Origins[KeyUser] = Origin{Source: OriginDefault, Key: "root for a system profile"}
		}
		n.Profiles = []*Profile{{
			Name:        "system",
			DrvPath:     tl.DrvPath,
			OutPath:     tl.OutPath,
			DrvName:     tl.Name,
			System:      tl.System,
			Settings:    finish(s),
			ProfilePath: "/nix/var/nix/profiles/system",
			Origin:      cn.at,
		}}
	}
	if len(n.Profiles) > 0 {
		n.Settings = n.Profiles[0].Settings.clone()
	} else {
		n.Settings = finish(base.clone())
	}

	// Node-level fields: tether.toml over deploy.nodes over defaults.
	switch {
	case cn != nil && cn.raw.Hostname != nil:
		n.Hostname, n.Origins["hostname"] = *cn.raw.Hostname, cn.origin("hostname")
	case dn != nil && dn.hostname != nil:
		n.Hostname, n.Origins["hostname"] = *dn.hostname, dn.hostnameAt
	case dn == nil:
		// A node only tether.toml knows is reached by its name.
		n.Hostname, n.Origins["hostname"] = name, Origin{Source: OriginDefault, Key: "node name"}
	default:
		errs.add(dn.at, name, "hostname", "not set (set deploy.nodes.%s.hostname or hostname in %s)", attrName(name), ConfigFileName)
	}

	var cfgDefaultBuild *string
	var cfgDefaultBuildAt Origin
	if in.cfg != nil {
		cfgDefaultBuild, cfgDefaultBuildAt = in.cfg.defaultBuild, in.cfg.defaultBuildAt
	}
	if cfgDefaultBuild != nil {
		n.BuildHost, n.Origins["buildHost"] = *cfgDefaultBuild, cfgDefaultBuildAt
	}

	if cn != nil {
		r := cn.raw
		if r.Port != nil {
			n.Port, n.Origins["port"] = *r.Port, cn.origin("port")
		}
		if r.ProxyCommand != nil {
			n.ProxyCommand, n.Origins["proxyCommand"] = *r.ProxyCommand, cn.origin("proxy_command")
		}
		if r.HostKey != nil {
			n.HostKey, n.Origins["hostKey"] = strings.TrimSpace(*r.HostKey), cn.origin("host_key")
		}
		if r.HostKeyAlias != nil {
			n.HostKeyAlias, n.Origins["hostKeyAlias"] = *r.HostKeyAlias, cn.origin("host_key_alias")
		}
		if len(r.Tags) > 0 {
			n.Tags = append([]string(nil), r.Tags...)
			sort.Strings(n.Tags)
			n.Origins["tags"] = cn.origin("tags")
		}
		if r.System != nil {
			n.System, n.Origins["system"] = *r.System, cn.origin("system")
		}
		if r.Wave != nil {
			n.Wave, n.Origins["wave"] = *r.Wave, cn.origin("wave")
		}
		if r.Reboot != nil {
			n.Reboot, n.Origins["reboot"] = *r.Reboot, cn.origin("reboot")
		}
		if r.BuildHost != nil {
			n.BuildHost, n.Origins["buildHost"] = *r.BuildHost, cn.origin("build_host")
		}
		if len(cn.health) > 0 {
			n.Health, n.Origins["health"] = cn.health, cn.origin("health")
		}
	}
	if n.BuildHost == "local" {
		n.BuildHost = ""
	}
	if n.System == "" {
		// The derivations know what they were built for; prefer the
		// system profile's.
		for _, p := range n.Profiles {
			if p.System != "" && (n.System == "" || p.Name == "system") {
				n.System, n.Origins["system"] = p.System, Origin{Source: OriginDefault, Key: "system of profile " + p.Name}
			}
		}
	}
	return n
}

// profileOrder lists profilesOrder first, then the other profiles by name,
// as the schema's original tool does (it leaves the rest unordered).
func profileOrder(dn *deployNode) []string {
	var order []string
	seen := map[string]bool{}
	for _, p := range dn.profilesOrder {
		if dn.profiles[p] != nil && !seen[p] {
			order = append(order, p)
			seen[p] = true
		}
	}
	for _, p := range sortedKeys(dn.profiles) {
		if !seen[p] {
			order = append(order, p)
		}
	}
	return order
}

// defaultProfilePath follows the deploy.nodes schema: root's profiles live
// in /nix/var/nix/profiles (the system profile there is the NixOS one),
// other users' in per-user/<user>.
func defaultProfilePath(user, profile string) string {
	if user == "root" {
		return "/nix/var/nix/profiles/" + profile
	}
	return "/nix/var/nix/profiles/per-user/" + user + "/" + profile
}

// jumpResolver expands `jump` lists: a jump through another node means
// "reach that node the way the fleet reaches it, then go on", so its own
// hops and proxy command come first.
type jumpResolver struct {
	f         *Fleet
	cfg       map[string]*configNode
	state     map[string]int // 0 new, 1 in progress, 2 done
	stack     []string
	localUser string
	errs      *errorList
}

func (r *jumpResolver) resolve(name string) {
	if r.state[name] != 0 {
		return
	}
	r.state[name] = 1
	r.stack = append(r.stack, name)
	defer func() {
		r.state[name] = 2
		r.stack = r.stack[:len(r.stack)-1]
	}()

	n := r.f.Nodes[name]
	cn := r.cfg[name]
	if cn == nil || len(cn.jumps) == 0 {
		return
	}
	var hops []Hop
	inherited, inheritedFrom := "", ""
	for i, spec := range cn.jumps {
		target := r.f.Nodes[spec.raw]
		switch {
		case target != nil && r.state[spec.raw] == 1:
			var cycle []string
			for j, s := range r.stack {
				if s == spec.raw {
					cycle = append(cycle, r.stack[j:]...)
					break
				}
			}
			cycle = append(cycle, spec.raw)
			r.errs.add(spec.at, name, "jump", "jump cycle: %s", strings.Join(cycle, " → "))
			return
		case target != nil:
			r.resolve(spec.raw)
			if i > 0 && (len(target.Jumps) > 0 || target.ProxyCommand != "") {
				r.errs.add(spec.at, name, "jump", "node %s is itself reached through jump or proxy_command, so it can only be the first jump", spec.raw)
				continue
			}
			hops = append(hops, target.Jumps...)
			hops = append(hops, Hop{
				Node:         target.Name,
				User:         target.Settings.SSHUser,
				Host:         target.Hostname,
				Port:         target.Port,
				HostKey:      target.HostKey,
				HostKeyAlias: target.HostKeyAlias,
				SSHOpts:      append([]string(nil), target.Settings.SSHOpts...),
			})
			if i == 0 && target.ProxyCommand != "" {
				inherited, inheritedFrom = target.ProxyCommand, target.Name
			}
		case spec.hop == nil:
			r.errs.add(spec.at, name, "jump", "unknown jump target %q: not a node (known: %s); write an address as user@host, host:port or a dotted name", spec.raw, strings.Join(r.f.Names(), ", "))
		default:
			h := *spec.hop
			if h.User == "" {
				h.User = r.localUser
			}
			hops = append(hops, h)
		}
	}
	if inherited != "" {
		if n.ProxyCommand != "" {
			r.errs.add(cn.origin("proxy_command"), name, "proxy_command", "conflicts with the proxy_command of jump host %s; set one of them", inheritedFrom)
		} else {
			n.ProxyCommand = inherited
			n.Origins["proxyCommand"] = Origin{Source: OriginConfig, Key: fmt.Sprintf("proxy command of jump host %s", inheritedFrom)}
		}
	}
	n.Jumps = hops
	n.Origins["jump"] = cn.origin("jump")
}
