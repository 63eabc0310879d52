package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Defaults for the zero Dialer fields.
const (
	DefaultDialTimeout       = 30 * time.Second
	DefaultKeepaliveInterval = 15 * time.Second
	DefaultKeepaliveMax      = 3
)

// Dialer opens connections to targets. It holds no connection state and is
// safe for concurrent use; dialling the same Target again gives a fresh
// connection through the same hops (fresh TCP and handshakes all the way).
type Dialer struct {
	// Auth is offered to every machine in the chain (see Auth.Methods).
	Auth []ssh.AuthMethod
	// HostKeys holds the pinned keys. A host whose key is not in it (and
	// that has no HostKey of its own) is refused.
	HostKeys *HostKeys
	// DefaultUser is used where a Target or Hop has no User.
	DefaultUser string
	// DialTimeout bounds connecting to and handshaking with each machine
	// in the chain. Zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// KeepaliveInterval is how often each connection in the chain is
	// probed; after KeepaliveMax probes in a row go unanswered the
	// connection is closed, so a cut link fails commands instead of hanging
	// them. Zero means the default; negative disables keepalives.
	KeepaliveInterval time.Duration
	KeepaliveMax      int
	// Logf receives progress notes; nil discards them.
	Logf func(format string, args ...any)
	// NetDial opens TCP connections from the runner; nil uses net.Dialer.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (d *Dialer) logf(format string, args ...any) {
	if d.Logf != nil {
		d.Logf(format, args...)
	}
}

// Dial connects to t, through its jump hosts or proxy command, and returns a
// client for running commands on it. Errors name the target, and the hop
// that failed: "dial rpi (10.0.0.3:22) via frame1: ...".
func (d *Dialer) Dial(ctx context.Context, t Target) (*Client, error) {
	eps, err := t.chain(d.DefaultUser)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", t.label(), err)
	}
	c := newClient(d, t)
	var prev *ssh.Client
	for i, e := range eps {
		sc, key, err := d.dialOne(ctx, prev, e)
		if err != nil {
			c.Close()
			return nil, dialError(eps, i, err)
		}
		c.add(sc, e.name)
		c.hostKey = key
		prev = sc
	}
	return c, nil
}

func dialError(eps []endpoint, i int, err error) error {
	last := eps[len(eps)-1]
	if i < len(eps)-1 {
		return fmt.Errorf("dial %s: jump host %s (%s): %w", last.name, eps[i].name, eps[i].addr(), err)
	}
	if len(eps) == 1 {
		return fmt.Errorf("dial %s (%s): %w", last.name, last.addr(), err)
	}
	var via []string
	for _, e := range eps[:len(eps)-1] {
		via = append(via, e.name)
	}
	return fmt.Errorf("dial %s (%s) via %s: %w", last.name, last.addr(), strings.Join(via, ", "), err)
}

func (d *Dialer) dialTimeout() time.Duration {
	if d.DialTimeout > 0 {
		return d.DialTimeout
	}
	return DefaultDialTimeout
}

// dialOne connects to one machine: through prev when there is one, else by
// the proxy command or TCP; then runs the SSH handshake. The timeout covers
// both and is enforced by closing the connection, which works for every kind
// of connection (channels through a jump host have no deadlines).
func (d *Dialer) dialOne(ctx context.Context, prev *ssh.Client, e endpoint) (*ssh.Client, ssh.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, d.dialTimeout())
	defer cancel()

	var conn net.Conn
	var proxy *proxyConn
	var err error
	switch {
	case prev != nil:
		conn, err = prev.DialContext(ctx, "tcp", e.addr())
		if err != nil {
			err = fmt.Errorf("open forwarded connection: %w", err)
		}
	case e.proxyCommand != "":
		proxy, err = startProxy(e)
		conn = proxy
	default:
		dial := d.NetDial
		if dial == nil {
			var nd net.Dialer
			dial = nd.DialContext
		}
		conn, err = dial(ctx, "tcp", e.addr())
	}
	if err != nil {
		return nil, nil, withContext(ctx, err)
	}
	d.logf("ssh %s@%s: connected, handshaking", e.user, e.addr())

	var verified ssh.PublicKey
	check := d.hostKeyCallback(e)
	cfg := &ssh.ClientConfig{
		User: e.user,
		Auth: d.Auth,
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			err := check(host, remote, key)
			if err == nil {
				verified = key
			}
			return err
		},
		HostKeyAlgorithms: d.hostKeyAlgorithms(e),
		ClientVersion:     "SSH-2.0-tether",
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sconn, chans, reqs, err := ssh.NewClientConn(conn, e.addr(), cfg)
	if !stop() {
		// The context ended during the handshake and closed conn.
		if err == nil {
			sconn.Close()
		}
		return nil, nil, fmt.Errorf("ssh handshake: %w", withContext(ctx, ctx.Err()))
	}
	if err != nil {
		conn.Close()
		var hk *HostKeyError
		if proxy != nil && !errors.As(err, &hk) {
			err = fmt.Errorf("%w (%w)", err, proxy.failure())
		}
		return nil, nil, err
	}
	return ssh.NewClient(sconn, chans, reqs), verified, nil
}

// withContext names the deadline when the dial timed out, so the error says
// "timed out after 30s" rather than a bare "i/o timeout" or "canceled".
func withContext(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}

func (d *Dialer) hostKeyCallback(e endpoint) ssh.HostKeyCallback {
	addr := lookupAddr(e)
	return func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if e.hostKey != "" {
			return checkPinned(addr, e.hostKey, key)
		}
		hk := d.HostKeys
		if hk == nil {
			hk = NewHostKeys()
		}
		return hk.Check(addr, key)
	}
}

func (d *Dialer) hostKeyAlgorithms(e endpoint) []string {
	if e.hostKey != "" {
		pk, err := parsePinnedKey(e.hostKey)
		if err != nil {
			return nil // the callback reports it
		}
		return appendAlgos(nil, pk.Type())
	}
	if d.HostKeys == nil {
		return nil
	}
	return d.HostKeys.algorithms(lookupAddr(e))
}

// checkPinned accepts exactly the one key configured for a node.
func checkPinned(addr, pinned string, key ssh.PublicKey) error {
	herr := &HostKeyError{
		Host:        knownhosts.Normalize(addr),
		Fingerprint: ssh.FingerprintSHA256(key),
		KeyType:     key.Type(),
	}
	pk, err := parsePinnedKey(pinned)
	if err != nil {
		herr.Err = err
		return herr
	}
	if bytes.Equal(pk.Marshal(), key.Marshal()) {
		return nil
	}
	herr.Changed = true
	herr.Want = []string{pk.Type() + " " + ssh.FingerprintSHA256(pk)}
	return herr
}

// Client is a connection to one node (and the connections to its jump hosts,
// which it owns). Many commands may run on it at once, each in its own
// session.
type Client struct {
	target Target
	dialer *Dialer
	ssh    *ssh.Client

	mu     sync.Mutex
	chain  []*ssh.Client // first hop first; the last is ssh
	err    error
	closed bool
	done   chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup

	agentMu sync.Mutex
	fwd     *forwardGate // set by ForwardAgent

	// hostKey is the target's key, as verified against the pinned keys.
	hostKey ssh.PublicKey
}

// HostKey returns the target's public key, verified against the pinned
// keys when the connection was made. A build host that copies to this
// target is handed exactly this key.
func (c *Client) HostKey() ssh.PublicKey { return c.hostKey }

func newClient(d *Dialer, t Target) *Client {
	return &Client{target: t, dialer: d, done: make(chan struct{}), stop: make(chan struct{})}
}

// add takes ownership of one connection of the chain and watches it: when any
// link dies the whole client is finished.
func (c *Client) add(sc *ssh.Client, name string) {
	c.mu.Lock()
	c.chain = append(c.chain, sc)
	c.ssh = sc
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := sc.Wait()
		c.fail(fmt.Errorf("connection to %s closed: %w", name, err))
	}()
	interval, maxMiss := c.dialer.KeepaliveInterval, c.dialer.KeepaliveMax
	if interval == 0 {
		interval = DefaultKeepaliveInterval
	}
	if maxMiss <= 0 {
		maxMiss = DefaultKeepaliveMax
	}
	if interval > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.keepalive(sc, name, interval, maxMiss)
		}()
	}
}

// keepalive sends keepalive@openssh.com requests; any reply, even a refusal,
// proves the peer is there. A request that stays unanswered for maxMiss
// intervals means the link is cut without a reset (a dropped tunnel, a
// firewall losing state): the connection is closed so that everything
// running on it fails now instead of hanging.
func (c *Client) keepalive(sc *ssh.Client, name string, interval time.Duration, maxMiss int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	replies := make(chan error, 1)
	inflight, misses := false, 0
	for {
		select {
		case <-c.stop:
			return
		case err := <-replies:
			inflight, misses = false, 0
			if err != nil {
				return // the connection is gone; Wait reports it
			}
			continue
		case <-t.C:
		}
		if inflight {
			misses++
			if misses >= maxMiss {
				err := fmt.Errorf("connection to %s lost: no answer to keepalive for %s", name, time.Duration(misses)*interval)
				c.dialer.logf("%v", err)
				c.fail(err)
				return
			}
			continue
		}
		inflight = true
		go func() {
			_, _, err := sc.SendRequest("keepalive@openssh.com", true, nil)
			replies <- err
		}()
	}
}

// goTracked runs f in a goroutine that Close waits for, unless the client
// is already closed.
func (c *Client) goTracked(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// fail records the first reason the client died and closes every link.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	chain := c.chain
	close(c.done)
	c.mu.Unlock()
	for i := len(chain) - 1; i >= 0; i-- {
		chain[i].Close()
	}
}

// ErrClosed is the client's error after Close.
var ErrClosed = errors.New("client closed")

// Close closes the connection to the node and its jump hosts and waits for
// the client's goroutines to end.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	c.mu.Unlock()
	c.fail(ErrClosed)
	c.wg.Wait()
	return nil
}

// Done is closed when the connection is gone (closed, cut, or keepalives
// unanswered).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection is gone, nil while it is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Target returns the target the client was dialled for.
func (c *Client) Target() Target { return c.target }

// Redial opens a fresh, independent connection to the same target through
// the same hops: new TCP connections and handshakes all the way, because an
// old connection can outlive a firewall that now drops new ones.
func (c *Client) Redial(ctx context.Context) (*Client, error) {
	return c.dialer.Dial(ctx, c.target)
}
