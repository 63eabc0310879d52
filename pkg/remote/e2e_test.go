package remote_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/remote"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestRealSSHD drives the transport against real sshd in sandbox hosts:
// runner → relay ("the tunnel") → frame1 → rpi, where rpi is reachable only
// through frame1.
func TestRealSSHD(t *testing.T) {
	fl := testhost.StartT(t, testhost.Options{})
	frame1, rpi := fl.Host("frame1"), fl.Host("rpi")
	if frame1 == nil || rpi == nil || rpi.Via != "frame1" {
		t.Fatalf("home topology without frame1 → rpi: %v", fl.Names())
	}
	hostKeys := remote.NewHostKeys()
	if err := hostKeys.AddKnownHosts(fl.KnownHosts(), "testhost"); err != nil {
		t.Fatal(err)
	}
	dialer := &remote.Dialer{
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(fl.ClientSigner)},
		HostKeys:          hostKeys,
		DefaultUser:       "root",
		DialTimeout:       30 * time.Second,
		KeepaliveInterval: 200 * time.Millisecond,
		KeepaliveMax:      5,
		Logf:              t.Logf,
	}
	relayHost, relayPort, err := net.SplitHostPort(frame1.SSHAddr)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(relayPort)
	frame1Hop := remote.Hop{Name: "frame1", Host: relayHost, Port: port}
	rpiTarget := remote.Target{Name: "rpi", Host: rpi.IP.String(), Jumps: []remote.Hop{frame1Hop}}

	ctx := context.Background()
	c, err := dialer.Dial(ctx, rpiTarget)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	t.Run("runs on rpi through frame1", func(t *testing.T) {
		out, err := c.Output(ctx, "cat", "/run/testhost/name")
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != "rpi" && string(out) != "rpi\n" {
			t.Errorf("command ran on %q, want rpi", out)
		}
	})

	t.Run("exit status and stderr", func(t *testing.T) {
		err := c.Run(ctx, remote.Cmd{Argv: []string{"sh", "-c", "echo no space left >&2; exit 7"}})
		var ee *remote.ExitError
		if !errors.As(err, &ee) || ee.Status != 7 || ee.Stderr != "no space left" {
			t.Errorf("Run = %v (%+v), want status 7 with the stderr line", err, ee)
		}
	})

	t.Run("upload", func(t *testing.T) {
		data := bytes.Repeat([]byte("tether-agent\x00\xff"), 200_000)
		path := "/tmp/agent it's $(x)"
		if err := c.Upload(ctx, bytes.NewReader(data), path, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := rpi.Exec(ctx, "sha256sum", path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if got, _, _ := strings.Cut(string(out), " "); got != hex.EncodeToString(sum[:]) {
			t.Errorf("uploaded file hash %s, want %x", got, sum)
		}
		mode, err := rpi.Exec(ctx, "stat", "-c", "%a", path)
		if err != nil || strings.TrimSpace(string(mode)) != "755" {
			t.Errorf("uploaded file mode %q (%v), want 755", mode, err)
		}
	})

	t.Run("cancel kills the remote command", func(t *testing.T) {
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			errc <- c.Run(rctx, remote.Cmd{Argv: []string{"sh", "-c", "trap '' TERM HUP; sleep 1000 & echo $! > /tmp/e2e-pid.tmp; mv /tmp/e2e-pid.tmp /tmp/e2e-pid; wait"}})
		}()
		var pid string
		testenv.Eventually(t, 20*time.Second, "the remote command to start", func() bool {
			out, err := rpi.ReadFile(ctx, "/tmp/e2e-pid")
			pid = strings.TrimSpace(string(out))
			return err == nil && pid != ""
		})
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
		testenv.Eventually(t, 20*time.Second, "sshd to kill the remote sleep "+pid, func() bool {
			_, err := rpi.Exec(ctx, "sh", "-c", `s=$(cut -d' ' -f3 /proc/"$1"/stat 2>/dev/null) || exit 1; [ "$s" != Z ]`, "sh", pid)
			return err != nil
		})
	})

	t.Run("agent forwarding", func(t *testing.T) {
		auth, err := remote.LoadAuth(remote.AuthSources{KeyFiles: []string{fl.ClientKeyPath}})
		if err != nil {
			t.Fatal(err)
		}
		c2, err := c.Redial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if err := c2.ForwardAgent(auth.Agent()); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := c2.Run(ctx, remote.Cmd{Argv: []string{"ssh-add", "-L"}, Stdout: &out, ForwardAgent: true, AgentSignatures: 1}); err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(fl.ClientSigner.PublicKey())))
		if !strings.Contains(out.String(), want) {
			t.Errorf("forwarded agent lists %q, want the deployer's key", out.String())
		}
	})

	t.Run("changed key of the target refused", func(t *testing.T) {
		imposter := fl.ClientSigner.PublicKey() // any key but rpi's
		bad := remote.NewHostKeys()
		var lines bytes.Buffer
		for _, l := range strings.Split(string(fl.KnownHosts()), "\n") {
			if strings.Contains(l, rpi.IP.String()) {
				continue
			}
			lines.WriteString(l + "\n")
		}
		lines.WriteString(knownhosts.Line([]string{rpi.IP.String()}, imposter) + "\n")
		if err := bad.AddKnownHosts(lines.Bytes(), "bad"); err != nil {
			t.Fatal(err)
		}
		d := *dialer
		d.HostKeys = bad
		_, err := d.Dial(ctx, rpiTarget)
		var hk *remote.HostKeyError
		if !errors.As(err, &hk) || !hk.Changed || hk.Fingerprint != ssh.FingerprintSHA256(rpi.HostPublicKey) {
			t.Errorf("Dial = %v, want a changed-key error with rpi's real fingerprint", err)
		}
	})

	t.Run("cut tunnel fails running commands", func(t *testing.T) {
		c3, err := c.Redial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c3.Close()
		guard, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		errc := make(chan error, 1)
		go func() {
			errc <- c3.Run(guard, remote.Cmd{Argv: []string{"sh", "-c", "touch /tmp/e2e-cut; exec sleep 1000"}})
		}()
		testenv.Eventually(t, 20*time.Second, "the command to start", func() bool {
			_, err := rpi.ReadFile(ctx, "/tmp/e2e-cut")
			return err == nil
		})
		fl.Relay.Cut()
		defer fl.Relay.Restore()
		err = <-errc
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run over a cut tunnel = %v, want a connection error", err)
		}
	})
}
