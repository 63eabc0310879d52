package transfer_test

import (
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/pkg/transfer"
)

// TestCopyAndTheNodesCaches copies to web with substitution on, as to any
// node not marked fastConnection: a binary cache web can read (one another
// machine filled, here a file:// cache the runner wrote) is used, and the
// paths never cross the deployer's link; a cache web has no route to is
// found out in one bounded attempt, the paths are sent instead, and the
// copy says so.
func TestCopyAndTheNodesCaches(t *testing.T) {
	w, ctx := startWorld(t, 5*time.Minute)
	web := w.fleet.Host(fixture.Web)
	setCaches := func(t *testing.T, conf string) {
		t.Helper()
		file := filepath.Join(web.Dir, "etc", "nix", "nix.conf")
		base, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		// Later settings win in nix.conf.
		if err := os.WriteFile(file, append(base, conf...), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(file, base, 0o644) })
	}

	t.Run("a reachable cache is used", func(t *testing.T) {
		root := w.buildBulk(t, ctx, "cached", 3, 4096)
		closure := requisites(t, ctx, root)
		cache := filepath.Join(web.Dir, "tmp", "cache")
		runLocal(t, ctx, "nix", "copy", "--to", "file://"+cache, root)
		setCaches(t, "substituters = file:///tmp/cache\nrequire-sigs = false\n")

		c := w.dial(t, ctx, fixture.Web)
		st, err := transfer.Copy(ctx, w.local, transfer.RemoteStore(c, nil), []string{root}, transfer.Options{Substitute: true})
		if err != nil {
			t.Fatal(err)
		}
		requireValid(t, ctx, web, sortedPaths(closure))
		if st.Substituted != len(closure) || st.Sent != 0 || st.CachesUnreachable != "" {
			t.Errorf("Stats = %+v, want all %d paths fetched from web's cache and none sent", st, len(closure))
		}
	})

	t.Run("unreachable caches cost one attempt", func(t *testing.T) {
		root := w.buildBulk(t, ctx, "sent", 3, 4096)
		closure := requisites(t, ctx, root)
		// Two caches: one web has no route to, one on the runner's end of
		// web's link that closes every connection it accepts, counting
		// them.
		runnerSide := web.IP.Prev()
		ln, err := net.Listen("tcp", net.JoinHostPort(runnerSide.String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var accepted atomic.Int32
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				conn.Close()
			}
		}()
		broken := "http://" + ln.Addr().String()
		setCaches(t, "substituters = http://10.99.0.1 "+broken+"\n")

		c := w.dial(t, ctx, fixture.Web)
		st, err := transfer.Copy(ctx, w.local, transfer.RemoteStore(c, nil), []string{root}, transfer.Options{Substitute: true})
		if err != nil {
			t.Fatal(err)
		}
		requireValid(t, ctx, web, sortedPaths(closure))
		if st.Sent != len(closure) || st.Substituted != 0 {
			t.Errorf("Stats = %+v, want all %d paths sent", st, len(closure))
		}
		if want := "http://10.99.0.1, " + broken + " unreachable"; st.CachesUnreachable != want {
			t.Errorf("CachesUnreachable = %q, want %q", st.CachesUnreachable, want)
		}
		// nix's default is five attempts with pauses, on every copy.
		if n := accepted.Load(); n != 1 {
			t.Errorf("web's nix connected to the broken cache %d times, want once", n)
		}
	})
}
