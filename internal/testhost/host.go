package testhost

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Host is one sandbox host.
type Host struct {
	Name string
	// IP is the address its sshd listens on (port 22).
	IP netip.Addr
	// SSHAddr is host:port to dial: the relay for a relayed host, IP:22
	// otherwise; for a host behind Via it is dialled from the jump host.
	SSHAddr string
	// Via names the jump host the runner must go through, "" if none.
	Via string
	// HostPublicKey is the host's sshd key, to pin.
	HostPublicKey ssh.PublicKey
	// Dir is the host's directory on the runner (nix/, run/, tmp/, etc/).
	Dir string
	// Netns is its network namespace (ip netns name).
	Netns string

	userpool   string     // the runner's build user pool, bind-mounted in; "" if none
	power      sync.Mutex // PowerCut and PowerOn, one at a time
	anchor     *exec.Cmd
	anchorIn   io.WriteCloser
	anchorDone chan struct{}
	anchorErr  error
	stderr     lockedBuffer
}

// lockedBuffer collects a child's stderr while others read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hostPath is the PATH commands get inside a host.
const hostPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// env is the whole environment of commands run in the host: nothing of the
// test process leaks in (its NIX_CONFIG would override the host's nix.conf).
func (h *Host) env() []string {
	return []string{
		"PATH=" + hostPath,
		"HOME=/root",
		"USER=root",
		"LOGNAME=root",
		"NIX_CONF_DIR=" + filepath.Join(h.Dir, "etc", "nix"),
	}
}

// startAnchor starts the process that holds the host's mount namespace (and
// sits in its network namespace) for the host's whole life. sshd and every
// Exec join its namespaces, so killing sshd does not lose its /nix, /run, /tmp,
// /var/lib, /boot or /root.
// Its stdin is a pipe from us: when we close it or die, it exits.
func (h *Host) startAnchor(ctx context.Context) error {
	cmd := exec.Command("nsenter", "--net="+filepath.Join(netnsDir, h.Netns), "--",
		"unshare", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", anchorScript, "sh", h.Dir, h.userpool)
	cmd.Dir = "/"
	cmd.Env = h.env()
	cmd.Stderr = &h.stderr
	// Its own process group: a terminal's ^C reaches us, and we tear down in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %s: start namespace holder: %w", h.Name, err)
	}
	h.anchor, h.anchorIn, h.anchorDone = cmd, in, make(chan struct{})
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line == "ready\n"
		_, _ = io.Copy(io.Discard, out)
		h.anchorErr = cmd.Wait()
		close(h.anchorDone)
	}()
	select {
	case ok := <-ready:
		if ok {
			return nil
		}
		<-h.anchorDone
		return &CmdError{Host: h.Name, Argv: cmd.Args[:6], Err: errors.Join(errors.New("namespace holder did not start"), h.anchorErr), Stderr: h.stderr.String()}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Command prepares argv to run inside the host's network and mount
// namespaces, as root, with the host's environment (PATH, HOME,
// NIX_CONF_DIR). Use it for stdin or streaming; Exec for the common case.
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	pid := -1
	if h.anchor != nil && h.anchor.Process != nil {
		pid = h.anchor.Process.Pid
	}
	args := append([]string{"--target", strconv.Itoa(pid), "--net", "--mount", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = h.env()
	cmd.Dir = "/"
	return cmd
}

// Alive reports whether the host's namespaces are still held.
func (h *Host) Alive() bool {
	if h.anchorDone == nil {
		return false
	}
	select {
	case <-h.anchorDone:
		return false
	default:
		return true
	}
}

// Exec runs argv inside the host and returns its stdout; a failure is a
// *CmdError with the stderr tail.
func (h *Host) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("exec: empty argv")
	}
	if !h.Alive() {
		return nil, fmt.Errorf("host %s: not running (namespace holder gone: %v)", h.Name, h.anchorErr)
	}
	cmd := h.Command(ctx, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &CmdError{Host: h.Name, Argv: argv, Err: err, Stderr: tail(stderr.Bytes())}
	}
	return stdout.Bytes(), nil
}

// ReadFile reads a file as the host sees it (its /run, /nix, /tmp).
func (h *Host) ReadFile(ctx context.Context, path string) ([]byte, error) {
	return h.Exec(ctx, "cat", "--", path)
}

// ReadLink reads a symlink as the host sees it, e.g. /run/current-system.
func (h *Host) ReadLink(ctx context.Context, path string) (string, error) {
	out, err := h.Exec(ctx, "readlink", "--", path)
	return strings.TrimSuffix(string(out), "\n"), err
}

// Pids lists the processes running in the host's network namespace.
func (h *Host) Pids() ([]int, error) {
	procs, err := scanProcs()
	if err != nil {
		return nil, err
	}
	var out []int
	for _, p := range procs {
		if p.netns == h.Netns {
			out = append(out, p.pid)
		}
	}
	slices.Sort(out)
	return out, nil
}

// SSHDPid is the pid in the host's /run/sshd.pid (0 if none).
func (h *Host) SSHDPid() int {
	b, err := os.ReadFile(filepath.Join(h.Dir, "run", "sshd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// StartSSHD runs the host's /run/testhost/sshd-start: sshd is listening when
// it returns.
func (h *Host) StartSSHD(ctx context.Context) error {
	_, err := h.Exec(ctx, "/run/testhost/sshd-start")
	return err
}

// StopSSHD kills the host's listening sshd and waits until it is gone.
// Sessions already open keep running, as they would on a real machine.
func (h *Host) StopSSHD(ctx context.Context) error {
	pid := h.SSHDPid()
	if pid <= 0 {
		return nil
	}
	if ino, ok := nsInode(pid, "net"); !ok || !h.ownsNetns(ino) {
		return nil // not running, or the pid is someone else's now
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("host %s: kill sshd %d: %w", h.Name, pid, err)
	}
	for {
		if _, ok := nsInode(pid, "net"); !ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("host %s: sshd %d still running: %w", h.Name, pid, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (h *Host) ownsNetns(ino uint64) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, h.Netns), &st); err != nil {
		return false
	}
	return st.Ino == ino
}
