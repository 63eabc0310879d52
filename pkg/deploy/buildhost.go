package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
	"github.com/tetherdeploy/tether/pkg/transfer"
)

// Local is the build host value that means "the machine running tether".
const Local = "local"

// builder is a machine other than the deployer that builds closures for
// some nodes: a build host such as frame1, or a node building its own
// closure (remoteBuild).
type builder struct {
	name  string // node name or address, for messages
	conn  *conn
	store *nix.Runner
	// dir is the builder's private directory for this run (see workDir):
	// the GC roots of its outputs, the host keys it is handed.
	dir   string
	dirMu sync.Mutex
	// self is set when the builder is the node itself.
	self *nodeRun
	runs []*nodeRun

	khMu sync.Mutex
}

// builderName says where a node's closure is built: "" for the deployer.
func builderName(n *fleet.Node) string {
	if n.Settings.RemoteBuild {
		return n.Name
	}
	if n.BuildHost == Local {
		return ""
	}
	return n.BuildHost
}

// builderTarget resolves a build host: a node of the fleet (reached as that
// node is), or a `[user@]host[:port]` address.
func (e *Engine) builderTarget(name string) (remote.Target, error) {
	if e.Fleet != nil {
		if n := e.Fleet.Node(name); n != nil {
			c, err := ConnectionFor(n)
			return c.Target, err
		}
	}
	h, err := remote.ParseHop(name)
	if err != nil {
		return remote.Target{}, fmt.Errorf("build host %q: %w", name, err)
	}
	return remote.Target{Name: name, Host: h.Host, Port: h.Port, User: h.User}, nil
}

// buildOn builds, on build host name, the profiles of the nodes that
// build there. A build host that fails fails only its nodes.
func (e *Engine) buildOn(ctx context.Context, name string, runs []*nodeRun, opts Options) (*builder, error) {
	start := time.Now()
	defer func() {
		for _, r := range runs {
			r.res.Timings.Build = Seconds(time.Since(start))
			r.res.BuiltOn = name
		}
	}()
	t, err := e.builderTarget(name)
	if err != nil {
		return nil, err
	}
	b := &builder{name: name, conn: &conn{dialer: e.Dialer, target: t}, runs: runs}
	for _, r := range runs {
		if r.node.Name == name {
			b.self = r
		}
	}
	say := func(msg string) { e.emit(Event{Phase: PhaseBuild, Message: "on " + name + ": " + msg}) }
	say("connecting")
	c, err := b.conn.client(ctx)
	if err != nil {
		return nil, fmt.Errorf("build host %s: %w", name, err)
	}
	b.store = transfer.RemoteStore(c, &prefixWriter{emit: func(l string) {
		e.emit(Event{Phase: PhaseBuild, Message: "on " + name + " | " + l})
	}})
	if err := checkPlatforms(ctx, b.store, runs, "build host "+name); err != nil {
		return nil, err
	}

	drvs := profilePaths(runs, func(p *fleet.Profile) string { return p.DrvPath })
	if len(drvs) == 0 {
		return b, nil
	}
	say(fmt.Sprintf("copying the derivations of %d profiles", len(drvs)))
	st, err := transfer.Copy(ctx, e.Nix, b.store, drvs, transfer.Options{Substitute: true})
	if err != nil {
		return nil, fmt.Errorf("copy derivations to build host %s: %w", name, err)
	}
	say(fmt.Sprintf("sent %d derivation paths (%s); building", st.Sent, HumanBytes(st.SentBytes)))
	dir, err := b.workDir(ctx, c)
	if err != nil {
		return nil, err
	}
	outs, err := b.store.Realise(ctx, drvs, dir+"/gcroots")
	if err != nil {
		e.emit(Event{Phase: PhaseBuild, Message: "on " + name + ": build failed"})
		return nil, fmt.Errorf("build on %s: %w", name, err)
	}
	for _, r := range runs {
		for _, p := range r.node.Profiles {
			if p.DrvPath != "" && !slices.Contains(outs[p.DrvPath], p.OutPath) {
				return nil, fmt.Errorf("build on %s: %s did not produce %s", name, p.DrvPath, p.OutPath)
			}
		}
	}
	say(fmt.Sprintf("built in %s", time.Since(start).Round(time.Millisecond)))
	return b, nil
}

// workDir returns the builder's private directory for this run, made on
// first use with mktemp -d: a fresh name, created by this user with mode
// 0700. A fixed name in /tmp (tether-lan, tether-gcroots-<run>) let any
// user of the build host create it first, or a symbolic link in its place,
// and have the deployer write GC roots and a known_hosts file as root
// wherever that pointed.
func (b *builder) workDir(ctx context.Context, c *remote.Client) (string, error) {
	b.dirMu.Lock()
	defer b.dirMu.Unlock()
	if b.dir != "" {
		return b.dir, nil
	}
	// Six X: busybox replaces only the last six.
	out, err := c.Output(ctx, "mktemp", "-d", "/tmp/tether.XXXXXX")
	if err != nil {
		return "", fmt.Errorf("make a private directory on build host %s: %w", b.name, err)
	}
	dir := strings.TrimSuffix(string(out), "\n")
	name, ok := strings.CutPrefix(dir, "/tmp/tether.")
	if !ok || name == "" || strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0 {
		return "", fmt.Errorf("make a private directory on build host %s: mktemp answered %q", b.name, out)
	}
	b.dir = dir
	return dir, nil
}

// close removes the builder's directory (its GC roots with it) and
// connection.
func (b *builder) close(ctx context.Context) {
	if b == nil {
		return
	}
	b.dirMu.Lock()
	dir := b.dir
	b.dir = ""
	b.dirMu.Unlock()
	if dir != "" {
		if c, err := b.conn.client(ctx); err == nil {
			c.Output(context.WithoutCancel(ctx), "rm", "-rf", dir)
		}
	}
	b.conn.drop()
}

// checkPlatforms refuses, before any build, nodes whose system the builder
// cannot build: a Pi's aarch64-linux closure on an x86_64 machine without
// emulation would otherwise fail deep inside the build, or not at all until
// activation.
func checkPlatforms(ctx context.Context, store *nix.Runner, runs []*nodeRun, where string) error {
	var need []string
	for _, r := range runs {
		sys := r.node.System
		for _, p := range r.node.Profiles {
			if p.DrvPath != "" && p.System != "" {
				sys = p.System
			}
		}
		if sys != "" && sys != "builtin" && !slices.Contains(need, sys) {
			need = append(need, sys)
		}
	}
	if len(need) == 0 {
		return nil
	}
	have, err := store.Platforms(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	var errs []error
	for _, r := range runs {
		sys := r.node.System
		for _, p := range r.node.Profiles {
			if p.System != "" {
				sys = p.System
			}
		}
		if sys != "" && sys != "builtin" && !slices.Contains(have, sys) {
			errs = append(errs, fmt.Errorf("node %s is %s, but %s builds only %s (set a build_host that can, or add it to extra-platforms there)",
				r.node.Name, sys, where, strings.Join(have, ", ")))
		}
	}
	return errors.Join(errs...)
}

// copyFromBuilder moves a node's closure from its build host to the node:
// straight over the build host's own network when it can reach the node
// (so a large closure never crosses the deployer's link), else relayed
// through the deployer.
func (n *nodeRun) copyFromBuilder(ctx context.Context, target *remote.Client, roots []string, progress func(transfer.Progress)) (transfer.Stats, string, error) {
	b := n.builder
	dst := transfer.RemoteStore(target, nil)
	closure, err := b.store.Closure(ctx, roots)
	if err != nil {
		return transfer.Stats{}, "", fmt.Errorf("closure on build host %s: %w", b.name, err)
	}
	var paths []string
	sizes := map[string]int64{}
	var st transfer.Stats
	for _, p := range closure {
		paths = append(paths, p.Path)
		sizes[p.Path] = p.NarSize
		st.ClosureBytes += p.NarSize
	}
	st.Closure = len(paths)
	missing, err := dst.Missing(ctx, paths)
	if err != nil {
		return st, "", fmt.Errorf("ask %s for missing paths: %w", n.node.Name, err)
	}
	st.Present = len(paths) - len(missing)
	if len(missing) > 0 && !n.node.Settings.FastConnection {
		before := len(missing)
		if missing, st.CachesUnreachable, err = transfer.Substitute(ctx, dst, missing, 0); err != nil {
			return st, "", err
		}
		st.Substituted = before - len(missing)
	}
	if len(missing) == 0 {
		return st, "nothing to copy", nil
	}
	var total int64
	for _, p := range missing {
		total += sizes[p]
	}
	if route, ok := n.lanRoute(); ok && n.e.ForwardAgent != nil {
		n.emit(PhaseCopy, fmt.Sprintf("copying %d paths (%s) from %s straight to %s", len(missing), HumanBytes(total), b.name, n.node.Name))
		err := n.lanCopy(ctx, target, route, missing)
		if err == nil {
			st.Sent, st.SentBytes, st.StreamBytes = len(missing), total, total
			progress(transfer.Progress{Sent: total, Total: total, Paths: len(missing), TotalPaths: len(missing)})
			return st, b.name + " → " + n.node.Name + " directly", nil
		}
		n.emit(PhaseCopy, fmt.Sprintf("%s cannot copy to %s itself (%s); relaying through the deployer", b.name, n.node.Name, shortErr(err)))
	} else {
		n.emit(PhaseCopy, fmt.Sprintf("%s has no route of its own to %s; relaying the closure through the deployer", b.name, n.node.Name))
	}
	rst, err := transfer.Copy(ctx, b.store, dst, roots, transfer.Options{Substitute: false, Progress: progress})
	rst.Substituted = st.Substituted
	return rst, b.name + " → deployer → " + n.node.Name, err
}

// lanRoute is how the build host reaches the node: the hop after the build
// host in the node's jump chain, or the node's own address when it has no
// jumps (a machine on the same network).
type lanRoute struct {
	host string
	port int
	user string
}

func (n *nodeRun) lanRoute() (lanRoute, bool) {
	t := n.conn.target
	bt := n.builder.conn.target
	user := t.User
	if user == "" {
		user = n.node.Settings.SSHUser
	}
	port := t.Port
	if port == 0 {
		port = 22
	}
	switch {
	case len(t.Jumps) == 0:
		return lanRoute{host: t.Host, port: port, user: user}, true
	case len(t.Jumps) == 1 && sameMachine(t.Jumps[0], bt, n.builder.name):
		return lanRoute{host: t.Host, port: port, user: user}, true
	}
	return lanRoute{}, false
}

func sameMachine(h remote.Hop, t remote.Target, name string) bool {
	if h.Name != "" && h.Name == name {
		return true
	}
	hp, tp := h.Port, t.Port
	if hp == 0 {
		hp = 22
	}
	if tp == 0 {
		tp = 22
	}
	return h.Host == t.Host && hp == tp
}

// lanCopy runs, on the build host, an export of the missing paths piped
// into an import on the node, over an ssh connection the build host makes
// itself. It authenticates with the deployer's keys through agent
// forwarding and trusts exactly the host key the deployer verified.
func (n *nodeRun) lanCopy(ctx context.Context, target *remote.Client, r lanRoute, missing []string) error {
	b := n.builder
	bc, err := b.conn.client(ctx)
	if err != nil {
		return err
	}
	key := target.HostKey()
	if key == nil {
		return errors.New("the node's host key is unknown")
	}
	kh, err := b.knownHosts(ctx, bc, r, key)
	if err != nil {
		return err
	}
	if err := bc.ForwardAgent(n.e.ForwardAgent); err != nil {
		return fmt.Errorf("agent forwarding: %w", err)
	}
	sshArgv := []string{"ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + kh, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=10", "-p", strconv.Itoa(r.port), "-l", r.user, "--", r.host,
		"nix-store", "--import"}
	script := `nix-store --export "$@" | ` + remote.Quote(sshArgv)
	for start := 0; start < len(missing); start += 1000 {
		part := missing[start:min(start+1000, len(missing))]
		var stderr bytes.Buffer
		argv := append([]string{"sh", "-c", script, "sh"}, part...)
		// One ssh connection per batch, one hop: one signature.
		err := bc.Run(ctx, remote.Cmd{Argv: argv, ForwardAgent: true, AgentSignatures: 1, Stderr: &limitedBuffer{b: &stderr, max: 8192}})
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
	}
	// A POSIX pipeline reports only the importer's status: ask the node
	// itself whether every path arrived.
	still, err := transfer.RemoteStore(target, nil).Missing(ctx, missing)
	if err != nil {
		return err
	}
	if len(still) > 0 {
		return fmt.Errorf("%d of %d paths did not arrive (first: %s)", len(still), len(missing), still[0])
	}
	return nil
}

// knownHosts uploads, into the builder's private directory, a known_hosts
// file holding the node's verified key.
func (b *builder) knownHosts(ctx context.Context, c *remote.Client, r lanRoute, key ssh.PublicKey) (string, error) {
	b.khMu.Lock()
	defer b.khMu.Unlock()
	dir, err := b.workDir(ctx, c)
	if err != nil {
		return "", err
	}
	addr := knownhosts.Normalize(net.JoinHostPort(r.host, strconv.Itoa(r.port)))
	line := knownhosts.Line([]string{addr}, key) + "\n"
	path := dir + "/known_hosts-" + sanitize(addr)
	if err := c.Upload(ctx, strings.NewReader(line), path, 0o600); err != nil {
		return "", fmt.Errorf("hand the node's host key to %s: %w", b.name, err)
	}
	return path, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

// prefixWriter turns a byte stream into one call per line. A line longer
// than maxLogLine is cut: a build host's log is shown line by line, and a
// line without end must not grow in memory.
type prefixWriter struct {
	emit func(string)
	buf  []byte
	skip bool // the rest of a cut line is dropped up to its newline
	mu   sync.Mutex
}

// maxLogLine bounds one line of a build log as it is shown.
const maxLogLine = 8 << 10

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if p.skip {
			if i < 0 {
				return n, nil
			}
			p.skip = false
			b = b[i+1:]
			continue
		}
		if i < 0 {
			p.buf = append(p.buf, b[:min(len(b), maxLogLine+1-len(p.buf))]...)
			if len(p.buf) > maxLogLine {
				p.emit(string(p.buf[:maxLogLine]) + " …(cut)")
				p.buf = p.buf[:0]
				p.skip = true
			}
			return n, nil
		}
		p.buf = append(p.buf, b[:i]...)
		line := p.buf
		if len(line) > maxLogLine {
			line = append(line[:maxLogLine:maxLogLine], " …(cut)"...)
		}
		p.emit(string(line))
		p.buf = p.buf[:0]
		b = b[i+1:]
	}
	return n, nil
}

var _ io.Writer = (*prefixWriter)(nil)
