package testhost

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Relay is "the tunnel": a TCP proxy on the runner's loopback in front of a
// host, standing in for the slow, far and fragile link between CI and a home
// network. It can add latency, cap bandwidth, count bytes each way, and be
// cut (live connections closed, new ones refused) and restored, so that
// transfers and magic rollback are tested against a link that misbehaves.
type Relay struct {
	ln     net.Listener
	target string

	latency            atomic.Int64 // one-way, nanoseconds
	up, down           bucket       // up: runner → host
	bytesUp, bytesDown atomic.Int64
	accepted, refused  atomic.Int64
	mu                 sync.Mutex
	cut, closed        bool
	conns              map[*relayConn]struct{}
	wg                 sync.WaitGroup
	dialTimeout        time.Duration
}

type relayConn struct {
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
}

func (c *relayConn) close() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		c.server.Close()
	})
}

// NewRelay listens on listen (e.g. "127.0.0.1:0") and forwards every
// connection to target.
func NewRelay(listen, target string) (*Relay, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	r := &Relay{ln: ln, target: target, conns: map[*relayConn]struct{}{}, dialTimeout: 10 * time.Second}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// Addr is the host:port clients dial.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Target is where the relay forwards to.
func (r *Relay) Target() string { return r.target }

// SetLatency delays every byte by d in each direction (d ≤ 0: none). It
// applies to data read from now on.
func (r *Relay) SetLatency(d time.Duration) { r.latency.Store(int64(max(d, 0))) }

// Latency is the one-way delay in force.
func (r *Relay) Latency() time.Duration { return time.Duration(r.latency.Load()) }

// SetRate caps each direction at bytesPerSec, shared by all connections as
// on one real link (≤ 0: unlimited).
func (r *Relay) SetRate(bytesPerSec int64) { r.SetRates(bytesPerSec, bytesPerSec) }

// SetRates caps runner → host (up) and host → runner (down) separately.
func (r *Relay) SetRates(up, down int64) {
	r.up.set(up)
	r.down.set(down)
}

// Rates gives the caps in force (0: unlimited).
func (r *Relay) Rates() (up, down int64) { return r.up.get(), r.down.get() }

// BytesUp counts bytes delivered from the runner to the host.
func (r *Relay) BytesUp() int64 { return r.bytesUp.Load() }

// BytesDown counts bytes delivered from the host to the runner.
func (r *Relay) BytesDown() int64 { return r.bytesDown.Load() }

// Accepted counts connections forwarded; Refused those turned away while cut.
func (r *Relay) Accepted() int64 { return r.accepted.Load() }

// Refused counts connections closed at once because the relay was cut.
func (r *Relay) Refused() int64 { return r.refused.Load() }

// Conns is the number of live forwarded connections.
func (r *Relay) Conns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Cut closes every live connection and turns new ones away until Restore:
// what a dropped tunnel looks like to the deployer.
func (r *Relay) Cut() {
	r.mu.Lock()
	r.cut = true
	conns := r.takeConns()
	r.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

// Restore lets new connections through again.
func (r *Relay) Restore() {
	r.mu.Lock()
	r.cut = false
	r.mu.Unlock()
}

// IsCut reports whether the relay is cut.
func (r *Relay) IsCut() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cut
}

// Close stops listening, closes every connection and waits for them.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	err := r.ln.Close()
	conns := r.takeConns()
	r.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	r.wg.Wait()
	return err
}

// takeConns empties the live set; r.mu is held.
func (r *Relay) takeConns() []*relayConn {
	var out []*relayConn
	for c := range r.conns {
		out = append(out, c)
	}
	clear(r.conns)
	return out
}

func (r *Relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if r.admit(func() { c.Close() }, func() { r.wg.Add(1) }) {
			go r.handle(c)
		}
	}
}

// admit lets a connection in, running let with r.mu held, unless the
// relay is cut or closed: then the connection is counted refused and shut.
// A connection is checked twice, when accepted and again once its target
// answered, since a cut can come between the two.
func (r *Relay) admit(shut, let func()) bool {
	r.mu.Lock()
	if r.cut || r.closed {
		r.mu.Unlock()
		r.refused.Add(1)
		shut()
		return false
	}
	let()
	r.mu.Unlock()
	return true
}

func (r *Relay) handle(client net.Conn) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), r.dialTimeout)
	server, err := (&net.Dialer{}).DialContext(ctx, "tcp", r.target)
	cancel()
	if err != nil {
		client.Close()
		return
	}
	c := &relayConn{client: client, server: server, done: make(chan struct{})}
	if !r.admit(c.close, func() { r.conns[c] = struct{}{} }) {
		return
	}
	r.accepted.Add(1)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.pump(c, server, client, &r.up, &r.bytesUp) }()
	go func() { defer wg.Done(); r.pump(c, client, server, &r.down, &r.bytesDown) }()
	wg.Wait()
	c.close()
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

type chunk struct {
	data []byte
	read time.Time
}

// pump copies src to dst, delivering each chunk latency after it was read
// and no faster than the bucket allows. A reader goroutine keeps reading
// while the writer waits, as a link in flight holds bytes; the bounded queue
// pushes back on the sender as a full link would.
func (r *Relay) pump(c *relayConn, dst, src net.Conn, b *bucket, count *atomic.Int64) {
	queue := make(chan chunk, 16)
	go func() {
		defer close(queue)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case queue <- chunk{data: buf[:n], read: time.Now()}:
				case <-c.done:
					return
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					c.close()
				}
				return
			}
		}
	}()
	for ch := range queue {
		if !wait(time.Until(ch.read.Add(r.Latency())), c.done) {
			return
		}
		for data := ch.data; len(data) > 0; {
			n, d := b.reserve(len(data))
			if !wait(d, c.done) {
				return
			}
			w, err := dst.Write(data[:n])
			count.Add(int64(w))
			if err != nil {
				c.close()
				return
			}
			data = data[n:]
		}
	}
	select {
	case <-c.done:
	default:
		// The sender finished: pass the half-close on, as TCP would.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
}

// wait sleeps d unless done closes first; it reports whether to go on.
func wait(d time.Duration, done <-chan struct{}) bool {
	if d <= 0 {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}

// bucket is a token bucket in bytes that goes into debt: a sender reserves
// what it is about to send and sleeps off the debt, so the long-run rate is
// exact whatever the chunk sizes. Bursts are capped at 50 ms worth.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per second, 0: unlimited
	tokens float64
	last   time.Time
	now    func() time.Time // nil: time.Now
}

func (b *bucket) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

func (b *bucket) set(rate int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate = float64(max(rate, 0))
	b.tokens = 0
	b.last = b.clock()
}

func (b *bucket) get() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(b.rate)
}

// reserve takes up to n bytes from the bucket and says how long to wait
// before sending them.
func (b *bucket) reserve(n int) (int, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate <= 0 {
		return n, 0
	}
	now := b.clock()
	burst := max(b.rate/20, 512)
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if float64(n) > burst {
		n = int(burst)
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return n, 0
	}
	return n, time.Duration(-b.tokens / b.rate * float64(time.Second))
}
