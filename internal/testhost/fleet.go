package testhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sync/errgroup"
)

// Options says what fleet to start.
type Options struct {
	Topology Topology             // zero value: Home
	Logf     func(string, ...any) // progress lines; nil: silent
}

// Fleet is a set of running sandbox hosts and the relay in front of them.
type Fleet struct {
	Run      string // unique id of this run
	Dir      string // BaseDir/<run>
	Topology Topology
	Hosts    map[string]*Host
	// Relay is the tunnel in front of the relayed host (frame1 in Home), nil
	// when the topology has none.
	Relay *Relay
	// ClientKeyPath is root's private key (OpenSSH format) for every host;
	// ClientSigner is the same key.
	ClientKeyPath string
	ClientSigner  ssh.Signer
	// KnownHostsPath holds KnownHosts().
	KnownHostsPath string

	order       []*Host
	lease       int
	lock        *os.File
	logf        func(string, ...any)
	unreachable []netip.Prefix
	closeOnce   sync.Once
	closeErr    error
}

// Host returns the named host or nil.
func (f *Fleet) Host(name string) *Host { return f.Hosts[name] }

// Names lists the hosts in topology order.
func (f *Fleet) Names() []string {
	var out []string
	for _, h := range f.order {
		out = append(out, h.Name)
	}
	return out
}

// UnavailableError says why sandbox hosts cannot run on this machine.
type UnavailableError struct {
	NotRoot bool
	Missing []string // tools not found
}

func (e *UnavailableError) Error() string {
	msg := "sandbox hosts unavailable:"
	if e.NotRoot {
		msg += " not running as root;"
	}
	if len(e.Missing) > 0 {
		msg += fmt.Sprintf(" missing %v (scripts/setup.sh installs them);", e.Missing)
	}
	return msg[:len(msg)-1]
}

// Check tells whether sandbox hosts can run here: as root, with iproute2,
// util-linux, procps, nix and sshd.
func Check() error {
	e := &UnavailableError{NotRoot: os.Geteuid() != 0}
	for _, bin := range []string{"ip", "nsenter", "unshare", "mount", "umount", "sysctl", "nix-store", "cat", "readlink"} {
		if _, err := exec.LookPath(bin); err != nil {
			e.Missing = append(e.Missing, bin)
		}
	}
	if fi, err := os.Stat("/boot"); err != nil || !fi.IsDir() {
		e.Missing = append(e.Missing, "/boot (a directory each host's own /boot is mounted on)")
	}
	for _, p := range []string{sshdPath, "/bin/sh"} {
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			e.Missing = append(e.Missing, p)
		}
	}
	if _, err := user.Lookup("sshd"); err != nil {
		e.Missing = append(e.Missing, "user sshd (privilege separation)")
	}
	if e.NotRoot || len(e.Missing) > 0 {
		return e
	}
	return nil
}

// Start builds and starts a fleet. ctx bounds the start only; the fleet runs
// until Close, which the caller must call (StartT does it for tests). What
// dead runs left behind is removed first.
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	topo := opts.Topology
	if topo.kind == "" {
		topo = Home
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := topo.validate(); err != nil {
		return nil, err
	}
	id, lock, lease, stale, err := claimRun(ctx, topo.String())
	if err != nil {
		return nil, fmt.Errorf("claim run: %w", err)
	}
	f := &Fleet{Run: id, Dir: runDir(id), Topology: topo, Hosts: map[string]*Host{}, lease: lease, lock: lock, logf: logf}
	register(f)
	if err := removeStale(ctx, stale, logf); err != nil {
		logf("testhost: leftovers of dead runs not all removed: %v", err)
	}
	l, err := topo.plan(lease)
	if err == nil {
		logf("testhost: run %s: starting %s fleet in %s", id, topo, f.Dir)
		err = f.build(ctx, l)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start sandbox hosts: %w", err), f.Close())
	}
	logf("testhost: run %s: up: %s", id, f.summary())
	return f, nil
}

func (f *Fleet) summary() string {
	var b bytes.Buffer
	for i, h := range f.order {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s", h.Name, h.SSHAddr)
		if h.Via != "" {
			fmt.Fprintf(&b, " via %s", h.Via)
		}
	}
	return b.String()
}

func (f *Fleet) build(ctx context.Context, l layout) error {
	var err error
	f.ClientKeyPath = filepath.Join(f.Dir, "client_ed25519")
	if f.ClientSigner, err = newKey(f.ClientKeyPath, "tether-test-client@"+f.Run); err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	authorized, err := os.ReadFile(f.ClientKeyPath + ".pub")
	if err != nil {
		return err
	}
	userpool := ""
	if nixConfBuildGroup() != "" {
		userpool = runnerUserpool
		if err := os.MkdirAll(userpool, 0o755); err != nil {
			return fmt.Errorf("build user pool: %w", err)
		}
	}
	for _, p := range l.hosts {
		h := &Host{
			userpool: userpool,
			Name:     p.name,
			IP:       p.ip,
			SSHAddr:  net.JoinHostPort(p.ip.String(), "22"),
			Via:      p.via,
			Dir:      filepath.Join(f.Dir, p.name),
			Netns:    namePrefix + f.Run + "-" + p.name,
		}
		if err := h.prepareDir(authorized); err != nil {
			return fmt.Errorf("host %s: %w", p.name, err)
		}
		f.Hosts[p.name] = h
		f.order = append(f.order, h)
	}
	for _, h := range f.order {
		if _, err := run(ctx, "ip", "netns", "add", h.Netns); err != nil {
			return err
		}
		// No forwarding: a host is not a router, so what sits behind it is
		// reachable only by jumping through it.
		if _, err := run(ctx, "ip", "netns", "exec", h.Netns, "sysctl", "-q", "-w",
			"net.ipv4.ip_forward=0", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			return err
		}
		if _, err := run(ctx, "ip", "-n", h.Netns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	for i, lk := range l.links {
		if err := f.addLink(ctx, i, lk); err != nil {
			return err
		}
	}
	for _, p := range l.unreachable {
		if _, err := run(ctx, "ip", "route", "add", "unreachable", p.String()); err != nil {
			return err
		}
		f.unreachable = append(f.unreachable, p)
	}
	for _, p := range l.hosts {
		if p.relayed {
			h := f.Hosts[p.name]
			if f.Relay, err = NewRelay("127.0.0.1:0", h.SSHAddr); err != nil {
				return fmt.Errorf("relay: %w", err)
			}
			h.SSHAddr = f.Relay.Addr()
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, h := range f.order {
		g.Go(func() error { return h.start(gctx) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// Hosts get it too, to reach each other (e.g. frame1 copying to rpi).
	f.KnownHostsPath = filepath.Join(f.Dir, "known_hosts")
	for _, h := range f.order {
		if err := os.WriteFile(filepath.Join(h.Dir, "run", "testhost", "known_hosts"), f.KnownHosts(), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(f.KnownHostsPath, f.KnownHosts(), 0o644)
}

// addLink wires one veth pair; the runner's end is named tth-<run>-<i>.
func (f *Fleet) addLink(ctx context.Context, i int, lk linkPlan) error {
	b := f.Hosts[lk.b]
	if lk.a == "" {
		root := namePrefix + f.Run + "-" + strconv.Itoa(i)
		steps := [][]string{
			{"ip", "link", "add", root, "type", "veth", "peer", "name", lk.bIf, "netns", b.Netns},
			{"ip", "addr", "add", lk.aAddr.String(), "dev", root},
			{"ip", "link", "set", root, "up"},
		}
		for _, s := range steps {
			if _, err := run(ctx, s...); err != nil {
				return err
			}
		}
	} else {
		a := f.Hosts[lk.a]
		steps := [][]string{
			{"ip", "-n", a.Netns, "link", "add", lk.aIf, "type", "veth", "peer", "name", lk.bIf, "netns", b.Netns},
			{"ip", "-n", a.Netns, "addr", "add", lk.aAddr.String(), "dev", lk.aIf},
			{"ip", "-n", a.Netns, "link", "set", lk.aIf, "up"},
		}
		for _, s := range steps {
			if _, err := run(ctx, s...); err != nil {
				return err
			}
		}
	}
	for _, s := range [][]string{
		{"ip", "-n", b.Netns, "addr", "add", lk.bAddr.String(), "dev", lk.bIf},
		{"ip", "-n", b.Netns, "link", "set", lk.bIf, "up"},
	} {
		if _, err := run(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// prepareDir lays out the host's directory: its store, run, tmp and root
// home trees, sshd's config and keys, and nix.conf.
func (h *Host) prepareDir(authorized []byte) error {
	dirs := []struct {
		path string
		mode os.FileMode
	}{
		{"nix/store", os.ModeSticky | 0o775},
		{"nix/var/nix/userpool", 0o755},
		{"run/testhost", 0o755},
		{"run/sshd", 0o755},
		{"tmp", os.ModeSticky | 0o777},
		{"var/lib", 0o755},
		{"boot/loader", 0o755},
		{"root", 0o700},
		{"etc/nix", 0o755},
	}
	for _, d := range dirs {
		p := filepath.Join(h.Dir, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
	}
	if g, err := user.LookupGroup("nixbld"); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			_ = os.Chown(filepath.Join(h.Dir, "nix/store"), 0, gid)
		}
	}
	etc := filepath.Join(h.Dir, "etc")
	signer, err := newKey(filepath.Join(etc, "ssh_host_ed25519_key"), "root@"+h.Name)
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	h.HostPublicKey = signer.PublicKey()
	conf, err := sshdConfig(h.Name, h.Dir, net.JoinHostPort(h.IP.String(), "22"))
	if err != nil {
		return err
	}
	files := []struct {
		path string
		data string
		mode os.FileMode
	}{
		{"etc/sshd_config", conf, 0o644},
		{"etc/authorized_keys", string(authorized), 0o600},
		{"etc/nix/nix.conf", nixConf(), 0o644},
		{"run/testhost/name", h.Name + "\n", 0o644},
		{bootIDFile, newBootID() + "\n", 0o444},
		{"run/testhost/sshd-start", sshdStartScript, 0o755},
	}
	for _, fl := range files {
		if err := os.WriteFile(filepath.Join(h.Dir, fl.path), []byte(fl.data), fl.mode); err != nil {
			return err
		}
	}
	return os.Symlink(filepath.Join(etc, "sshd_config"), filepath.Join(h.Dir, "run/testhost/sshd_config"))
}

// start brings the host up: namespace holder, store database, sshd.
func (h *Host) start(ctx context.Context) error {
	if err := h.startAnchor(ctx); err != nil {
		return err
	}
	if _, err := h.Exec(ctx, "nix-store", "--init"); err != nil {
		return err
	}
	out, err := h.Exec(ctx, sshdPath, "-t", "-f", "/run/testhost/sshd_config")
	if err == nil && len(bytes.TrimSpace(out)) > 0 {
		err = fmt.Errorf("host %s: sshd -t: %s", h.Name, bytes.TrimSpace(out))
	}
	if err != nil {
		return err
	}
	if err := h.StartSSHD(ctx); err != nil {
		return err
	}
	go h.watchReboots()
	return nil
}

// KnownHosts is known_hosts content for every address a host is dialled at:
// its IP (port 22), the relay's [127.0.0.1]:port for a relayed host, and its
// name (for a host key alias).
func (f *Fleet) KnownHosts() []byte {
	var b bytes.Buffer
	for _, h := range f.order {
		direct := net.JoinHostPort(h.IP.String(), "22")
		addrs := []string{h.Name, knownhosts.Normalize(direct)}
		if h.SSHAddr != direct {
			addrs = append(addrs, knownhosts.Normalize(h.SSHAddr))
		}
		b.WriteString(knownhosts.Line(addrs, h.HostPublicKey))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// HostKeyCallback checks host keys against KnownHosts.
func (f *Fleet) HostKeyCallback() (ssh.HostKeyCallback, error) {
	return knownhosts.New(f.KnownHostsPath)
}

// ClientConfig is an SSH client config for root on host h with its key pinned.
func (f *Fleet) ClientConfig(h *Host) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(f.ClientSigner)},
		HostKeyCallback: ssh.FixedHostKey(h.HostPublicKey),
		Timeout:         15 * time.Second,
	}
}

// Dial opens an SSH connection as root to the named host the way the
// deployer reaches it: through the relay, or through its jump host. Closing
// the client also closes the jump connection.
func (f *Fleet) Dial(ctx context.Context, name string) (*ssh.Client, error) {
	h := f.Hosts[name]
	if h == nil {
		return nil, fmt.Errorf("no host %q", name)
	}
	var conn net.Conn
	var jump *ssh.Client
	var err error
	if h.Via != "" {
		if jump, err = f.Dial(ctx, h.Via); err != nil {
			return nil, fmt.Errorf("dial %s: jump host: %w", name, err)
		}
		conn, err = jump.DialContext(ctx, "tcp", h.SSHAddr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", h.SSHAddr)
	}
	if err != nil {
		if jump != nil {
			jump.Close()
		}
		return nil, fmt.Errorf("dial %s at %s: %w", name, h.SSHAddr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, h.SSHAddr, f.ClientConfig(h))
	if err != nil {
		conn.Close()
		if jump != nil {
			jump.Close()
		}
		return nil, fmt.Errorf("ssh %s at %s: %w", name, h.SSHAddr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	if jump != nil {
		go func() {
			_ = client.Wait()
			jump.Close()
		}()
	}
	return client, nil
}

// Close stops every host and the relay and removes all the run created:
// processes, namespaces, links, routes, mounts and directories. It is safe
// to call more than once.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		defer unregister(f)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var errs []error
		if f.Relay != nil {
			errs = append(errs, f.Relay.Close())
		}
		for _, h := range f.order {
			if h.anchorIn != nil {
				h.anchorIn.Close()
			}
		}
		errs = append(errs, removeRun(ctx, f.Run, f.lease, nil))
		for _, h := range f.order {
			if h.anchorDone != nil {
				select {
				case <-h.anchorDone:
				case <-ctx.Done():
				}
			}
		}
		if f.lock != nil {
			f.lock.Close()
		}
		f.closeErr = errors.Join(errs...)
		if f.closeErr != nil {
			f.logf("testhost: run %s: close: %v", f.Run, f.closeErr)
		} else {
			f.logf("testhost: run %s: removed", f.Run)
		}
	})
	return f.closeErr
}

// Leftovers lists what of this run still exists; after Close it is empty.
func (f *Fleet) Leftovers(ctx context.Context) ([]Leftover, error) {
	return leftovers(ctx, f.Run, f.lease)
}

// live fleets of this process, closed on SIGINT/SIGTERM by interrupt().
var live struct {
	sync.Mutex
	fleets map[*Fleet]bool
}

func register(f *Fleet) {
	live.Lock()
	defer live.Unlock()
	if live.fleets == nil {
		live.fleets = map[*Fleet]bool{}
	}
	live.fleets[f] = true
}

func unregister(f *Fleet) {
	live.Lock()
	defer live.Unlock()
	delete(live.fleets, f)
}

// CloseAll closes every fleet this process has running; for signal
// handlers, so an interrupted run leaves nothing behind.
func CloseAll() error {
	live.Lock()
	var fs []*Fleet
	for f := range live.fleets {
		fs = append(fs, f)
	}
	live.Unlock()
	var errs []error
	for _, f := range fs {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
