// Package remotetest provides an in-process SSH server for tests of code that
// uses pkg/remote: exec requests run with sh -c on the local machine,
// direct-tcpip forwarding lets servers act as jump hosts for each other, and
// signal, env, keepalive and agent-forwarding requests behave as a real
// server's do. It records what clients did so tests can assert on it.
package remotetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Options configure a Server.
type Options struct {
	// Name labels the server in logs.
	Name string
	// HostKey is the server's key; nil makes a fresh ed25519 key.
	HostKey ssh.Signer
	// ExtraHostKeys are offered too, as a server with several key types.
	ExtraHostKeys []ssh.Signer
	// AuthorizedKeys may log in (any user name). Empty refuses everyone.
	AuthorizedKeys []ssh.PublicKey
	// Hosts maps "host:port" as requested in direct-tcpip forwards to the
	// address actually dialled, standing in for the LAN's DNS: a target
	// named "rpi.lan:22" can be reached only through this server.
	Hosts map[string]string
	// Env is the environment of commands; nil gives a minimal PATH.
	Env []string
	// Dir is the working directory of commands; empty means the test's
	// temporary directory.
	Dir string
	// RefuseSignals makes the server ignore "signal" requests, as OpenSSH
	// does in sessions without privilege separation (every root login).
	RefuseSignals bool
}

// Exec is one command a client ran.
type Exec struct {
	User string
	// Command is the line as received. Lines from remote.Client.Run start
	// with a short prefix that reports the shell's pid; match the command
	// itself with strings.HasSuffix.
	Command string
}

// Server is a running in-process SSH server on 127.0.0.1.
type Server struct {
	opts    Options
	tb      testing.TB
	ln      net.Listener
	cfg     *ssh.ServerConfig
	hostKey ssh.Signer
	tmp     string

	mu         sync.Mutex
	closed     bool
	frozen     bool
	conns      map[*freezeConn]struct{}
	procs      map[int]struct{} // process groups of running commands
	execs      []Exec
	forwards   []string
	auths      int
	accepted   int
	keepalives int
	wg         sync.WaitGroup
}

// NewServer starts a server and stops it when the test ends.
func NewServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.HostKey == nil {
		opts.HostKey = NewSigner(tb)
	}
	if opts.Name == "" {
		opts.Name = "ssh"
	}
	if opts.Env == nil {
		opts.Env = []string{"PATH=/run/current-system/sw/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
	}
	s := &Server{
		opts:    opts,
		tb:      tb,
		hostKey: opts.HostKey,
		tmp:     tb.TempDir(),
		conns:   map[*freezeConn]struct{}{},
		procs:   map[int]struct{}{},
	}
	if s.opts.Dir == "" {
		s.opts.Dir = s.tmp
	}
	s.cfg = &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.mu.Lock()
			s.auths++
			s.mu.Unlock()
			for _, k := range opts.AuthorizedKeys {
				if string(k.Marshal()) == string(key.Marshal()) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, fmt.Errorf("key %s not authorized", ssh.FingerprintSHA256(key))
		},
	}
	s.cfg.AddHostKey(opts.HostKey)
	for _, k := range opts.ExtraHostKeys {
		s.cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("remotetest: listen: %v", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.accept()
	tb.Cleanup(s.Close)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// PublicKey is the server's host key.
func (s *Server) PublicKey() ssh.PublicKey { return s.hostKey.PublicKey() }

// KnownHosts returns a known_hosts line for the server under the given names
// ("host" or "host:port"); with no names, under its real address
// ("[127.0.0.1]:port").
func (s *Server) KnownHosts(names ...string) string {
	if len(names) == 0 {
		names = []string{s.Addr()}
	}
	var norm []string
	for _, n := range names {
		norm = append(norm, knownhosts.Normalize(n))
	}
	return knownhosts.Line(norm, s.PublicKey()) + "\n"
}

// AuthorizedKey is the host key in authorized_keys format, as a node's
// pinned hostKey is written.
func (s *Server) AuthorizedKey() string {
	return string(ssh.MarshalAuthorizedKey(s.PublicKey()))
}

// Execs returns the commands run so far.
func (s *Server) Execs() []Exec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Exec(nil), s.execs...)
}

// Forwards returns the "host:port" of every direct-tcpip request so far.
func (s *Server) Forwards() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.forwards...)
}

// Connections counts TCP connections accepted.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// AuthAttempts counts public keys offered by clients.
func (s *Server) AuthAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths
}

// Keepalives counts keepalive requests received.
func (s *Server) Keepalives() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keepalives
}

// Freeze makes every connection, current and future, a black hole: nothing
// more is read or answered, nothing is closed. It is what a dropped tunnel
// or a firewall losing state looks like to the client.
func (s *Server) Freeze() {
	s.mu.Lock()
	s.frozen = true
	for c := range s.conns {
		c.freeze()
	}
	s.mu.Unlock()
}

// Close stops the server, drops its connections and kills the commands
// still running.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	for pgid := range s.procs {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) logf(format string, args ...any) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if !closed {
		s.tb.Logf("remotetest %s: "+format, append([]any{s.opts.Name}, args...)...)
	}
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		fc := newFreezeConn(nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		if s.frozen {
			fc.freeze()
		}
		s.conns[fc] = struct{}{}
		s.accepted++
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(fc)
			fc.Close()
			s.mu.Lock()
			delete(s.conns, fc)
			s.mu.Unlock()
		}()
	}
}

func (s *Server) serve(nc net.Conn) {
	sconn, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
	if err != nil {
		s.logf("handshake: %v", err)
		return
	}
	defer sconn.Close()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for r := range reqs {
			if r.Type == "keepalive@openssh.com" {
				s.mu.Lock()
				s.keepalives++
				s.mu.Unlock()
			}
			// Refuse everything, as a real server refuses unknown
			// global requests: a refusal still proves it is alive.
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}()
	var wg sync.WaitGroup
	for nch := range chans {
		switch nch.ChannelType() {
		case "session":
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.session(sconn, nch)
			}()
		case "direct-tcpip":
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.forward(nch)
			}()
		default:
			nch.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
	wg.Wait()
}

func (s *Server) forward(nch ssh.NewChannel) {
	var req struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nch.ExtraData(), &req); err != nil {
		nch.Reject(ssh.ConnectionFailed, "bad request")
		return
	}
	want := net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port)))
	s.mu.Lock()
	s.forwards = append(s.forwards, want)
	s.mu.Unlock()
	addr := want
	if a, ok := s.opts.Hosts[want]; ok {
		addr = a
	}
	out, err := net.Dial("tcp", addr)
	if err != nil {
		nch.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nch.Accept()
	if err != nil {
		out.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{}, 2)
	go func() { io.Copy(ch, out); ch.CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(out, ch); closeWrite(out); done <- struct{}{} }()
	<-done
	<-done
	ch.Close()
	out.Close()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// session serves one session channel: env, auth-agent-req, signal and one
// exec request.
func (s *Server) session(sconn *ssh.ServerConn, nch ssh.NewChannel) {
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	var env []string
	var agentSock string
	var cmd *exec.Cmd
	exited := make(chan struct{})
	for req := range reqs {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) == nil {
				env = append(env, kv.Name+"="+kv.Value)
			}
			req.Reply(true, nil)
		case "auth-agent-req@openssh.com":
			sock, err := s.agentListener(sconn)
			if err != nil {
				s.logf("agent forwarding: %v", err)
				req.Reply(false, nil)
				continue
			}
			agentSock = sock
			req.Reply(true, nil)
		case "signal":
			var sig struct{ Name string }
			ssh.Unmarshal(req.Payload, &sig)
			if cmd != nil && cmd.Process != nil && !s.opts.RefuseSignals {
				if n, ok := signals[sig.Name]; ok {
					syscall.Kill(-cmd.Process.Pid, n)
				}
			}
			if req.WantReply {
				req.Reply(!s.opts.RefuseSignals, nil)
			}
		case "exec":
			var ex struct{ Command string }
			if cmd != nil || ssh.Unmarshal(req.Payload, &ex) != nil {
				req.Reply(false, nil)
				continue
			}
			s.mu.Lock()
			s.execs = append(s.execs, Exec{User: sconn.User(), Command: ex.Command})
			s.mu.Unlock()
			cmd = exec.Command("/bin/sh", "-c", ex.Command)
			cmd.Env = append(append([]string(nil), s.opts.Env...), env...)
			if agentSock != "" {
				cmd.Env = append(cmd.Env, "SSH_AUTH_SOCK="+agentSock)
			}
			cmd.Dir = s.opts.Dir
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := s.start(cmd, ch); err != nil {
				req.Reply(false, nil)
				return
			}
			req.Reply(true, nil)
			go func() {
				s.finish(cmd, ch)
				close(exited)
			}()
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	// The client closed the channel. Like a real server, do not kill a
	// command still running: only a signal does that.
	if cmd != nil {
		<-exited
	}
}

// start runs cmd with its stdio connected to the channel.
func (s *Server) start(cmd *exec.Cmd, ch ssh.Channel) error {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	if err := cmd.Start(); err != nil {
		return err
	}
	s.mu.Lock()
	s.procs[cmd.Process.Pid] = struct{}{}
	s.mu.Unlock()
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	return nil
}

// finish waits for cmd and reports its exit as a real server does.
func (s *Server) finish(cmd *exec.Cmd, ch ssh.Channel) {
	err := cmd.Wait()
	s.mu.Lock()
	delete(s.procs, cmd.Process.Pid)
	s.mu.Unlock()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			name := ""
			for n, v := range signals {
				if v == ws.Signal() {
					name = n
				}
			}
			ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}{Signal: name}))
			ch.Close()
			return
		}
	}
	status := uint32(0)
	if cmd.ProcessState != nil {
		status = uint32(cmd.ProcessState.ExitCode())
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], status)
	ch.SendRequest("exit-status", false, b[:])
	ch.Close()
}

var signals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE,
	"HUP": syscall.SIGHUP, "ILL": syscall.SIGILL, "INT": syscall.SIGINT,
	"KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE, "QUIT": syscall.SIGQUIT,
	"SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

// agentListener makes a socket whose connections are forwarded to the
// client's agent, as a server does for a session that asked for it.
func (s *Server) agentListener(sconn *ssh.ServerConn) (string, error) {
	dir, err := os.MkdirTemp(s.tmp, "agent")
	if err != nil {
		return "", err
	}
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return "", err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sconn.Wait()
		ln.Close()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch, reqs, err := sconn.OpenChannel("auth-agent@openssh.com", nil)
			if err != nil {
				c.Close()
				continue
			}
			go ssh.DiscardRequests(reqs)
			go func() {
				go func() { io.Copy(ch, c); ch.CloseWrite() }()
				io.Copy(c, ch)
				c.Close()
				ch.Close()
			}()
		}
	}()
	return sock, nil
}

// NewSigner makes a fresh ed25519 key.
func NewSigner(tb testing.TB) ssh.Signer {
	s, _ := NewKey(tb)
	return s
}

// NewKey makes a fresh ed25519 key and returns it with its private key file
// contents (OpenSSH format, no passphrase).
func NewKey(tb testing.TB) (ssh.Signer, []byte) {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "remotetest")
	if err != nil {
		tb.Fatal(err)
	}
	return signer, pem.EncodeToMemory(block)
}

// freezeConn is a connection that can be turned into a black hole.
type freezeConn struct {
	net.Conn
	mu     sync.Mutex
	frozen bool
	closed chan struct{}
	once   sync.Once
}

func newFreezeConn(c net.Conn) *freezeConn {
	return &freezeConn{Conn: c, closed: make(chan struct{})}
}

func (c *freezeConn) freeze() {
	c.mu.Lock()
	c.frozen = true
	c.mu.Unlock()
}

func (c *freezeConn) isFrozen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frozen
}

func (c *freezeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.isFrozen() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *freezeConn) Write(p []byte) (int, error) {
	if c.isFrozen() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *freezeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
