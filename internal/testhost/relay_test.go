package testhost_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// echoServer echoes every connection until the client half-closes.
func echoServer(t *testing.T) string {
	t.Helper()
	return testenv.Serve(t, "tcp", "127.0.0.1:0", func(c net.Conn) { _, _ = io.Copy(c, c) }).String()
}

func newRelay(t *testing.T) *testhost.Relay {
	t.Helper()
	r, err := testhost.NewRelay("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// roundTrip sends data through the relay, half-closes and reads the echo.
func roundTrip(t *testing.T, r *testhost.Relay, data []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	return got
}

func TestRelayForwardsAndCounts(t *testing.T) {
	r := newRelay(t)
	data := make([]byte, 300_000)
	_, _ = rand.Read(data)
	if got := roundTrip(t, r, data); !bytes.Equal(got, data) {
		t.Fatalf("echo through relay differs: %d bytes back of %d", len(got), len(data))
	}
	if r.BytesUp() != int64(len(data)) || r.BytesDown() != int64(len(data)) {
		t.Errorf("counters up %d down %d, want %d each", r.BytesUp(), r.BytesDown(), len(data))
	}
	if r.Accepted() != 1 {
		t.Errorf("accepted %d connections, want 1", r.Accepted())
	}
}

func TestRelayCutAndRestore(t *testing.T) {
	r := newRelay(t)
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 4)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	r.Cut()
	if !r.IsCut() || r.Conns() != 0 {
		t.Errorf("after Cut: IsCut %v, %d live conns", r.IsCut(), r.Conns())
	}
	// The live connection is closed: reads end (EOF or reset), never hang
	// until the deadline.
	if _, err := c.Read(buf); err == nil || isTimeout(err) {
		t.Errorf("read on a cut connection: %v", err)
	}
	// New connections are turned away.
	c2, err := net.Dial("tcp", r.Addr())
	if err == nil {
		_ = c2.SetDeadline(time.Now().Add(time.Minute))
		if n, err := c2.Read(buf); err == nil || isTimeout(err) {
			t.Errorf("new connection through a cut relay read %d bytes, %v", n, err)
		}
		c2.Close()
	}
	if r.Refused() == 0 {
		t.Error("no connection counted as refused")
	}
	r.Restore()
	if got := roundTrip(t, r, []byte("back")); string(got) != "back" {
		t.Errorf("after Restore echoed %q", got)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// The delays are lower bounds: data cannot arrive before the link lets it.
func TestRelayLatencyAndRate(t *testing.T) {
	r := newRelay(t)
	r.SetLatency(150 * time.Millisecond)
	if r.Latency() != 150*time.Millisecond {
		t.Fatalf("Latency() = %v", r.Latency())
	}
	start := time.Now()
	if got := roundTrip(t, r, []byte("x")); string(got) != "x" {
		t.Fatalf("echo %q", got)
	}
	if rtt := time.Since(start); rtt < 300*time.Millisecond {
		t.Errorf("round trip %v with 150ms each way", rtt)
	}

	r.SetLatency(0)
	r.SetRate(20_000)
	if up, down := r.Rates(); up != 20_000 || down != 20_000 {
		t.Fatalf("Rates() = %d, %d", up, down)
	}
	data := make([]byte, 30_000)
	start = time.Now()
	if got := roundTrip(t, r, data); len(got) != len(data) {
		t.Fatalf("echo %d bytes", len(got))
	}
	// 30 kB at 20 kB/s, less one 1 kB burst: at least ~1.4s.
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Errorf("30 kB at 20 kB/s took %v", took)
	}
	r.SetRate(0)
	if got := roundTrip(t, r, data); len(got) != len(data) {
		t.Fatalf("echo %d bytes after lifting the cap", len(got))
	}
}
