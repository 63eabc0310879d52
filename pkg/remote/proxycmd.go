package remote

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// expandProxyCommand substitutes %h, %p, %r, %n and %% in a proxy command.
// Values are quoted with Quote: a host name from a configuration file must
// stay one argument of the proxy program, whatever it contains.
func expandProxyCommand(tmpl string, e endpoint) (string, error) {
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(tmpl) {
			return "", fmt.Errorf("proxy command %q ends with a lone %%", tmpl)
		}
		i++
		switch tmpl[i] {
		case 'h':
			b.WriteString(Quote([]string{e.host}))
		case 'p':
			b.WriteString(strconv.Itoa(e.port))
		case 'r':
			b.WriteString(Quote([]string{e.user}))
		case 'n':
			b.WriteString(Quote([]string{e.name}))
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("proxy command %q: unknown token %%%c (known: %%h %%p %%r %%n %%%%)", tmpl, tmpl[i])
		}
	}
	return b.String(), nil
}

// proxyEnviron is the environment of a proxy command: this process's,
// without the credentials tether holds for itself or that the CI runner
// gave it (the action's inputs with the deploy key and the token,
// tether's own key, the runner's tokens). A proxy command is the user's
// own program and may need credentials of its own (a tunnel's service
// token), so unlike nix's allowlist this drops only what is known to be
// tether's or the runner's.
func proxyEnviron(environ []string) []string {
	out := make([]string, 0, len(environ)) // never nil: nil means inherit all
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "GITHUB_TOKEN", name == "GH_TOKEN", name == "TETHER_SSH_KEY", name == "TETHER_KNOWN_HOSTS",
			strings.HasPrefix(name, "INPUT_"), strings.HasPrefix(name, "ACTIONS_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}

// proxyConn is a net.Conn over a proxy command's stdin and stdout. The
// command runs in its own process group so that closing the connection also
// ends whatever it started.
type proxyConn struct {
	cmd    *exec.Cmd
	line   string
	r      *os.File // the command's stdout
	w      *os.File // the command's stdin
	stderr *tail
	addr   fakeAddr

	exited  chan struct{}
	waitErr error
	once    sync.Once
}

func startProxy(e endpoint) (*proxyConn, error) {
	line, err := expandProxyCommand(e.proxyCommand, e)
	if err != nil {
		return nil, err
	}
	// As ssh does: the user's command line, run by the shell, with exec so
	// the proxy program itself is the process we signal.
	cmd := exec.Command("/bin/sh", "-c", "exec "+line)
	cmd.Env = proxyEnviron(os.Environ())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	startErr := cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if startErr != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start proxy command %q: %w", line, startErr)
	}
	p := &proxyConn{
		cmd: cmd, line: line, r: outR, w: inW,
		stderr: newTail(20),
		addr:   fakeAddr(e.addr()),
		exited: make(chan struct{}),
	}
	go func() {
		io.Copy(p.stderr, errR)
		errR.Close()
	}()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proxyConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *proxyConn) Write(b []byte) (int, error) { return p.w.Write(b) }

// Close ends the proxy: its stdin is closed (a well-behaved proxy exits on
// EOF), then its process group gets SIGTERM and, if still there after a
// grace period, SIGKILL.
func (p *proxyConn) Close() error {
	p.once.Do(func() {
		p.w.Close()
		pgid := p.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(2 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.exited
		}
		p.r.Close()
	})
	return nil
}

// failure describes why the proxy stopped, for dial errors: a handshake
// that fails with EOF says nothing, the proxy's stderr usually does.
func (p *proxyConn) failure() error {
	select {
	case <-p.exited:
	case <-time.After(500 * time.Millisecond):
		return fmt.Errorf("proxy command %q", p.line)
	}
	msg := fmt.Sprintf("proxy command %q", p.line)
	if p.waitErr != nil {
		msg += " failed (" + p.waitErr.Error() + ")"
	} else {
		msg += " exited"
	}
	if s := p.stderr.String(); s != "" {
		msg += "; its stderr:\n" + s
	}
	return errors.New(msg)
}

func (p *proxyConn) LocalAddr() net.Addr  { return fakeAddr("proxy-command") }
func (p *proxyConn) RemoteAddr() net.Addr { return p.addr }

func (p *proxyConn) SetDeadline(t time.Time) error {
	return errors.Join(p.r.SetReadDeadline(t), p.w.SetWriteDeadline(t))
}
func (p *proxyConn) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p *proxyConn) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }
