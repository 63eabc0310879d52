package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/pkg/remote/remotetest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// webClient is a client to one directly reachable server whose commands run
// in dir.
func webClient(t *testing.T, f *fixture) (*Client, *remotetest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	s := f.server(remotetest.Options{Name: "web", Dir: dir})
	f.pin(s.KnownHosts())
	return f.dial(direct("web", s)), s, dir
}

func TestRunStreamsAndReportsExit(t *testing.T) {
	f := newFixture(t)
	c, _, _ := webClient(t, f)
	ctx := context.Background()

	var stdout, stderr bytes.Buffer
	err := c.Run(ctx, Cmd{
		Argv:   []string{"sh", "-c", "cat; echo to-err >&2; exit 0"},
		Stdin:  strings.NewReader("from stdin\n"),
		Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "from stdin\n" || stderr.String() != "to-err\n" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}

	tests := []struct {
		script     string
		wantStatus int
		wantSignal string
	}{
		{"exit 3", 3, ""},
		{"exit 100", 100, ""},
		{"kill -TERM $$", 128 + 15, "TERM"},
	}
	for _, tt := range tests {
		err := c.Run(ctx, Cmd{Argv: []string{"sh", "-c", tt.script}})
		var ee *ExitError
		if !errors.As(err, &ee) {
			t.Errorf("%s: Run = %v, want *ExitError", tt.script, err)
			continue
		}
		if ee.Status != tt.wantStatus || ee.Signal != tt.wantSignal {
			t.Errorf("%s: status %d signal %q, want %d %q", tt.script, ee.Status, ee.Signal, tt.wantStatus, tt.wantSignal)
		}
		if !strings.HasPrefix(err.Error(), "run on web: sh -c ") {
			t.Errorf("error %q does not name the node and command", err)
		}
	}
}

func TestExitErrorKeepsStderrTail(t *testing.T) {
	f := newFixture(t)
	c, _, _ := webClient(t, f)
	err := c.Run(context.Background(), Cmd{Argv: []string{"sh", "-c", `i=1; while [ $i -le 30 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 1`}})
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Run = %v", err)
	}
	lines := strings.Split(ee.Stderr, "\n")
	if len(lines) != 20 || lines[0] != "line 11" || lines[19] != "line 30" {
		t.Errorf("stderr tail = %q, want lines 11..30", lines)
	}
	if !strings.Contains(err.Error(), "exited with status 1; stderr:\nline 11\n") {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestRunRefusesNUL(t *testing.T) {
	f := newFixture(t)
	c, s, _ := webClient(t, f)
	err := c.Run(context.Background(), Cmd{Argv: []string{"rm", "-rf", "/tmp/x\x00/"}})
	if !errors.Is(err, ErrNUL) {
		t.Errorf("Run = %v, want ErrNUL", err)
	}
	err = c.Run(context.Background(), Cmd{Argv: []string{"true"}, Env: []string{"A=\x00"}})
	if !errors.Is(err, ErrNUL) {
		t.Errorf("Run with NUL in env = %v, want ErrNUL", err)
	}
	if n := len(s.Execs()); n != 0 {
		t.Errorf("%d commands reached the server", n)
	}
}

func TestRunEnv(t *testing.T) {
	f := newFixture(t)
	c, _, _ := webClient(t, f)
	var out bytes.Buffer
	val := "it's $HOME; `id`"
	err := c.Run(context.Background(), Cmd{
		Argv:   []string{"sh", "-c", `printf '%s|%s' "$PROFILE" "$DRY_ACTIVATE"`},
		Env:    []string{"PROFILE=" + val, "DRY_ACTIVATE=1"},
		Stdout: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != val+"|1" {
		t.Errorf("env arrived as %q", out.String())
	}
	for _, bad := range []string{"NOEQUALS", "1X=y", "A B=c"} {
		if err := c.Run(context.Background(), Cmd{Argv: []string{"true"}, Env: []string{bad}}); err == nil {
			t.Errorf("env entry %q accepted", bad)
		}
	}
}

// processGone reports whether pid has exited (a zombie counts: it runs
// nothing, and in a container nobody may reap it).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

func TestCancelKillsRemoteCommand(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("server refuses signals=%v", refuse), func(t *testing.T) {
			f := newFixture(t)
			dir := t.TempDir()
			s := f.server(remotetest.Options{Name: "web", Dir: dir, RefuseSignals: refuse})
			f.pin(s.KnownHosts())
			c := f.dial(direct("web", s))
			testCancelKills(t, c, dir)
		})
	}
}

func testCancelKills(t *testing.T, c *Client, dir string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pidFile := filepath.Join(dir, "pid")
	errc := make(chan error, 1)
	go func() {
		// The command traps TERM and HUP and keeps a child: only a KILL
		// of its whole process group ends both.
		errc <- c.Run(ctx, Cmd{Argv: []string{"sh", "-c", `trap '' TERM HUP; sleep 1000 & echo $! > pid.tmp; mv pid.tmp pid; wait`}})
	}()
	var pid int
	testenv.Eventually(t, 10*time.Second, "the remote command to start", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("remote sleep (pid %d) to be killed", pid), func() bool { return processGone(pid) })

	// The connection is still good for the next command.
	if _, err := c.Output(context.Background(), "true"); err != nil {
		t.Errorf("connection unusable after a cancelled command: %v", err)
	}
}

func TestCutConnectionFailsInsteadOfHanging(t *testing.T) {
	f := newFixture(t)
	f.dialer.KeepaliveInterval = 50 * time.Millisecond
	f.dialer.KeepaliveMax = 3
	c, s, _ := webClient(t, f)
	testenv.Eventually(t, 10*time.Second, "a keepalive to reach the server", func() bool { return s.Keepalives() > 0 })

	// A guard so that a hang fails the test instead of timing it out.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx, Cmd{Argv: []string{"sleep", "1000"}}) }()
	testenv.Eventually(t, 10*time.Second, "the command to start", func() bool { return len(s.Execs()) == 1 })
	s.Freeze()
	err := <-errc
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer to keepalive") {
		t.Errorf("Run on a cut connection = %v, want a lost-connection error from the keepalive", err)
	}
	select {
	case <-c.Done():
	default:
		t.Error("client not marked done after the link was cut")
	}
	if _, err := c.Output(ctx, "true"); err == nil || !strings.Contains(err.Error(), "no answer to keepalive") {
		t.Errorf("next Run = %v, want the lost-connection error", err)
	}
}

func TestCancelOnCutConnectionReturns(t *testing.T) {
	f := newFixture(t)
	f.dialer.KeepaliveInterval = -1 // only the context can end this
	c, s, _ := webClient(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx, Cmd{Argv: []string{"sleep", "1000"}}) }()
	testenv.Eventually(t, 10*time.Second, "the command to start", func() bool { return len(s.Execs()) == 1 })
	s.Freeze()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

func TestWriterFailureStopsCommand(t *testing.T) {
	f := newFixture(t)
	c, _, _ := webClient(t, f)
	boom := errors.New("importer died")
	err := c.Run(context.Background(), Cmd{Argv: []string{"sh", "-c", "while :; do echo data; done"}, Stdout: failingWriter{boom}})
	if !errors.Is(err, boom) {
		t.Errorf("Run = %v, want the writer's error", err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestNoGoroutinesLeftBehind(t *testing.T) {
	f := newFixture(t)
	s := f.server(remotetest.Options{Name: "web"})
	f.pin(s.KnownHosts())
	base := runtime.NumGoroutine()

	c, err := f.dialer.Dial(context.Background(), direct("web", s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Output(context.Background(), "echo", "x"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx, Cmd{Argv: []string{"sleep", "1000"}, Stdin: strings.NewReader("x")}) }()
	testenv.Eventually(t, 10*time.Second, "the command to start", func() bool { return len(s.Execs()) == 2 })
	cancel()
	<-errc
	c.Close()

	testenv.Eventually(t, 10*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

func TestUpload(t *testing.T) {
	f := newFixture(t)
	c, _, dir := webClient(t, f)
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	for _, name := range []string{"agent", "we'ird $(name) *\n;x"} {
		path := filepath.Join(dir, name)
		if err := c.Upload(context.Background(), bytes.NewReader(data), path, 0o750); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%q: uploaded %d bytes, file has %d different ones", name, len(data), len(got))
		}
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o750 {
			t.Errorf("%q: mode %v, want 0750", name, st.Mode().Perm())
		}
	}
	// Replacing an existing file works and leaves no temporary files.
	path := filepath.Join(dir, "agent")
	if err := c.Upload(context.Background(), strings.NewReader("v2"), path, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "v2" {
		t.Errorf("replaced file holds %q", got)
	}
	assertOnlyFiles(t, dir, "agent", "we'ird $(name) *\n;x")
}

func TestUploadFailureLeavesNoFile(t *testing.T) {
	f := newFixture(t)
	c, _, dir := webClient(t, f)
	path := filepath.Join(dir, "agent")

	broken := io.MultiReader(strings.NewReader("partial"), errReader{errors.New("local file vanished")})
	err := c.Upload(context.Background(), broken, path, 0o755)
	if err == nil || !strings.Contains(err.Error(), "local file vanished") {
		t.Errorf("Upload = %v, want the reader's error", err)
	}
	if !strings.HasPrefix(fmt.Sprint(err), "upload to web:"+path) {
		t.Errorf("error %q does not name node and path", err)
	}
	assertOnlyFiles(t, dir)

	err = c.Upload(context.Background(), strings.NewReader("x"), filepath.Join(dir, "missing-dir", "agent"), 0o755)
	if err == nil {
		t.Error("upload into a missing directory succeeded")
	}
	assertOnlyFiles(t, dir)
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

func TestAgentForwarding(t *testing.T) {
	f := newFixture(t)
	c, _, _ := webClient(t, f)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	list := Cmd{Argv: []string{exe}, Env: []string{helperEnv + "=agent-list"}, ForwardAgent: true, AgentSignatures: 1}

	if err := c.Run(context.Background(), list); err == nil || !strings.Contains(err.Error(), "no agent") {
		t.Errorf("forwarding without an agent = %v", err)
	}

	auth, err := LoadAuth(AuthSources{PrivateKeys: [][]byte{f.keyPEM}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ForwardAgent(auth.Agent()); err != nil {
		t.Fatal(err)
	}
	if err := c.ForwardAgent(auth.Agent()); err != nil {
		t.Errorf("setting the same agent again: %v", err)
	}
	if err := c.ForwardAgent(agent.NewKeyring()); err == nil {
		t.Error("a second, different agent accepted")
	}
	var out bytes.Buffer
	list.Stdout = &out
	if err := c.Run(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.signer.PublicKey())))
	if strings.TrimSpace(out.String()) != want {
		t.Errorf("the node's forwarded agent holds %q, want the deployer's key %q", out.String(), want)
	}
}

func TestLoadAuth(t *testing.T) {
	f := newFixture(t)
	s := f.server(remotetest.Options{Name: "web"})
	f.pin(s.KnownHosts())

	keyFile := filepath.Join(t.TempDir(), "deploy_key")
	if err := os.WriteFile(keyFile, f.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), f.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	agentSock := serveAgent(t, f.keyPEM)
	_, otherPEM := remotetest.NewKey(t)
	emptyHome := t.TempDir()

	tests := []struct {
		name    string
		src     AuthSources
		wantErr string
	}{
		{name: "in-memory key", src: AuthSources{PrivateKeys: [][]byte{f.keyPEM}}},
		{name: "key file", src: AuthSources{KeyFiles: []string{keyFile}}},
		{name: "agent", src: AuthSources{AgentSocket: agentSock}},
		{name: "home id_ed25519", src: AuthSources{Home: home}},
		{name: "agent with no good key, then home", src: AuthSources{AgentSocket: serveAgent(t, otherPEM), Home: home}},
		{name: "explicit key wins over agent", src: AuthSources{PrivateKeys: [][]byte{otherPEM}, AgentSocket: agentSock}, wantErr: "unable to authenticate"},
		{name: "nothing", src: AuthSources{Home: emptyHome}, wantErr: "no SSH credentials"},
		{name: "missing key file", src: AuthSources{KeyFiles: []string{keyFile + ".missing"}}, wantErr: "no such file"},
		{name: "garbage key", src: AuthSources{PrivateKeys: [][]byte{[]byte("not a key")}}, wantErr: "private key #1"},
		{name: "dead agent, nothing else", src: AuthSources{AgentSocket: filepath.Join(emptyHome, "nope")}, wantErr: "no SSH credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth, err := LoadAuth(tt.src)
			if err == nil {
				defer auth.Close()
				d := *f.dialer
				d.Auth = auth.Methods()
				var c *Client
				c, err = d.Dial(context.Background(), direct("web", s))
				if err == nil {
					_, err = c.Output(context.Background(), "true")
					c.Close()
				}
			}
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadAuthRefusesPassphraseKey(t *testing.T) {
	signer, _ := remotetest.NewKey(t)
	_ = signer
	_, priv, _ := ed25519Key(t)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = LoadAuth(AuthSources{PrivateKeys: [][]byte{pemEncode(block)}})
	if err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("LoadAuth = %v, want a passphrase error", err)
	}
	// In ~/.ssh it is skipped, not fatal, when something else works.
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "id_rsa"), pemEncode(block), 0o600)
	_, good := remotetest.NewKey(t)
	os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), good, 0o600)
	var notes []string
	if _, err := LoadAuth(AuthSources{Home: home, Logf: func(f string, a ...any) { notes = append(notes, fmt.Sprintf(f, a...)) }}); err != nil {
		t.Errorf("LoadAuth with one usable home key = %v", err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "id_rsa") {
		t.Errorf("notes = %q, want one about id_rsa", notes)
	}
}

// serveAgent runs an in-memory agent holding key on a socket.
func serveAgent(t *testing.T, keyPEM []byte) string {
	t.Helper()
	raw, err := ssh.ParseRawPrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: raw}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	testenv.Serve(t, "unix", sock, func(c net.Conn) { agent.ServeAgent(kr, c) })
	return sock
}

func TestGateTakesOutPidLine(t *testing.T) {
	tests := []struct {
		name    string
		writes  []string
		want    string
		wantPid int64
	}{
		{"marker first", []string{"\x1etether-pid 4242\nreal error\n"}, "real error\n", 4242},
		{"marker split across writes", []string{"\x1etether-p", "id 77", "\nx"}, "x", 77},
		{"noise from startup files first", []string{"welcome\n", "\x1etether-pid 9\n", "out\n"}, "welcome\nout\n", 9},
		{"no marker, partial line kept", []string{"sh: printf: not found\npartial"}, "sh: printf: not found\npartial", 0},
		{"marker only taken once", []string{"\x1etether-pid 5\n\x1etether-pid 6\n"}, "\x1etether-pid 6\n", 5},
		{"bad pid passed through", []string{"\x1etether-pid x\n"}, "\x1etether-pid x\n", 0},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		g := &gate{w: &out, sniff: true, tail: newTail(20), failed: make(chan error, 1), found: make(chan struct{})}
		for _, w := range tt.writes {
			g.Write([]byte(w))
		}
		g.flush()
		if out.String() != tt.want || g.pid.Load() != tt.wantPid {
			t.Errorf("%s: passed %q pid %d, want %q pid %d", tt.name, out.String(), g.pid.Load(), tt.want, tt.wantPid)
		}
		if strings.Contains(g.tail.String(), "tether-pid") != strings.Contains(tt.want, "tether-pid") {
			t.Errorf("%s: stderr tail %q", tt.name, g.tail.String())
		}
	}
}
