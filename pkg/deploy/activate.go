package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/remote"
)

// settleGrace is added to the time a node may take to finish on its own —
// activation, waiting for the confirmation, and a rollback's activation —
// to bound how long the deployer keeps trying to learn how it ended.
const settleGrace = 15 * time.Second

// errUncertain marks a node whose outcome the deployer could not learn.
var errUncertain = errors.New("state uncertain")

// conn is a node's long-lived connection, re-dialled when it drops.
type conn struct {
	dialer Dialer
	target remote.Target
	mu     sync.Mutex
	c      *remote.Client
}

func (s *conn) client(ctx context.Context) (*remote.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil {
		select {
		case <-s.c.Done():
			s.c.Close()
			s.c = nil
		default:
			return s.c, nil
		}
	}
	c, err := s.dialer.Dial(ctx, s.target)
	if err != nil {
		return nil, err
	}
	s.c = c
	return c, nil
}

// drop closes the connection so the next client call dials afresh.
func (s *conn) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil {
		s.c.Close()
		s.c = nil
	}
}

// activation runs one agent deploy on a node and follows it to its end.
type activation struct {
	n     *nodeRun
	home  *agentHome // whose agent runs it: the profile's user's
	req   agent.Request
	dir   string
	label string // what is activated, for messages: "system" or "rollback"
	// confirmOnce makes one confirmation attempt; nil is the real one
	// (a fresh connection, health checks, `confirm`).
	confirmOnce func(ctx context.Context, deadline time.Time) error

	// committing is set between `committing` and the end of phase 2, for
	// messages (the activation then is the boot default's).
	committing bool

	mu         sync.Mutex
	confirmErr error // why the last confirmation attempt failed
	// bootID is the node's boot ID when the deploy took its lock;
	// rebooting is set from the moment the agent announced a reboot of
	// its own (--reboot) until the node is back.
	bootID    string
	previous  string
	rebooting bool
	booted    bool
	awaiting  time.Time
	confirmed sync.Once
}

// run starts the agent's runner and follows its event log until the deploy
// ends. ctx is the run's context: when it is cancelled (the user pressed
// Ctrl-C) no confirmation is sent, and the node rolls back by itself; run
// still waits for that, on a context of its own, so the target is never
// left half way. The returned error is errUncertain (wrapped) when the end
// could not be learnt.
func (a *activation) run(ctx context.Context) (agent.Result, error) {
	n := a.n
	settle := context.WithoutCancel(ctx)
	budget := 2*a.req.ActivationTimeout.D() + a.req.ConfirmTimeout.D() + settleGrace
	if a.req.Reboot {
		// The boot (measured like an activation), and after it a second
		// confirmation and the commit.
		budget += 2*a.req.ActivationTimeout.D() + a.req.ConfirmTimeout.D()
	}
	deadline := time.Now().Add(budget)
	settle, cancel := context.WithDeadline(settle, deadline)
	defer cancel()

	if err := a.start(ctx); err != nil {
		return agent.Result{}, err
	}

	var (
		offset  int64
		lastErr error
		lost    int
	)
	for {
		c, err := n.conn.client(settle)
		if err == nil {
			var res *agent.Result
			res, err = a.follow(settle, c, &offset, func(ev agent.Event) { a.handle(ctx, settle, ev) })
			if res != nil {
				a.mu.Lock()
				if res.Status == agent.StatusRolledBack && a.confirmErr != nil && !res.Rebooted {
					res.Reason += " (the deployer could not confirm: " + shortErr(a.confirmErr) + ")"
				}
				a.mu.Unlock()
				return *res, nil
			}
			if rerr := a.rebootedWithoutEnd(settle, c, offset, err); rerr != nil {
				return agent.Result{}, rerr
			}
			n.conn.drop()
		}
		lastErr = err
		var ae *agent.Error
		if errors.As(err, &ae) && ae.Code == agent.CodeNotFound && offset == 0 {
			return agent.Result{}, fmt.Errorf("%s: the agent never started: %w", a.label, err)
		}
		if sentTooMuch(err) {
			return agent.Result{}, fmt.Errorf("%w: stopped following %s: %w", errUncertain, a.label, err)
		}
		if settle.Err() != nil {
			if a.isRebooting() || a.req.Reboot && !a.isBooted() {
				return agent.Result{}, fmt.Errorf("%w: %s did not come back within %s after rebooting into the new system (%v); "+
					"its boot default is still the previous system %s: a power cycle brings it back on it",
					errUncertain, n.node.Name, budget.Round(time.Second), shortErr(lastErr), orUnknown(a.previous))
			}
			return agent.Result{}, fmt.Errorf("%w: lost contact during %s and could not reconnect before %s: %v",
				errUncertain, a.label, deadline.Format(time.TimeOnly), lastErr)
		}
		if lost++; lost == 1 || lost%10 == 0 {
			what := "connection lost"
			if a.isRebooting() {
				what = "rebooting"
			}
			n.emit(PhaseActivate, fmt.Sprintf("%s (%v); reconnecting until %s", what, shortErr(err), deadline.Local().Format(time.TimeOnly)))
		}
		select {
		case <-settle.Done():
		case <-time.After(time.Second):
		}
	}
}

// handle acts on one event of the deploy's log as it arrives.
func (a *activation) handle(ctx, settle context.Context, ev agent.Event) {
	n := a.n
	switch ev.Type {
	case agent.EventLocked:
		a.mu.Lock()
		if a.bootID == "" {
			a.bootID = ev.BootID
		}
		a.mu.Unlock()
	case agent.EventPrevious:
		a.mu.Lock()
		a.previous = ev.Path
		a.mu.Unlock()
	case agent.EventRebooting:
		a.mu.Lock()
		a.rebooting = true
		a.mu.Unlock()
	case agent.EventBooted:
		a.mu.Lock()
		a.rebooting, a.booted = false, true
		a.mu.Unlock()
	case agent.EventAwaitingConfirmation:
		// The wait is a duration, measured here from the moment the
		// event arrives: the node's clock may be anything.
		a.awaiting = time.Now()
		deadline := confirmDeadline(a.awaiting, ev, a.req)
		a.confirmed.Do(func() { go a.confirm(ctx, settle, deadline) })
	case agent.EventConfirmed:
		if !a.awaiting.IsZero() {
			n.res.Timings.Confirm += Seconds(time.Since(a.awaiting))
		}
	}
}

// confirmDeadline is when the deployer stops trying to confirm: the wait
// the agent announced, from when the announcement arrived here. Both ends
// measure it on their own monotonic clocks; a wall-clock deadline compared
// across machines gave a node 60 s slow with a 30 s timeout no attempt at
// all. Arriving late only makes the deployer try a little longer than the
// agent waits, and the agent then answers too-late.
func confirmDeadline(received time.Time, ev agent.Event, req agent.Request) time.Time {
	wait := ev.Timeout.D()
	if wait <= 0 {
		wait = req.WithDefaults().ConfirmTimeout.D()
	}
	return received.Add(wait)
}

// isBooted reports whether the node came back from a reboot of this
// deploy (the runner after the boot said so).
func (a *activation) isBooted() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.booted
}

func (a *activation) isRebooting() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rebooting
}

// rebootedWithoutEnd tells, after `follow` failed, whether the node
// rebooted under the deploy and no runner can end it: its runner is gone
// and none took it up, or its log is gone. That is known at once from the
// boot ID, and reported as uncertain with what the node runs, instead of
// reconnecting until the deadline.
func (a *activation) rebootedWithoutEnd(ctx context.Context, c *remote.Client, offset int64, err error) error {
	var ae *agent.Error
	if !errors.As(err, &ae) || (ae.Code != agent.CodeRunnerGone && !(ae.Code == agent.CodeNotFound && offset > 0)) {
		return nil
	}
	a.mu.Lock()
	before := a.bootID
	a.mu.Unlock()
	st, serr := a.n.agentStatusOn(ctx, c, a.home, a.req.ProfilePath)
	if serr != nil || before == "" || st.BootID == "" || st.BootID == before {
		return nil
	}
	return fmt.Errorf("%w: %s rebooted during %s (its boot ID changed) and the deploy could not be ended there: %v; it runs %s",
		errUncertain, a.n.node.Name, a.label, shortErr(err), orUnknown(st.CurrentSystem))
}

func orUnknown(s string) string {
	if s == "" {
		return "no system it reports"
	}
	return s
}

// start launches the detached runner. A connection that fails during start
// leaves it unknown whether the runner started; following the deploy's log
// tells (an absent log means it did not).
func (a *activation) start(ctx context.Context) error {
	n := a.n
	body, err := json.Marshal(a.req)
	if err != nil {
		return err
	}
	c, err := n.conn.client(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	var out bytes.Buffer
	err = c.Run(ctx, remote.Cmd{
		Argv:   a.home.argv(agent.StartArgv(a.home.path, a.home.stateDir)),
		Stdin:  bytes.NewReader(body),
		Stdout: &out,
	})
	if err == nil {
		return nil
	}
	if rerr := agent.DecodeReply(out.Bytes()); rerr != nil {
		return fmt.Errorf("start %s: %w", a.label, rerr)
	}
	var ee *remote.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("start %s: %w", a.label, err)
	}
	n.emit(PhaseActivate, fmt.Sprintf("connection lost while starting (%v); checking whether the agent started", shortErr(err)))
	n.conn.drop()
	return nil
}

// follow streams the event log from *offset, calling on for each event,
// and returns the result once the deploy is done. A nil result with a nil
// error means the stream ended early (the connection dropped).
func (a *activation) follow(ctx context.Context, c *remote.Client, offset *int64, on func(agent.Event)) (*agent.Result, error) {
	pr, pw := io.Pipe()
	var stdout bytes.Buffer // the agent's error reply, if any, when nothing was streamed
	runErr := make(chan error, 1)
	start := *offset
	go func() {
		err := c.Run(ctx, remote.Cmd{
			Argv:   a.home.argv(agent.FollowArgv(a.home.path, a.dir, start)),
			Stdout: io.MultiWriter(pw, &limitedBuffer{b: &stdout, max: 4096}),
		})
		pw.CloseWithError(err)
		runErr <- err
	}()
	defer func() {
		pr.Close()
		<-runErr
	}()
	er := agent.NewEventReader(pr, start)
	for {
		ev, err := er.Next()
		if err != nil {
			*offset = er.Offset()
			if rerr := agent.DecodeReply(stdout.Bytes()); rerr != nil && er.Offset() == start {
				return nil, rerr
			}
			if errors.Is(err, io.EOF) {
				return nil, errors.New("event stream ended before the deploy did")
			}
			return nil, err
		}
		*offset = er.Offset()
		a.show(ev)
		on(ev)
		if ev.Terminal() {
			if ev.Result == nil {
				return &agent.Result{Status: ev.Status, Error: ev.Error, Reason: ev.Reason}, nil
			}
			return ev.Result, nil
		}
	}
}

// confirm proves the node can still be reached after the activation by
// confirming over a fresh connection: new TCP and handshakes through every
// hop, because an old connection can outlive a firewall that now drops new
// ones. It retries until the agent's deadline; the agent rolls back by
// itself when no confirmation arrives.
func (a *activation) confirm(ctx, settle context.Context, deadline time.Time) {
	n := a.n
	once := a.confirmOnce
	if once == nil {
		once = a.confirmFresh
	}
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			n.emit(PhaseConfirm, "interrupted: not confirming; the node rolls back by itself")
			return
		}
		if time.Now().After(deadline) {
			return
		}
		err := once(ctx, deadline)
		a.mu.Lock()
		a.confirmErr = err
		a.mu.Unlock()
		if err == nil {
			return
		}
		var ae *agent.Error
		if errors.As(err, &ae) && (ae.Code == agent.CodeTooLate || ae.Code == agent.CodeRejected) {
			n.emit(PhaseConfirm, "confirmation refused: "+shortErr(err))
			return
		}
		if attempt == 1 || attempt%5 == 0 {
			n.emit(PhaseConfirm, fmt.Sprintf("confirmation attempt %d failed: %s (retrying until %s)", attempt, shortErr(err), deadline.Local().Format(time.TimeOnly)))
		}
		select {
		case <-settle.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// confirmFresh is one confirmation attempt over a fresh connection.
func (a *activation) confirmFresh(ctx context.Context, deadline time.Time) error {
	n := a.n
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	fresh, err := n.dialer.Dial(dctx, n.conn.target)
	if err != nil {
		return fmt.Errorf("fresh connection: %w", err)
	}
	defer fresh.Close()
	if err := n.checkHealth(dctx, fresh); err != nil {
		return err
	}
	var out bytes.Buffer
	err = fresh.Run(dctx, remote.Cmd{
		Argv:   a.home.argv(agent.ConfirmArgv(a.home.path, a.dir)),
		Stdin:  bytes.NewReader([]byte(a.req.Token + "\n")),
		Stdout: &out,
	})
	if err != nil {
		if rerr := agent.DecodeReply(out.Bytes()); rerr != nil {
			return rerr
		}
		return err
	}
	return nil
}

// show turns agent events into progress events.
func (a *activation) show(ev agent.Event) {
	n := a.n
	switch ev.Type {
	case agent.EventLog:
		n.sink(Event{Node: n.node.Name, Phase: PhaseActivate, Output: ev.Line, Stream: ev.Stream})
	case agent.EventReconciled:
		n.emit(PhaseActivate, fmt.Sprintf("deploy %s had not finished (its agent stopped, or the node lost power): %s%s",
			ev.DeployID, ev.Status, suffix(": ", ev.Reason)))
	case agent.EventProfileSet:
		if a.req.Reboot && !a.isBooted() && !a.committing {
			n.emit(PhaseActivate, fmt.Sprintf("new system staged as generation %d, to be booted once; the default stays the previous system", ev.Generation))
		} else {
			n.emit(PhaseActivate, fmt.Sprintf("profile set to generation %d", ev.Generation))
		}
	case agent.EventActivating:
		if a.req.Reboot && !a.isBooted() && !a.committing {
			n.emit(PhaseActivate, "writing the boot entries")
		} else if a.committing {
			n.emit(PhaseConfirm, "making it the boot default")
		} else {
			n.emit(PhaseActivate, "activating "+a.label)
		}
	case agent.EventActivated:
		msg := "activation finished"
		if ev.RebootRequired {
			msg += " (reboot required"
			if len(ev.RebootFor) > 0 {
				msg += " for a new " + strings.Join(ev.RebootFor, ", ")
			}
			msg += ")"
		}
		n.emit(PhaseActivate, msg)
	case agent.EventActivationFailed:
		n.emit(PhaseActivate, ev.Reason)
	case agent.EventAwaitingConfirmation:
		n.emit(PhaseConfirm, fmt.Sprintf("waiting for confirmation (the node waits %s)", ev.Timeout.D()))
	case agent.EventCommitting:
		a.committing = true
		n.emit(PhaseConfirm, "committing: setting the profile and the boot default")
	case agent.EventCommitted:
		n.emit(PhaseConfirm, fmt.Sprintf("committed: generation %d is the boot default", ev.Generation))
	case agent.EventRebooting:
		n.emit(PhaseActivate, fmt.Sprintf("rebooting into %s", ev.Path))
	case agent.EventBooted:
		n.emit(PhaseActivate, fmt.Sprintf("the node rebooted (new boot ID); it runs %s", orUnknown(ev.Running)))
	case agent.EventConfirmed:
		n.emit(PhaseConfirm, "confirmed over a fresh connection")
	case agent.EventRollingBack:
		a.committing = false
		n.emit(PhaseRollback, "rolling back: "+ev.Reason)
	case agent.EventRolledBack:
		n.emit(PhaseRollback, "rolled back to "+ev.To)
	case agent.EventRollbackFailed:
		n.emit(PhaseRollback, "rollback failed: "+ev.Error)
	case agent.EventWarning:
		n.emit(PhaseActivate, "warning: "+ev.Error)
	}
}

type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// shortErr is the first line of an error, for progress lines.
func shortErr(err error) string {
	s := err.Error()
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func suffix(sep, s string) string {
	if s == "" {
		return ""
	}
	return sep + s
}
