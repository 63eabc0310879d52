package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Cmd is one remote command.
type Cmd struct {
	// Argv is quoted with Quote; it runs under the remote login shell.
	Argv []string
	// Env entries ("NAME=value") are set for the command with env(1). They
	// are visible in the remote process list: pass secrets on Stdin.
	Env []string
	// Stdin is streamed to the command; nil gives it an empty stdin. As
	// with os/exec, a Stdin that blocks keeps one goroutine until it returns.
	Stdin io.Reader
	// Stdout and Stderr receive the output as it arrives; nil discards it.
	// Nothing is written to them after Run returns.
	Stdout, Stderr io.Writer
	// MaxStdout and MaxStderr bound what the node may send on each stream:
	// past the bound the command is stopped and Run returns an
	// *OutputLimitError, so a node answering with an endless stream costs
	// the deployer a bounded amount of memory and time. Zero means
	// DefaultMaxOutput; negative means no bound, for a stream whose reader
	// consumes it as it comes (a closure export) or shows it line by line
	// (a build log).
	MaxStdout, MaxStderr int64
	// ForwardAgent requests agent forwarding for this command; the client
	// must have been given an agent with Client.ForwardAgent. The agent
	// answers this command's requests only while Run runs, and signs at
	// most AgentSignatures times (see Client.ForwardAgent).
	ForwardAgent    bool
	AgentSignatures int
}

// DefaultMaxOutput bounds each output stream of a command that sets no
// bound of its own: far above what any query tether makes returns (the
// path infos of a chunk of a closure are a few MiB at most), low enough
// that a fleet of nodes answering at once cannot exhaust the deployer's
// memory.
const DefaultMaxOutput = 16 << 20

// OutputLimitError is a node that sent more than a command's bound.
type OutputLimitError struct {
	Node   string
	Argv   []string
	Stream string // "stdout" or "stderr"
	Limit  int64
}

func (e *OutputLimitError) Error() string {
	return fmt.Sprintf("node %s sent more than %s on %s answering %s", e.Node, humanLimit(e.Limit), e.Stream, shortCommand(e.Argv))
}

// humanLimit renders a bound: "64 MiB", "512 KiB", "100 bytes".
func humanLimit(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

func limitOf(max int64) int64 {
	if max == 0 {
		return DefaultMaxOutput
	}
	return max
}

// ExitError is a remote command that ran and failed.
type ExitError struct {
	Argv []string
	// Status is the exit status; 128+n when killed by signal n, as a shell
	// reports it.
	Status int
	// Signal is set when the command was killed by a signal ("KILL").
	Signal string
	// Stderr holds the last lines of the command's stderr.
	Stderr string
}

func (e *ExitError) Error() string {
	var b strings.Builder
	b.WriteString(shortCommand(e.Argv))
	if e.Signal != "" {
		fmt.Fprintf(&b, " killed by signal %s", e.Signal)
	} else {
		fmt.Fprintf(&b, " exited with status %d", e.Status)
	}
	if e.Stderr != "" {
		b.WriteString("; stderr:\n")
		b.WriteString(e.Stderr)
	}
	return b.String()
}

// ExitCode returns Status, for code that handles local and remote command
// failures alike.
func (e *ExitError) ExitCode() int { return e.Status }

// shortCommand is the command line for messages, cut when very long (a
// command may carry a list of thousands of store paths).
func shortCommand(argv []string) string {
	s := Quote(argv)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// pidPrefix starts every command line: the login shell reports its pid on
// stderr (the line is taken out before the caller sees stderr) and then
// becomes the command. sshd makes that shell a process group leader, so the
// pid is what Run kills on cancellation: OpenSSH refuses "signal" requests
// in sessions without privilege separation, which is every root login, and a
// closed channel does not stop a command that is not writing.
const pidPrefix = `printf '\036tether-pid %d\n' "$$" >&2; exec `

// pidMarker is the line pidPrefix prints, up to the pid.
const pidMarker = "\x1etether-pid "

// commandLine checks cmd and builds the line sent in the exec request.
func commandLine(cmd Cmd) (string, error) {
	if err := CheckArgv(cmd.Argv); err != nil {
		return "", err
	}
	if len(cmd.Env) == 0 {
		return pidPrefix + Quote(cmd.Argv), nil
	}
	argv := []string{"env"}
	for _, kv := range cmd.Env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || !envName.MatchString(name) {
			return "", fmt.Errorf("bad environment entry %q (want NAME=value)", kv)
		}
		if strings.IndexByte(kv, 0) >= 0 {
			return "", fmt.Errorf("environment entry %s: %w", name, ErrNUL)
		}
		argv = append(argv, kv)
	}
	if strings.Contains(cmd.Argv[0], "=") || strings.HasPrefix(cmd.Argv[0], "-") {
		return "", fmt.Errorf("command %q cannot follow environment entries", cmd.Argv[0])
	}
	return pidPrefix + Quote(append(argv, cmd.Argv...)), nil
}

// killGrace is how long Run waits, after a cancelled command was signalled,
// for its session to finish so the output so far is delivered.
const killGrace = 2 * time.Second

// Run runs cmd on the node and waits for it. A non-zero exit is an
// *ExitError. When ctx ends the command gets SIGKILL (the server delivers it
// to the command's process group) and the session is closed; Run then
// returns promptly with ctx's error, even over a connection that no longer
// answers.
func (c *Client) Run(ctx context.Context, cmd Cmd) error {
	node := c.target.label()
	line, err := commandLine(cmd)
	if err != nil {
		return fmt.Errorf("run on %s: %w", node, err)
	}
	if err := c.run(ctx, cmd, line); err != nil {
		var le *OutputLimitError
		if errors.As(err, &le) {
			return le // it names the node already
		}
		return fmt.Errorf("run on %s: %w", node, err)
	}
	return nil
}

func (c *Client) run(ctx context.Context, cmd Cmd, line string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sess, err := c.newSession(ctx)
	if err != nil {
		return err
	}

	stderrTail := newTail(20)
	writeErr := make(chan error, 2)
	over := func(stream string, max int64) *OutputLimitError {
		return &OutputLimitError{Node: c.target.label(), Argv: cmd.Argv, Stream: stream, Limit: max}
	}
	stdout := &gate{w: cmd.Stdout, failed: writeErr, max: limitOf(cmd.MaxStdout)}
	stdout.over = over("stdout", stdout.max)
	stderr := &gate{w: cmd.Stderr, tail: stderrTail, failed: writeErr, sniff: true, found: make(chan struct{}), max: limitOf(cmd.MaxStderr)}
	stderr.over = over("stderr", stderr.max)
	defer stdout.shut()
	defer stderr.shut()
	sess.Stdin = cmd.Stdin
	sess.Stdout = stdout
	sess.Stderr = stderr

	if cmd.ForwardAgent {
		fwd := c.forwarding()
		if fwd == nil {
			sess.Close()
			return errors.New("agent forwarding requested but the client has no agent (call ForwardAgent first)")
		}
		if cmd.AgentSignatures <= 0 {
			sess.Close()
			return errors.New("agent forwarding requested without a number of signatures to allow")
		}
		// Open before the request, close once the session is over: the
		// node can reach the agent only in between.
		defer fwd.open(cmd.AgentSignatures)()
		if err := agent.RequestAgentForwarding(sess); err != nil {
			sess.Close()
			return fmt.Errorf("request agent forwarding: %w", err)
		}
	}

	var runErr error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		if err := sess.Start(line); err != nil {
			runErr = fmt.Errorf("start %s: %w", shortCommand(cmd.Argv), err)
			return
		}
		runErr = sess.Wait()
	}()

	select {
	case <-finished:
		sess.Close()
		stderr.flush()
		return c.exitError(cmd.Argv, runErr, stderrTail)
	case <-ctx.Done():
		c.abort(ctx, sess, stderr, finished)
		return fmt.Errorf("%s: %w", shortCommand(cmd.Argv), context.Cause(ctx))
	case werr := <-writeErr:
		// Whoever reads the output is gone (a local importer failed,
		// say), or the node sent more than the command's bound: stop
		// the remote side instead of letting it run on.
		c.abort(ctx, sess, stderr, finished)
		var le *OutputLimitError
		if errors.As(werr, &le) {
			return le
		}
		return fmt.Errorf("%s: write output: %w", shortCommand(cmd.Argv), werr)
	}
}

// abort kills a command that is still running: a signal request (honoured
// where the server allows it) and a kill of its process group from a second
// session. It waits for the session to end for at most killGrace: the link
// may be dead, and the caller asked to stop. What it started finishes in the
// background within killTimeout.
func (c *Client) abort(ctx context.Context, sess *ssh.Session, stderr *gate, finished <-chan struct{}) {
	// Writing a request can block on a dead link, hence the goroutines.
	go sess.Signal(ssh.SIGKILL)
	c.goTracked(func() {
		// The pid line may still be on its way when the command was
		// cancelled right after it started.
		select {
		case <-stderr.found:
			c.killGroup(ctx, stderr.pid.Load())
		case <-finished:
		case <-c.done:
		case <-time.After(pidWait):
		}
	})
	select {
	case <-finished:
	case <-c.done:
	case <-time.After(killGrace):
	}
	go sess.Close()
}

// killGroup kills a cancelled command's process group from a new session.
// It runs even though ctx is done, briefly.
func (c *Client) killGroup(ctx context.Context, pid int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	p := strconv.FormatInt(pid, 10)
	err := c.Run(ctx, Cmd{Argv: []string{"sh", "-c", `kill -9 -"$1" 2>/dev/null || kill -9 "$1"`, "sh", p}})
	if err != nil {
		c.dialer.logf("kill cancelled command (process group %s) on %s: %v", p, c.target.label(), err)
	}
}

// killTimeout bounds killGroup: over a link that stopped answering it would
// otherwise wait for a session that never opens.
const killTimeout = 3 * time.Second

// pidWait is how long a cancelled Run waits for the command's pid line.
const pidWait = time.Second

// exitError turns a session's Wait error into what the caller can act on.
func (c *Client) exitError(argv []string, err error, stderr *tail) error {
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return &ExitError{Argv: argv, Status: ee.ExitStatus(), Signal: ee.Signal(), Stderr: stderr.String()}
	case errors.As(err, &missing), errors.Is(err, io.EOF):
		// The session ended without an exit status: usually the
		// connection died under it. Say so if that is what happened.
		select {
		case <-c.done:
			return fmt.Errorf("%s: %w", shortCommand(argv), c.Err())
		case <-time.After(time.Second):
		}
		return fmt.Errorf("%s: %w", shortCommand(argv), err)
	default:
		return fmt.Errorf("%s: %w", shortCommand(argv), err)
	}
}

// newSession opens a session, giving up when ctx ends or the connection
// dies (opening a channel waits for the server's answer, which a cut link
// never sends).
func (c *Client) newSession(ctx context.Context) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := c.ssh.NewSession()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			if err := c.Err(); err != nil {
				return nil, fmt.Errorf("open session: %w", err)
			}
			return nil, fmt.Errorf("open session: %w", r.err)
		}
		return r.s, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, fmt.Errorf("open session: %w", context.Cause(ctx))
	case <-c.done:
		return nil, fmt.Errorf("open session: %w", c.Err())
	}
}

// Output runs argv and returns its stdout, of at most DefaultMaxOutput
// bytes (an *OutputLimitError past that). A failure's stderr tail is in
// the *ExitError.
func (c *Client) Output(ctx context.Context, argv ...string) ([]byte, error) {
	var out bytes.Buffer
	err := c.Run(ctx, Cmd{Argv: argv, Stdout: &out})
	return out.Bytes(), err
}

// ForwardAgent makes a on the deployer answer agent requests from this
// node, for commands run with Cmd.ForwardAgent (a build host copying a
// closure straight to a LAN target authenticates with the deployer's key
// without the key leaving the runner).
//
// The node gets a gate in front of a, not a itself: it answers only while
// a command that asked for forwarding runs, signs at most as many times as
// those commands were granted (Cmd.AgentSignatures), and never adds,
// removes or locks keys. A node that keeps the forwarded socket open can
// then use the deploy key for its copy, and for nothing after it.
// Setting the same agent again is a no-op; another agent is refused.
func (c *Client) ForwardAgent(a agent.Agent) error {
	c.agentMu.Lock()
	defer c.agentMu.Unlock()
	if c.fwd != nil {
		if c.fwd.a == a {
			return nil
		}
		return errors.New("agent forwarding already set up on this client with another agent")
	}
	g := &forwardGate{a: a}
	if err := agent.ForwardToAgent(c.ssh, g); err != nil {
		return fmt.Errorf("forward agent to %s: %w", c.target.label(), err)
	}
	c.fwd = g
	return nil
}

func (c *Client) forwarding() *forwardGate {
	c.agentMu.Lock()
	defer c.agentMu.Unlock()
	return c.fwd
}

// gate passes writes through until shut, then drops them: a session left
// behind by a cancelled Run must not write into the caller's buffers after
// Run has returned. It counts what the node sent, and past max stops
// passing it on and reports over.
type gate struct {
	mu     sync.Mutex
	w      io.Writer
	tail   *tail
	off    bool
	failed chan<- error
	max    int64 // 0 or negative: no bound
	n      int64
	over   error

	// sniff: look for pidPrefix's line among the first lines, take it
	// out and record the pid.
	sniff bool
	line  []byte
	lines int
	pid   atomic.Int64
	found chan struct{} // closed when pid is set
}

// Sniffing stops after this many lines or bytes without the marker (a
// login shell's startup files might print something first).
const (
	sniffLines = 20
	sniffBytes = 4096
)

func (g *gate) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(p)
	for g.sniff && len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			g.line = append(g.line, p...)
			p = nil
			if len(g.line) > sniffBytes {
				g.sniff = false
				g.emit(g.line)
				g.line = nil
			}
			break
		}
		g.line = append(g.line, p[:i+1]...)
		p = p[i+1:]
		line := g.line
		g.line = nil
		g.lines++
		if rest, ok := bytes.CutPrefix(line, []byte(pidMarker)); ok {
			if pid, err := strconv.ParseInt(string(bytes.TrimSuffix(rest, []byte("\n"))), 10, 64); err == nil && pid > 1 {
				g.pid.Store(pid)
				close(g.found)
				g.sniff = false
				continue
			}
		}
		g.emit(line)
		if g.lines >= sniffLines {
			g.sniff = false
		}
	}
	if len(p) > 0 {
		g.emit(p)
	}
	return n, nil
}

// flush passes on a partial line held while sniffing.
func (g *gate) flush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.line) > 0 {
		g.emit(g.line)
		g.line = nil
	}
	g.sniff = false
}

func (g *gate) emit(p []byte) {
	if g.off {
		return
	}
	if g.max > 0 {
		// A byte past the bound stops the command, even when the bound
		// was met exactly by the write before.
		if room := g.max - g.n; int64(len(p)) > room {
			g.n = g.max
			if room > 0 {
				g.pass(p[:room])
			}
			g.off = true
			g.report(g.over)
			return
		}
		g.n += int64(len(p))
	}
	g.pass(p)
}

func (g *gate) pass(p []byte) {
	if g.tail != nil {
		g.tail.Write(p)
	}
	if g.w != nil {
		if _, err := g.w.Write(p); err != nil {
			// Report once and keep draining, so the session is not
			// stalled on a full window while Run stops it.
			g.w = nil
			g.report(err)
		}
	}
}

// report hands Run the first reason to stop the command; later ones are
// dropped, so a writer never blocks on a Run that has returned.
func (g *gate) report(err error) {
	select {
	case g.failed <- err:
	default:
	}
}

func (g *gate) shut() {
	g.mu.Lock()
	g.off = true
	g.mu.Unlock()
}
