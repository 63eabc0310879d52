package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	mu         sync.Mutex
	confirmErr error // why the last confirmation attempt failed
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
	deadline := time.Now().Add(2*a.req.ActivationTimeout.D() + a.req.ConfirmTimeout.D() + settleGrace)
	settle, cancel := context.WithDeadline(settle, deadline)
	defer cancel()

	if err := a.start(ctx); err != nil {
		return agent.Result{}, err
	}

	var (
		offset    int64
		confirmed sync.Once
		lastErr   error
		awaiting  time.Time
		lost      int
	)
	for {
		c, err := n.conn.client(settle)
		if err == nil {
			var res *agent.Result
			res, err = a.follow(settle, c, &offset, func(ev agent.Event) {
				switch ev.Type {
				case agent.EventAwaitingConfirmation:
					awaiting = time.Now()
					confirmed.Do(func() { go a.confirm(ctx, settle, ev.Deadline) })
				case agent.EventConfirmed:
					if !awaiting.IsZero() {
						n.res.Timings.Confirm += Seconds(time.Since(awaiting))
					}
				}
			})
			if res != nil {
				a.mu.Lock()
				if res.Status == agent.StatusRolledBack && a.confirmErr != nil {
					res.Reason += " (the deployer could not confirm: " + shortErr(a.confirmErr) + ")"
				}
				a.mu.Unlock()
				return *res, nil
			}
			n.conn.drop()
		}
		lastErr = err
		var ae *agent.Error
		if errors.As(err, &ae) && ae.Code == agent.CodeNotFound {
			return agent.Result{}, fmt.Errorf("%s: the agent never started: %w", a.label, err)
		}
		if sentTooMuch(err) {
			return agent.Result{}, fmt.Errorf("%w: stopped following %s: %w", errUncertain, a.label, err)
		}
		if settle.Err() != nil {
			return agent.Result{}, fmt.Errorf("%w: lost contact during %s and could not reconnect before %s: %v",
				errUncertain, a.label, deadline.Format(time.TimeOnly), lastErr)
		}
		if lost++; lost == 1 || lost%10 == 0 {
			n.emit(PhaseActivate, fmt.Sprintf("connection lost (%v); reconnecting until %s", shortErr(err), deadline.Local().Format(time.TimeOnly)))
		}
		select {
		case <-settle.Done():
		case <-time.After(time.Second):
		}
	}
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
	if deadline.IsZero() {
		deadline = time.Now().Add(a.req.ConfirmTimeout.D())
	}
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			n.emit(PhaseConfirm, "interrupted: not confirming; the node rolls back by itself")
			return
		}
		if time.Now().After(deadline) {
			return
		}
		err := a.confirmOnce(ctx, deadline)
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

func (a *activation) confirmOnce(ctx context.Context, deadline time.Time) error {
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
	case agent.EventProfileSet:
		n.emit(PhaseActivate, fmt.Sprintf("profile set to generation %d", ev.Generation))
	case agent.EventActivating:
		n.emit(PhaseActivate, "activating "+a.label)
	case agent.EventActivated:
		msg := "activation finished"
		if ev.RebootRequired {
			msg += " (reboot required)"
		}
		n.emit(PhaseActivate, msg)
	case agent.EventActivationFailed:
		n.emit(PhaseActivate, ev.Reason)
	case agent.EventAwaitingConfirmation:
		n.emit(PhaseConfirm, "waiting for confirmation until "+ev.Deadline.Local().Format(time.TimeOnly))
	case agent.EventConfirmed:
		n.emit(PhaseConfirm, "confirmed over a fresh connection")
	case agent.EventRollingBack:
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
