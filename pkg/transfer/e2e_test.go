package transfer_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/nix"
	"github.com/tetherdeploy/tether/pkg/remote"
	"github.com/tetherdeploy/tether/pkg/transfer"
)

// TestFoundation proves with real nix, real sshd and real closures, as a
// deployer uses them, what the rest of tether stands on: the fixture
// systems build on the runner; rpi is reached only by jumping through
// frame1; closures are copied into the hosts' own stores, never twice, and
// only what a store lacks; a wrong host key stops the connection before
// anything runs; and a tunnel cut in the middle of a copy fails it at once,
// leaves the destination consistent, and the next copy sends only the rest.
func TestFoundation(t *testing.T) {
	w, ctx := startWorld(t, 10*time.Minute)
	systems := w.buildSystems(t, ctx,
		[2]string{fixture.RPi, fixture.V1}, [2]string{fixture.RPi, fixture.V2},
		[2]string{fixture.Web, fixture.V1}, [2]string{fixture.Web, fixture.V2})

	t.Run("rpi only through frame1", func(t *testing.T) {
		rpi := w.fleet.Host(fixture.RPi)
		d := w.dialer(t)
		d.DialTimeout = 10 * time.Second
		c, err := d.Dial(ctx, remote.Target{Name: fixture.RPi, Host: rpi.IP.String()})
		if err == nil {
			c.Close()
			t.Fatal("the runner reached rpi without going through frame1")
		}
		t.Logf("direct dial: %v", err)
		if want := "dial rpi (" + rpi.IP.String() + ":22)"; !strings.Contains(err.Error(), want) {
			t.Errorf("direct dial error %q does not say %q", err, want)
		}
		if !errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.EHOSTUNREACH) {
			t.Errorf("direct dial error %q, want the network unreachable", err)
		}

		accepted := w.fleet.Relay.Accepted()
		c = w.dial(t, ctx, fixture.RPi)
		out, err := c.Output(ctx, "sh", "-c", `cat /run/testhost/name; echo "$SSH_CONNECTION"`)
		if err != nil {
			t.Fatal(err)
		}
		name, conn, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if name != fixture.RPi {
			t.Errorf("command ran on %q, want rpi", name)
		}
		// SSH_CONNECTION is "client-ip client-port server-ip server-port":
		// rpi saw the connection come from its own LAN, that is frame1.
		f := strings.Fields(conn)
		lan := netip.PrefixFrom(rpi.IP, 24).Masked()
		if from, err := netip.ParseAddr(f[0]); len(f) != 4 || err != nil || !lan.Contains(from) || from == rpi.IP {
			t.Errorf("rpi saw SSH_CONNECTION %q, want a client on its LAN %s", conn, lan)
		}
		if n := w.fleet.Relay.Accepted() - accepted; n != 1 {
			t.Errorf("the tunnel accepted %d connections while dialling rpi, want 1 (to frame1)", n)
		}
	})

	t.Run("copy", func(t *testing.T) {
		for _, host := range []string{fixture.Web, fixture.RPi} {
			t.Run(host, func(t *testing.T) {
				testCopy(t, ctx, w, host, systems[host+"/v1"], systems[host+"/v2"])
			})
		}
	})

	t.Run("wrong host key refused", func(t *testing.T) {
		testWrongHostKey(t, ctx, w)
	})

	t.Run("tunnel cut mid-copy", func(t *testing.T) {
		relay := w.fleet.Relay
		tests := []struct {
			name    string
			cut     func()
			wantErr string
		}{
			// The tunnel goes down and says so: connections reset.
			// rpi's connection runs inside frame1's: either may be the
			// one that notices the reset first.
			{name: "reset", cut: relay.Cut, wantErr: `connection to (frame1|rpi) closed`},
			// The tunnel goes silent, as a dropped NAT mapping does:
			// only keepalives can tell.
			{name: "silent", cut: func() { relay.SetLatency(time.Hour) }, wantErr: "no answer to keepalive"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				testTunnelCut(t, ctx, w, tt.name, tt.cut, tt.wantErr)
			})
		}
	})
}

// testCopy copies v1 to the host, again, then v2, checking on the host
// itself what arrived.
func testCopy(t *testing.T, ctx context.Context, w *world, host, v1, v2 string) {
	h := w.fleet.Host(host)
	relay := w.fleet.Relay
	tunnelled := host != fixture.Web
	dst := transfer.RemoteStore(w.dial(t, ctx, host), nil)

	c1 := requisites(t, ctx, v1)
	p1 := sortedPaths(c1)
	_, lacking := validity(t, ctx, h, p1)
	if len(lacking) == 0 {
		t.Fatalf("%s already has the closure of %s: nothing to prove", host, v1)
	}
	var last transfer.Progress
	var reports int
	up := relay.BytesUp()
	st, err := transfer.Copy(ctx, w.local, dst, []string{v1}, transfer.Options{
		Progress: func(p transfer.Progress) {
			if p.Sent > p.Total {
				t.Errorf("progress %+v: more sent than the total", p)
			}
			last = p
			reports++
		},
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", v1, host, err)
	}
	requireValid(t, ctx, h, p1)
	want := transfer.Stats{
		Closure: len(p1), ClosureBytes: narSize(c1, p1),
		Present: len(p1) - len(lacking), Sent: len(lacking), SentBytes: st.SentBytes, StreamBytes: st.StreamBytes,
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("Stats of the first copy (-want +got):\n%s", diff)
	}
	checkStreamSize(t, st.SentBytes, c1, lacking)
	if wantLast := (transfer.Progress{Sent: narSize(c1, lacking), Total: narSize(c1, lacking), Paths: len(lacking), TotalPaths: len(lacking)}); reports == 0 || last != wantLast {
		t.Errorf("last of %d progress reports = %+v, want %+v", reports, last, wantLast)
	}
	if crossed := relay.BytesUp() - up; tunnelled && crossed < narSize(c1, lacking) {
		t.Errorf("%d bytes crossed the tunnel for %d bytes of NARs: the copy did not go through it", crossed, narSize(c1, lacking))
	}

	t.Run("again sends nothing", func(t *testing.T) {
		up := relay.BytesUp()
		st, err := transfer.Copy(ctx, w.local, dst, []string{v1}, transfer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Sent != 0 || st.SentBytes != 0 || st.Present != len(p1) {
			t.Errorf("Stats = %+v, want all %d paths present and nothing sent", st, len(p1))
		}
		// A few queries, not a closure of megabytes.
		if crossed := relay.BytesUp() - up; tunnelled && crossed > 64<<10 {
			t.Errorf("%d bytes crossed the tunnel for a copy of a closure the host has", crossed)
		}
	})

	t.Run("v2 after v1 sends only what v1 lacked", func(t *testing.T) {
		c2 := requisites(t, ctx, v2)
		p2 := sortedPaths(c2)
		var fresh []string
		for _, p := range p2 {
			if _, ok := c1[p]; !ok {
				fresh = append(fresh, p)
			}
		}
		if len(fresh) == 0 || len(fresh) == len(p2) {
			t.Fatalf("v1 and v2 of %s share %d of %d paths: the fixture must share some and change some", host, len(p2)-len(fresh), len(p2))
		}
		_, lacking := validity(t, ctx, h, p2)
		if diff := cmp.Diff(fresh, lacking); diff != "" {
			t.Fatalf("%s lacks other paths of v2 than those not in v1 (-v2 minus v1 +lacking):\n%s", host, diff)
		}
		st, err := transfer.Copy(ctx, w.local, dst, []string{v2}, transfer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		requireValid(t, ctx, h, p2)
		if st.Sent != len(fresh) || st.Present != len(p2)-len(fresh) {
			t.Errorf("Stats = %+v, want %d paths sent (those v1 lacked) and %d present", st, len(fresh), len(p2)-len(fresh))
		}
		checkStreamSize(t, st.SentBytes, c2, fresh)
	})
}

// checkStreamSize checks that an export stream carried the NARs of exactly
// the given paths: at least their bytes, plus a bounded header per path.
func checkStreamSize(t *testing.T, sent int64, closure map[string]nix.PathInfo, paths []string) {
	t.Helper()
	nars := narSize(closure, paths)
	// Per path: markers, the path, its references and deriver, padded.
	const header = 4096
	if sent < nars || sent > nars+header*int64(len(paths)) {
		t.Errorf("%d bytes streamed for %d paths of %d NAR bytes: not those paths alone", sent, len(paths), nars)
	}
}

// testWrongHostKey dials hosts with known_hosts that pin another key, or
// none, for them: the dial fails with the key's fingerprint and the host's
// sshd never lets anyone in.
func testWrongHostKey(t *testing.T, ctx context.Context, w *world) {
	imposter := w.fleet.Host(fixture.Frame1).HostPublicKey
	tests := []struct {
		host    string
		changed bool // another key pinned; else none
	}{
		{host: fixture.Web, changed: true},
		{host: fixture.Web, changed: false},
		{host: fixture.RPi, changed: true},
	}
	for _, tt := range tests {
		name := tt.host + " unknown key"
		if tt.changed {
			name = tt.host + " changed key"
		}
		t.Run(name, func(t *testing.T) {
			h := w.fleet.Host(tt.host)
			// The same file with the host's line taken out or replaced.
			var kh bytes.Buffer
			for _, line := range strings.Split(string(w.fleet.KnownHosts()), "\n") {
				if strings.HasPrefix(line, h.Name+",") {
					if tt.changed {
						addrs, _, _ := strings.Cut(line, " ")
						line = knownhosts.Line(strings.Split(addrs, ","), imposter)
					} else {
						continue
					}
				}
				kh.WriteString(line + "\n")
			}
			hostKeys := remote.NewHostKeys()
			if err := hostKeys.AddKnownHosts(kh.Bytes(), "test"); err != nil {
				t.Fatal(err)
			}

			// The log counts logins: one with the right key shows up.
			before := sshdAccepted(t, ctx, h)
			w.dial(t, ctx, tt.host).Close()
			if n := sshdAccepted(t, ctx, h); n != before+1 {
				t.Fatalf("sshd log of %s shows %d new logins after one, cannot tell logins apart", tt.host, n-before)
			}
			before++

			d := w.dialer(t)
			d.HostKeys = hostKeys
			c, err := d.Dial(ctx, w.target(tt.host))
			if err == nil {
				c.Close()
				t.Fatalf("dial %s succeeded with a wrong host key pinned", tt.host)
			}
			t.Logf("dial: %v", err)
			var hk *remote.HostKeyError
			if !errors.As(err, &hk) {
				t.Fatalf("dial error %v, want a *remote.HostKeyError", err)
			}
			fp := ssh.FingerprintSHA256(h.HostPublicKey)
			if hk.Fingerprint != fp || hk.Changed != tt.changed {
				t.Errorf("HostKeyError = %+v, want fingerprint %s, changed %v", hk, fp, tt.changed)
			}
			if !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), tt.host) {
				t.Errorf("dial error %q does not name %s and the fingerprint %s", err, tt.host, fp)
			}
			if n := sshdAccepted(t, ctx, h); n != before {
				t.Errorf("sshd of %s let in %d logins for a dial that refused its key", tt.host, n-before)
			}
		})
	}
}

// testTunnelCut cuts the tunnel with cut while a closure is streaming to
// rpi through it.
func testTunnelCut(t *testing.T, ctx context.Context, w *world, tag string, cut func(), wantErr string) {
	rpi := w.fleet.Host(fixture.RPi)
	relay := w.fleet.Relay
	bulk := w.buildBulk(t, ctx, tag, 5, 2<<20)
	closure := requisites(t, ctx, bulk)
	paths := sortedPaths(closure)
	if _, lacking := validity(t, ctx, rpi, paths); len(lacking) < 5 {
		t.Fatalf("rpi lacks only %d of the %d bulk paths", len(lacking), len(paths))
	}

	// At 2 MiB/s the 10 MiB closure takes seconds, while a keepalive
	// waits behind at most one SSH window (2 MiB): under the 3 s the
	// dialer allows it.
	relay.SetRate(2 << 20)
	t.Cleanup(func() { relay.SetRate(0); relay.SetLatency(0); relay.Restore() })
	c := w.dial(t, ctx, fixture.RPi)
	type result struct {
		st  transfer.Stats
		err error
	}
	done := make(chan result, 1)
	copyCtx, cancelCopy := context.WithTimeout(ctx, 2*time.Minute) // backstop: a hang fails below
	defer cancelCopy()
	go func() {
		st, err := transfer.Copy(copyCtx, w.local, transfer.RemoteStore(c, nil), []string{bulk}, transfer.Options{})
		done <- result{st, err}
	}()

	// Cut once part of the closure has arrived.
	testenv.Eventually(t, 2*time.Minute, "part of the closure to arrive on rpi", func() bool {
		select {
		case r := <-done:
			t.Fatalf("the copy ended before the tunnel was cut (%+v, %v): the closure is too small for the relay's rate", r.st, r.err)
		default:
		}
		valid, _ := validity(t, ctx, rpi, paths)
		return len(valid) > 0
	})
	cut()
	cutAt := time.Now()
	var r result
	select {
	case r = <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("Copy still running 90s after the tunnel was cut")
	}
	t.Logf("Copy returned %s after the cut: %v", time.Since(cutAt).Round(time.Millisecond), r.err)
	if r.err == nil {
		t.Fatal("Copy succeeded though the tunnel was cut")
	}
	if errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("Copy only returned at the test's backstop deadline: %v", r.err)
	}
	if !regexp.MustCompile(wantErr).MatchString(r.err.Error()) {
		t.Errorf("Copy error %q does not match %q", r.err, wantErr)
	}
	// A silent tunnel still holds the far end's half of the connection:
	// drop it, as the far sshd would once its own keepalives gave up.
	relay.Cut()
	relay.SetLatency(0)

	// The destination is consistent: what it holds valid is complete,
	// with everything it refers to.
	testenv.Eventually(t, 30*time.Second, "the interrupted import on rpi to end", func() bool {
		return len(running(t, rpi, "nix-store")) == 0
	})
	valid, lacking := validity(t, ctx, rpi, paths)
	t.Logf("after the cut rpi holds %d of %d paths", len(valid), len(paths))
	if len(valid) == 0 || len(lacking) == 0 {
		t.Fatalf("rpi holds %d of %d paths after the cut: the cut did not land mid-copy", len(valid), len(paths))
	}
	verifyPaths(t, ctx, rpi, valid)
	for _, p := range valid {
		_, missing := validity(t, ctx, rpi, closure[p].References)
		if len(missing) > 0 {
			t.Errorf("%s is valid on rpi without its references %v", p, missing)
		}
	}
	if out, err := rpi.Exec(ctx, "nix-store", "--verify", "--check-contents"); err != nil {
		t.Errorf("rpi's store does not verify after the cut: %v\n%s", err, out)
	}

	// Back up: a new connection sends only what did not arrive.
	relay.Restore()
	relay.SetRate(0)
	c = w.dial(t, ctx, fixture.RPi)
	st, err := transfer.Copy(ctx, w.local, transfer.RemoteStore(c, nil), []string{bulk}, transfer.Options{})
	if err != nil {
		t.Fatalf("copy after the tunnel came back: %v", err)
	}
	requireValid(t, ctx, rpi, paths)
	if st.Sent != len(lacking) || st.Present != len(valid) {
		t.Errorf("Stats = %+v, want the %d paths that had not arrived sent and %d present", st, len(lacking), len(valid))
	}
	checkStreamSize(t, st.SentBytes, closure, lacking)
	if out, err := rpi.Exec(ctx, "nix-store", "--verify", "--check-contents"); err != nil {
		t.Errorf("rpi's store does not verify: %v\n%s", err, out)
	}
}
