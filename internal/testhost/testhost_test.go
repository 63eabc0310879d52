package testhost_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/internal/testhost"
	"golang.org/x/crypto/ssh"
)

// sshOutput runs a fixed command line over client and returns its stdout.
func sshOutput(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer s.Close()
	out, err := s.Output(cmd)
	if err != nil {
		t.Fatalf("ssh %q: %v", cmd, err)
	}
	return string(out)
}

func dial(t *testing.T, f *testhost.Fleet, name string) *ssh.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := f.Dial(ctx, name)
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestHomeTopology(t *testing.T) {
	f := testhost.StartT(t, testhost.Options{Topology: testhost.Home})
	ctx := context.Background()

	for _, name := range []string{"frame1", "rpi", "web"} {
		h := f.Host(name)
		if h == nil {
			t.Fatalf("no host %s in %v", name, f.Names())
		}
		c := dial(t, f, name)
		if got := strings.TrimSpace(sshOutput(t, c, "cat /run/testhost/name")); got != name {
			t.Errorf("%s: /run/testhost/name over ssh = %q", name, got)
		}
		got, err := h.ReadFile(ctx, "/run/testhost/name")
		if err != nil || strings.TrimSpace(string(got)) != name {
			t.Errorf("%s: ReadFile(/run/testhost/name) = %q, %v", name, got, err)
		}
		// The fixture's switch scripts rely on these names.
		links := sshOutput(t, c, "ip -o link show")
		if !strings.Contains(links, " eth0") || !strings.Contains(links, " lo:") {
			t.Errorf("%s: want lo and eth0, got\n%s", name, links)
		}
		if env := sshOutput(t, c, "echo $NIX_CONF_DIR"); strings.TrimSpace(env) != filepath.Join(h.Dir, "etc", "nix") {
			t.Errorf("%s: NIX_CONF_DIR over ssh = %q", name, env)
		}
	}
	if links := sshOutput(t, dial(t, f, "frame1"), "ip -o link show"); !strings.Contains(links, " eth1") {
		t.Errorf("frame1 has no eth1 (LAN):\n%s", links)
	}

	t.Run("frame1 is dialled through the relay", func(t *testing.T) {
		if f.Relay == nil || f.Host("frame1").SSHAddr != f.Relay.Addr() {
			t.Fatalf("frame1 SSHAddr %s, relay %v", f.Host("frame1").SSHAddr, f.Relay)
		}
		if !strings.HasPrefix(f.Relay.Addr(), "127.0.0.1:") {
			t.Errorf("relay listens on %s, want loopback", f.Relay.Addr())
		}
	})

	t.Run("known_hosts pins every address", func(t *testing.T) {
		cb, err := f.HostKeyCallback()
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []*testhost.Host{f.Host("frame1"), f.Host("web")} {
			cfg := f.ClientConfig(h)
			cfg.HostKeyCallback = cb
			c, err := ssh.Dial("tcp", h.SSHAddr, cfg)
			if err != nil {
				t.Fatalf("%s at %s with known_hosts: %v", h.Name, h.SSHAddr, err)
			}
			c.Close()
		}
		// A host presenting another host's key is refused.
		cfg := f.ClientConfig(f.Host("web"))
		cfg.HostKeyCallback = ssh.FixedHostKey(f.Host("frame1").HostPublicKey)
		if c, err := ssh.Dial("tcp", f.Host("web").SSHAddr, cfg); err == nil {
			c.Close()
			t.Fatal("web accepted with frame1's pinned key")
		}
		kh := string(f.KnownHosts())
		if !strings.Contains(kh, "[127.0.0.1]:") {
			t.Errorf("known_hosts has no relay line:\n%s", kh)
		}
	})

	t.Run("rpi only through frame1", func(t *testing.T) {
		rpi := f.Host("rpi")
		if rpi.Via != "frame1" {
			t.Fatalf("rpi.Via = %q", rpi.Via)
		}
		c, err := net.DialTimeout("tcp", rpi.SSHAddr, 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("runner reached rpi at %s directly", rpi.SSHAddr)
		}
		// web is not on the LAN either.
		out, err := f.Host("web").Exec(ctx, "ip", "route", "get", rpi.IP.String())
		if err == nil {
			t.Errorf("web has a route to rpi: %s", out)
		}
		// frame1 is, and does not forward.
		fwd, err := f.Host("frame1").ReadFile(ctx, "/proc/sys/net/ipv4/ip_forward")
		if err != nil || strings.TrimSpace(string(fwd)) != "0" {
			t.Errorf("frame1 ip_forward = %q, %v", fwd, err)
		}
	})

	t.Run("private run, nix and tmp", func(t *testing.T) {
		frame1, web := f.Host("frame1"), f.Host("web")
		for _, p := range []string{"/run/probe-" + f.Run, "/nix/probe-" + f.Run, "/tmp/probe-" + f.Run} {
			if _, err := frame1.Exec(ctx, "touch", p); err != nil {
				t.Fatal(err)
			}
			if _, err := frame1.Exec(ctx, "test", "-e", p); err != nil {
				t.Errorf("frame1 does not see its own %s: %v", p, err)
			}
			if _, err := web.Exec(ctx, "test", "-e", p); err == nil {
				t.Errorf("web sees frame1's %s", p)
			}
			if _, err := os.Stat(p); err == nil {
				t.Errorf("runner sees frame1's %s", p)
			}
		}
	})

	t.Run("private store works", func(t *testing.T) {
		frame1, rpi := f.Host("frame1"), f.Host("rpi")
		file := "/tmp/hello-" + f.Run
		if _, err := frame1.Exec(ctx, "cp", "/run/testhost/name", file); err != nil {
			t.Fatal(err)
		}
		out, err := frame1.Exec(ctx, "nix-store", "--add", file)
		if err != nil {
			t.Fatal(err)
		}
		path := strings.TrimSpace(string(out))
		if !strings.HasPrefix(path, "/nix/store/") {
			t.Fatalf("nix-store --add printed %q", path)
		}
		req, err := frame1.Exec(ctx, "nix-store", "-q", "--requisites", path)
		if err != nil || strings.TrimSpace(string(req)) != path {
			t.Errorf("requisites of %s = %q, %v", path, req, err)
		}
		if _, err := rpi.Exec(ctx, "nix-store", "--check-validity", path); err == nil {
			t.Errorf("rpi's store has frame1's %s", path)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("runner's store has frame1's %s", path)
		}
		if _, err := os.Stat(filepath.Join(frame1.Dir, path)); err != nil {
			t.Errorf("not in frame1's directory: %v", err)
		}
	})

	t.Run("frame1 builds into its own store", func(t *testing.T) {
		frame1 := f.Host("frame1")
		const expr = `{ name }: derivation {
			inherit name;
			system = builtins.currentSystem;
			builder = "/bin/sh";
			args = [ "-c" "/usr/bin/id -un > $out" ];
		}`
		out, err := frame1.Exec(ctx, "nix-build", "--no-out-link", "--argstr", "name", "built-"+f.Run, "-E", expr)
		if err != nil {
			t.Fatal(err)
		}
		path := strings.TrimSpace(string(out))
		who, err := frame1.ReadFile(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); err == nil {
			t.Errorf("runner's store has frame1's build %s", path)
		}
		if _, err := user.LookupGroup("nixbld"); err != nil {
			return // builds run as root; no build users to share
		}
		if !strings.HasPrefix(string(who), "nixbld") {
			t.Errorf("built as %q, want a build user", who)
		}
		// Build users are handed out from the runner's pool, shared by every
		// store, so two stores never build as the same user at once.
		ino, err := frame1.Exec(ctx, "stat", "-c", "%i", "/nix/var/nix/userpool")
		if err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat("/nix/var/nix/userpool", &st); err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(ino)) != fmt.Sprint(st.Ino) {
			t.Errorf("frame1's build user pool (inode %s) is not the runner's (%d)", ino, st.Ino)
		}
	})

	t.Run("sshd restarts after being killed", func(t *testing.T) {
		web := f.Host("web")
		before := web.SSHDPid()
		if err := web.StartSSHD(ctx); err != nil {
			t.Fatal(err)
		}
		if again := web.SSHDPid(); again != before || before == 0 {
			t.Errorf("sshd-start on a running sshd changed its pid %d → %d", before, again)
		}
		if _, err := web.Exec(ctx, "sh", "-c", `kill "$(cat /run/sshd.pid)"`); err != nil {
			t.Fatal(err)
		}
		waitRefused(t, web.SSHAddr)
		if _, err := web.Exec(ctx, "/run/testhost/sshd-start"); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(sshOutput(t, dial(t, f, "web"), "cat /run/testhost/name")); got != "web" {
			t.Errorf("after restart: %q", got)
		}
	})

	t.Run("sshd-start from an ssh session", func(t *testing.T) {
		// What a fixture activation does: kill sshd and start it again from
		// inside, here from a session that outlives the listener.
		c := dial(t, f, "rpi")
		old := f.Host("rpi").SSHDPid()
		out := sshOutput(t, c, `pid=$(cat /run/sshd.pid) && kill "$pid" && while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done && /run/testhost/sshd-start && cat /run/sshd.pid`)
		if pid := strings.TrimSpace(out); pid == fmt.Sprint(old) || pid == "" {
			t.Errorf("sshd pid %d → %q: not restarted", old, pid)
		}
		if got := strings.TrimSpace(sshOutput(t, dial(t, f, "rpi"), "cat /run/testhost/name")); got != "rpi" {
			t.Errorf("rpi after restart: %q", got)
		}
	})

	t.Run("relay counts, cuts and restores", func(t *testing.T) {
		r := f.Relay
		c := dial(t, f, "frame1")
		up0, down0 := r.BytesUp(), r.BytesDown()
		out := sshOutput(t, c, "head -c 1048576 /dev/zero")
		if len(out) != 1<<20 {
			t.Fatalf("got %d bytes", len(out))
		}
		if got := r.BytesDown() - down0; got < 1<<20 {
			t.Errorf("BytesDown grew by %d, want ≥ 1 MiB", got)
		}
		if r.BytesUp() <= up0 {
			t.Errorf("BytesUp did not move (%d)", r.BytesUp())
		}

		// An in-flight session dies when the tunnel is cut.
		s, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		stdout, _ := s.StdoutPipe()
		if err := s.Start("echo started; sleep 600"); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "started\n" {
			t.Fatalf("session start: %q %v", line, err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Wait() }()
		r.Cut()
		select {
		case err := <-done:
			if err == nil {
				t.Error("session ended cleanly across a cut tunnel")
			}
		case <-time.After(60 * time.Second):
			t.Fatal("session still running 60s after the cut")
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if c2, err := f.Dial(dctx, "frame1"); err == nil {
			c2.Close()
			t.Fatal("dial through a cut relay succeeded")
		}
		if r.Refused() == 0 {
			t.Error("relay counted no refused connection")
		}
		r.Restore()
		if got := strings.TrimSpace(sshOutput(t, dial(t, f, "frame1"), "cat /run/testhost/name")); got != "frame1" {
			t.Errorf("after restore: %q", got)
		}
		// rpi goes through frame1, so through the tunnel too.
		down := r.BytesDown()
		if got := strings.TrimSpace(sshOutput(t, dial(t, f, "rpi"), "cat /run/testhost/name")); got != "rpi" {
			t.Errorf("rpi after restore: %q", got)
		}
		if r.BytesDown() == down {
			t.Error("rpi's traffic did not cross the relay")
		}
	})
}

// waitRefused waits until nothing listens at addr any more.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "nothing to listen at "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
			return false
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v (want connection refused)", addr, err)
		}
		return true
	})
}

func TestDirectTopology(t *testing.T) {
	f := testhost.StartT(t, testhost.Options{Topology: testhost.Direct(3)})
	if f.Relay != nil {
		t.Error("direct topology has a relay")
	}
	want := []string{"h01", "h02", "h03"}
	if got := f.Names(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("hosts %v, want %v", got, want)
	}
	for _, name := range want {
		h := f.Host(name)
		if h.Via != "" || !strings.HasSuffix(h.SSHAddr, ":22") {
			t.Errorf("%s: via %q at %s", name, h.Via, h.SSHAddr)
		}
		if got := strings.TrimSpace(sshOutput(t, dial(t, f, name), "cat /run/testhost/name")); got != name {
			t.Errorf("%s says %q", name, got)
		}
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	testhost.NeedHosts(t)
	ctx := context.Background()
	f, err := testhost.Start(ctx, testhost.Options{Topology: testhost.Home, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	// Something that forks away from its parent, as a detached agent does.
	if _, err := f.Host("rpi").Exec(ctx, "sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 &"); err != nil {
		t.Error(err)
	}
	if left, err := f.Leftovers(ctx); err != nil || len(left) == 0 {
		t.Errorf("a live fleet lists no leftovers (%v)", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	left, err := f.Leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		t.Errorf("left behind: %s", l)
	}
	if _, err := os.Stat(f.Dir); !os.IsNotExist(err) {
		t.Errorf("run directory %s still there: %v", f.Dir, err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// A power cut kills every process of the host and loses /run; the disks
// keep what was written; the next boot has a new boot ID, which the host
// sees at the kernel's path. With a boot entry, its init runs (here a
// stand-in that records it and starts sshd); without one the host boots
// bare, with sshd. Something inside the host can ask for the reboot.
func TestPowerCycle(t *testing.T) {
	f := testhost.StartT(t, testhost.Options{Topology: testhost.Direct(1)})
	h := f.Host("h01")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bootID := func() string {
		out, err := h.ReadFile(ctx, "/proc/sys/kernel/random/boot_id")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	first := bootID()
	if first == "" || first != h.BootID() {
		t.Fatalf("boot ID inside %q, harness %q", first, h.BootID())
	}
	if own, _ := os.ReadFile("/proc/sys/kernel/random/boot_id"); strings.TrimSpace(string(own)) == first {
		t.Fatal("the host sees the runner's boot ID")
	}
	out, err := h.Exec(ctx, "sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!; echo x > /run/volatile; echo y > /var/lib/kept")
	if err != nil {
		t.Fatal(err)
	}
	sleeper := strings.TrimSpace(string(out))

	if err := h.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if second := bootID(); second == first || second == "" {
		t.Errorf("boot ID after a power cycle %q (before %q)", second, first)
	}
	if out, _ := h.Exec(ctx, "sh", "-c", "cat /run/volatile /var/lib/kept 2>&1"); strings.TrimSpace(string(out)) != "cat: /run/volatile: No such file or directory\ny" {
		t.Errorf("after the power cycle: %q; want /run lost, /var/lib kept", out)
	}
	if st, err := os.ReadFile("/proc/" + sleeper + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
		t.Errorf("process %s of the host survived the power cut: %s", sleeper, st)
	}
	if got := strings.TrimSpace(sshOutput(t, dial(t, f, "h01"), "cat /run/testhost/name")); got != "h01" {
		t.Errorf("bare boot: sshd says %q", got)
	}

	// A boot entry whose init records that it ran and starts sshd; the
	// one-shot entry wins once, then the default again.
	script := "#!/bin/sh\necho \"$0\" >> /var/lib/boots\nexec /run/testhost/sshd-start\n"
	if err := os.MkdirAll(filepath.Join(h.Dir, "boot/loader/entries"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(h.Dir, "var/lib", "init-"+name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		entry := "options init=/var/lib/init-" + name + " quiet\n"
		if err := os.WriteFile(filepath.Join(h.Dir, "boot/loader/entries", name+".conf"), []byte(entry), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "boot/loader/loader.conf"), []byte("timeout 3\ndefault a.conf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "boot/loader/oneshot"), []byte("b.conf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := h.BootID()
	// The power button, pressed from inside.
	if _, err := h.Exec(ctx, "touch", "/run/testhost/reboot"); err != nil {
		t.Fatal(err)
	}
	for h.BootID() == before || h.BootedEntry() == "" {
		select {
		case <-ctx.Done():
			t.Fatal("the host did not reboot when asked to")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := h.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	waitSSH := func() {
		for {
			c, err := f.Dial(ctx, "h01")
			if err == nil {
				c.Close()
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("sshd not back: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	waitSSH()
	if got, _ := os.ReadFile(filepath.Join(h.Dir, "var/lib/boots")); string(got) != "/var/lib/init-b\n/var/lib/init-a\n" {
		t.Errorf("inits run: %q; want the one-shot entry once, then the default", got)
	}
}
