package remote

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/remote/remotetest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestDialDirect(t *testing.T) {
	f := newFixture(t)
	s := f.server(remotetest.Options{Name: "web"})
	f.pin(s.KnownHosts())
	c := f.dial(direct("web", s))

	out, err := c.Output(context.Background(), "echo", "hello world")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello world\n" {
		t.Errorf("output = %q", out)
	}
	got := s.Execs()
	if len(got) != 1 || got[0].User != "deployer" || !strings.HasSuffix(got[0].Command, "; exec echo 'hello world'") {
		t.Errorf("server ran %q, want one echo 'hello world' as deployer", got)
	}
	if c.Target().Name != "web" {
		t.Errorf("Target() = %+v", c.Target())
	}
}

// jumpFleet is runner → frame1 → frame2.lan → rpi.lan, where the .lan names
// exist only for the jump host before them.
type jumpFleet struct {
	frame1, frame2, rpi *remotetest.Server
	target              Target
}

func newJumpFleet(f *fixture) *jumpFleet {
	j := &jumpFleet{}
	j.rpi = f.server(remotetest.Options{Name: "rpi"})
	j.frame2 = f.server(remotetest.Options{Name: "frame2", Hosts: map[string]string{"rpi.lan:22": j.rpi.Addr()}})
	j.frame1 = f.server(remotetest.Options{Name: "frame1", Hosts: map[string]string{"frame2.lan:22": j.frame2.Addr()}})
	j.target = Target{
		Name: "rpi", Host: "rpi.lan", User: "root",
		Jumps: []Hop{
			{Name: "frame1", Host: "127.0.0.1", Port: j.frame1.Port(), User: "ops"},
			{Name: "frame2", Host: "frame2.lan", User: "ops2"},
		},
	}
	return j
}

func TestDialJumpChain(t *testing.T) {
	f := newFixture(t)
	j := newJumpFleet(f)
	f.pin(j.frame1.KnownHosts() + j.frame2.KnownHosts("frame2.lan") + j.rpi.KnownHosts("rpi.lan"))
	c := f.dial(j.target)

	out, err := c.Output(context.Background(), "sh", "-c", "echo on rpi")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "on rpi\n" {
		t.Errorf("output = %q", out)
	}
	// The command ran on rpi only, reached through both jump hosts.
	if got := j.frame1.Forwards(); !slices.Equal(got, []string{"frame2.lan:22"}) {
		t.Errorf("frame1 forwarded to %q, want frame2.lan:22", got)
	}
	if got := j.frame2.Forwards(); !slices.Equal(got, []string{"rpi.lan:22"}) {
		t.Errorf("frame2 forwarded to %q, want rpi.lan:22", got)
	}
	if n := len(j.frame1.Execs()) + len(j.frame2.Execs()); n != 0 {
		t.Errorf("jump hosts ran %d commands", n)
	}
	if got := j.rpi.Execs(); len(got) != 1 || got[0].User != "root" {
		t.Errorf("rpi ran %+v, want one command as root", got)
	}
}

func TestDialJumpHostWithChangedKeyStopsThere(t *testing.T) {
	f := newFixture(t)
	j := newJumpFleet(f)
	imposter := remotetest.NewSigner(t)
	f.pin(j.frame1.KnownHosts() + knownhosts.Line([]string{"frame2.lan"}, imposter.PublicKey()) + "\n" + j.rpi.KnownHosts("rpi.lan"))

	_, err := f.dialer.Dial(context.Background(), j.target)
	var hk *HostKeyError
	if !errors.As(err, &hk) {
		t.Fatalf("Dial = %v, want a *HostKeyError", err)
	}
	if !hk.Changed || hk.Host != "frame2.lan" || hk.Fingerprint != ssh.FingerprintSHA256(j.frame2.PublicKey()) {
		t.Errorf("HostKeyError = %+v, want changed key of frame2.lan with its fingerprint", hk)
	}
	if !strings.Contains(err.Error(), "dial rpi: jump host frame2 (frame2.lan:22)") {
		t.Errorf("error does not name the hop: %v", err)
	}
	if n := j.frame2.AuthAttempts(); n != 0 {
		t.Errorf("deployer offered %d keys to an unverified host", n)
	}
	if n := j.rpi.Connections(); n != 0 {
		t.Errorf("rpi was connected to %d times past an unverified hop", n)
	}
}

func TestDialErrorNamesTargetAndHops(t *testing.T) {
	f := newFixture(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()
	frame1 := f.server(remotetest.Options{Name: "frame1", Hosts: map[string]string{"rpi.lan:22": deadAddr}})
	f.pin(frame1.KnownHosts())

	_, err = f.dialer.Dial(context.Background(), Target{
		Name: "rpi", Host: "rpi.lan",
		Jumps: []Hop{{Name: "frame1", Host: "127.0.0.1", Port: frame1.Port()}},
	})
	if err == nil || !strings.HasPrefix(err.Error(), "dial rpi (rpi.lan:22) via frame1: ") {
		t.Errorf("Dial error = %v, want it to start with the target, its address and the hop", err)
	}
}

func TestHostKeyRefusal(t *testing.T) {
	other := remotetest.NewSigner(t)
	tests := []struct {
		name        string
		known       func(s *remotetest.Server) string
		target      func(s *remotetest.Server) Target
		wantChanged bool
	}{
		{
			name:   "unknown host",
			known:  func(*remotetest.Server) string { return "" },
			target: func(s *remotetest.Server) Target { return direct("web", s) },
		},
		{
			name:   "known under another port",
			known:  func(s *remotetest.Server) string { return s.KnownHosts("127.0.0.1:1") },
			target: func(s *remotetest.Server) Target { return direct("web", s) },
		},
		{
			name: "changed key",
			known: func(s *remotetest.Server) string {
				return knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, other.PublicKey())
			},
			target:      func(s *remotetest.Server) Target { return direct("web", s) },
			wantChanged: true,
		},
		{
			name:  "changed pinned hostKey",
			known: func(s *remotetest.Server) string { return s.KnownHosts() },
			target: func(s *remotetest.Server) Target {
				t := direct("web", s)
				t.HostKey = string(ssh.MarshalAuthorizedKey(other.PublicKey()))
				return t
			},
			wantChanged: true,
		},
		{
			name:  "alias not pinned",
			known: func(s *remotetest.Server) string { return s.KnownHosts() },
			target: func(s *remotetest.Server) Target {
				t := direct("web", s)
				t.HostKeyAlias = "web-alias"
				return t
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, s := webPinning(t, tt.known)
			_, err := f.dialer.Dial(context.Background(), tt.target(s))
			var hk *HostKeyError
			if !errors.As(err, &hk) {
				t.Fatalf("Dial = %v, want *HostKeyError", err)
			}
			fp := ssh.FingerprintSHA256(s.PublicKey())
			if hk.Fingerprint != fp || !strings.Contains(err.Error(), fp) {
				t.Errorf("error %q does not carry the presented key %s", err, fp)
			}
			if hk.Changed != tt.wantChanged {
				t.Errorf("Changed = %v, want %v (%v)", hk.Changed, tt.wantChanged, err)
			}
			if tt.wantChanged && (len(hk.Want) != 1 || !strings.Contains(hk.Want[0], ssh.FingerprintSHA256(other.PublicKey()))) {
				t.Errorf("Want = %q, want the pinned key's fingerprint", hk.Want)
			}
			if n := s.AuthAttempts(); n != 0 {
				t.Errorf("deployer authenticated (%d attempts) to a host it did not verify", n)
			}
			if n := len(s.Execs()); n != 0 {
				t.Errorf("%d commands ran on an unverified host", n)
			}
		})
	}
}

// webPinning starts a server named web and pins what known says of it
// ("" pins nothing), as each host key case sets up its known_hosts.
func webPinning(t *testing.T, known func(*remotetest.Server) string) (*fixture, *remotetest.Server) {
	t.Helper()
	f := newFixture(t)
	s := f.server(remotetest.Options{Name: "web"})
	if k := known(s); k != "" {
		f.pin(k)
	}
	return f, s
}

func TestHostKeyAccepted(t *testing.T) {
	tests := []struct {
		name   string
		known  func(s *remotetest.Server) string
		target func(s *remotetest.Server) Target
	}{
		{
			name: "hashed known_hosts entry",
			known: func(s *remotetest.Server) string {
				return knownhosts.Line([]string{knownhosts.HashHostname(knownhosts.Normalize(s.Addr()))}, s.PublicKey())
			},
			target: func(s *remotetest.Server) Target { return direct("web", s) },
		},
		{
			name:  "host key alias",
			known: func(s *remotetest.Server) string { return s.KnownHosts("web-alias") },
			target: func(s *remotetest.Server) Target {
				t := direct("web", s)
				t.HostKeyAlias = "web-alias"
				return t
			},
		},
		{
			name:  "per-node pinned key, nothing in known_hosts",
			known: func(s *remotetest.Server) string { return "" },
			target: func(s *remotetest.Server) Target {
				t := direct("web", s)
				t.HostKey = s.AuthorizedKey()
				return t
			},
		},
		{
			name: "wildcard entry among comments",
			known: func(s *remotetest.Server) string {
				return "# fleet\n\n" + knownhosts.Line([]string{"[127.0.0.*]:" + strconv.Itoa(s.Port())}, s.PublicKey())
			},
			target: func(s *remotetest.Server) Target {
				return direct("web", s)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, s := webPinning(t, tt.known)
			c := f.dial(tt.target(s))
			if _, err := c.Output(context.Background(), "true"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A host with several key types must be reachable when only one of them is
// pinned (a node's hostKey is usually its ed25519 key; here the RSA one).
func TestHostKeyAlgorithmFollowsPinnedKey(t *testing.T) {
	f := newFixture(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigner, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	s := f.server(remotetest.Options{Name: "web", ExtraHostKeys: []ssh.Signer{rsaSigner}})
	f.pin(knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, rsaSigner.PublicKey()))
	c := f.dial(direct("web", s))
	if _, err := c.Output(context.Background(), "true"); err != nil {
		t.Fatal(err)
	}

	pinned := direct("web", s)
	pinned.HostKey = string(ssh.MarshalAuthorizedKey(rsaSigner.PublicKey()))
	f.hostKeys = NewHostKeys()
	f.dialer.HostKeys = f.hostKeys
	c = f.dial(pinned)
	if _, err := c.Output(context.Background(), "true"); err != nil {
		t.Fatal(err)
	}
}

func TestAddKnownHostsRejectsGarbage(t *testing.T) {
	h := NewHostKeys()
	err := h.AddKnownHosts([]byte("# ok\nfrae1 ssh-ed25519 AAAAnot-base64\n"), "secret KNOWN_HOSTS")
	if err == nil || !strings.Contains(err.Error(), "secret KNOWN_HOSTS:2") {
		t.Errorf("AddKnownHosts = %v, want an error naming the source and line 2", err)
	}
	if err := h.Pin("rpi", 22, "not a key"); err == nil {
		t.Error("Pin accepted a malformed key")
	}
}

// The pipe helper of TestMain is the proxy: it joins its stdio to host:port.
func pipeProxy(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return "env " + helperEnv + "=pipe " + Quote([]string{exe}) + " %h %p"
}

func TestDialProxyCommand(t *testing.T) {
	f := newFixture(t)
	s := f.server(remotetest.Options{Name: "frame1"})
	f.pin(s.KnownHosts())
	target := direct("frame1", s)
	target.ProxyCommand = pipeProxy(t)
	c := f.dial(target)
	out, err := c.Output(context.Background(), "echo", "through the tunnel")
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "through the tunnel\n" {
		t.Errorf("output = %q", out)
	}
}

// runner → (proxy command) → frame1 → rpi.lan: the tunnel reaches the first
// hop, the rest goes through it.
func TestDialProxyCommandOnFirstHop(t *testing.T) {
	f := newFixture(t)
	rpi := f.server(remotetest.Options{Name: "rpi"})
	frame1 := f.server(remotetest.Options{Name: "frame1", Hosts: map[string]string{"rpi.lan:22": rpi.Addr()}})
	f.pin(frame1.KnownHosts() + rpi.KnownHosts("rpi.lan"))
	c := f.dial(Target{Name: "rpi", Host: "rpi.lan", Jumps: []Hop{
		{Name: "frame1", Host: "127.0.0.1", Port: frame1.Port(), ProxyCommand: pipeProxy(t)},
	}})
	if _, err := c.Output(context.Background(), "true"); err != nil {
		t.Fatal(err)
	}
	if got := frame1.Forwards(); !slices.Equal(got, []string{"rpi.lan:22"}) {
		t.Errorf("frame1 forwarded %q", got)
	}
}

func TestDialProxyCommandFailureShowsItsStderr(t *testing.T) {
	f := newFixture(t)
	_, err := f.dialer.Dial(context.Background(), Target{
		Name: "frame1", Host: "frame1.example",
		ProxyCommand: "echo tunnel refused for %h >&2; exit 3",
	})
	if err == nil || !strings.Contains(err.Error(), "tunnel refused for frame1.example") {
		t.Errorf("Dial = %v, want the proxy's stderr in the error", err)
	}
}

// A proxy command started in CI holds none of the secrets tether holds:
// the test starts this test binary as the deployer with a CI step's
// environment, and the proxy command (this binary again) writes down
// the environment it was given. What the user's program may need of its
// own stays.
func TestProxyCommandSeesNoSecret(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(t.TempDir(), "env")
	secrets := map[string]string{
		"INPUT_SSH_PRIVATE_KEY":          "secret-deploy-key",
		"INPUT_GITHUB_TOKEN":             "ghs_secret_input",
		"GITHUB_TOKEN":                   "ghs_secret_token",
		"GH_TOKEN":                       "ghp_secret",
		"ACTIONS_RUNTIME_TOKEN":          "secret-runtime",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret-oidc",
		"TETHER_SSH_KEY":                 "secret-tether-key",
		"TETHER_KNOWN_HOSTS":             "secret-known-hosts",
	}
	kept := map[string]string{"TUNNEL_SERVICE_TOKEN": "the-proxys-own", "HOME": "/home/runner"}
	env := []string{helperEnv + "=start-proxy", "PATH=/usr/bin:/bin"}
	for k, v := range secrets {
		env = append(env, k+"="+v)
	}
	for k, v := range kept {
		env = append(env, k+"="+v)
	}
	line := "env " + helperEnv + "=env-dump " + Quote([]string{exe, dump})
	cmd := execCommand(exe, line)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deployer: %v\n%s", err, out)
	}
	data, err := os.ReadFile(dump)
	if err != nil {
		t.Fatalf("the proxy command never ran: %v", err)
	}
	got := "\x00" + string(data) + "\x00"
	for k, v := range secrets {
		if strings.Contains(got, v) {
			t.Errorf("the proxy command sees %s", k)
		}
	}
	for k, v := range kept {
		if !strings.Contains(got, "\x00"+k+"="+v+"\x00") {
			t.Errorf("the proxy command lacks %s", k)
		}
	}
}

func TestExpandProxyCommandQuotesValues(t *testing.T) {
	hostile := endpoint{name: "n$(id)", host: "h'; touch pwned; '", port: 2222, user: "u `id`"}
	line, err := expandProxyCommand("printf '%%s\\n' %h %p %r %n", hostile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := execCommand("/bin/sh", "-c", line)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	want := strings.Join([]string{hostile.host, "2222", hostile.user, hostile.name}, "\n") + "\n"
	if string(out) != want {
		t.Errorf("proxy command saw %q, want %q", out, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Error("a host name ran a command")
	}
	if _, err := expandProxyCommand("nc %h %x", hostile); err == nil {
		t.Error("unknown token accepted")
	}
	if _, err := expandProxyCommand("nc %h %", hostile); err == nil {
		t.Error("lone % accepted")
	}
}

func TestDialTimeout(t *testing.T) {
	// A listener that accepts and never speaks SSH, like a port forward to
	// a dead machine.
	addr := testenv.Serve(t, "tcp", "127.0.0.1:0", func(net.Conn) { <-t.Context().Done() })
	f := newFixture(t)
	f.dialer.DialTimeout = 200 * time.Millisecond
	port := addr.(*net.TCPAddr).Port
	_, err := f.dialer.Dial(context.Background(), Target{Name: "dead", Host: "127.0.0.1", Port: port})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial = %v, want a deadline error", err)
	}
}

func TestDialValidatesTarget(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		target  Target
		wantErr string
	}{
		{Target{Name: "x"}, "empty host"},
		{Target{Host: "-oProxyCommand=evil"}, "starts with '-'"},
		{Target{Host: "a", Jumps: []Hop{{Host: "j"}}, ProxyCommand: "nc %h %p"}, "both jump hosts and a proxy command"},
		{Target{Host: "a", Jumps: []Hop{{Host: "j1"}, {Host: "j2", ProxyCommand: "nc"}}}, "only the first jump host"},
		{Target{Host: "a", Port: 70000}, "out of range"},
	}
	for _, tt := range tests {
		_, err := f.dialer.Dial(context.Background(), tt.target)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Dial(%+v) = %v, want error containing %q", tt.target, err, tt.wantErr)
		}
	}
	f.dialer.DefaultUser = ""
	if _, err := f.dialer.Dial(context.Background(), Target{Host: "a"}); err == nil || !strings.Contains(err.Error(), "no user") {
		t.Errorf("Dial without any user = %v", err)
	}
}

func TestRedialOpensFreshConnection(t *testing.T) {
	f := newFixture(t)
	s := f.server(remotetest.Options{Name: "web"})
	f.pin(s.KnownHosts())
	c := f.dial(direct("web", s))
	c2, err := c.Redial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if n := s.Connections(); n != 2 {
		t.Errorf("server saw %d connections, want 2", n)
	}
	c.Close()
	if _, err := c2.Output(context.Background(), "true"); err != nil {
		t.Errorf("fresh connection died with the old one: %v", err)
	}
	if _, err := c.Output(context.Background(), "true"); !errors.Is(err, ErrClosed) {
		t.Errorf("Run on a closed client = %v, want ErrClosed", err)
	}
}
