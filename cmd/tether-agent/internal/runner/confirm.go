package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// awaitConfirmation waits for the deployer to prove, over a fresh
// connection, that it still reaches the machine after the activation.
//
// The order is the point: any confirmation left from before is dropped, the
// deadline is armed and the watch is running BEFORE `awaiting-confirmation`
// is written. A deployer may answer that event within milliseconds; if the
// watch started after the announcement, a fast confirmation could land in
// the gap and be lost, and a good deploy would be rolled back. The watch
// only looks at whether the file exists (level, not edge), and the deadline
// path checks once more, so a confirmation written at any moment after the
// announcement and before the deadline is honoured. The file watch that
// wakes it (fileWatch) is made before the announcement as well; it only
// makes the watch look sooner than its next poll.
func (d *deploy) awaitConfirmation(ctx context.Context) (bool, string) {
	timeout := d.req.ConfirmTimeout.D()
	path := filepath.Join(d.dir, confirmFile)
	// Written before the new system was up, or left by an earlier attempt:
	// it proves nothing about this activation.
	removeConfirm(d.dir)

	deadline := d.r.Clock.After(timeout)
	files := d.r.watchFiles(d.dir, confirmFile)
	wctx, stopWatch := context.WithCancel(ctx)
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.watchConfirm(wctx, path, files, wake)
	}()
	stop := func() {
		stopWatch()
		wg.Wait()
		files.close()
	}

	// The wait crosses the wire as a duration: the deployer measures it on
	// its own clock, so a machine whose wall clock is off by an hour (a
	// board with no real-time clock, before NTP) is still confirmed.
	d.log.emit(agent.Event{Type: agent.EventAwaitingConfirmation, Timeout: agent.Duration(timeout)})

	for {
		select {
		case <-wake:
			if d.claimConfirm(path) {
				stop()
				return true, ""
			}
		case <-deadline:
			stop()
			if d.claimConfirm(path) {
				return true, ""
			}
			return false, fmt.Sprintf("no confirmation within %s", timeout)
		case <-ctx.Done():
			stop()
			if d.claimConfirm(path) {
				return true, ""
			}
			return false, "the agent was stopped before a confirmation arrived"
		}
	}
}

// watchConfirm signals wake whenever the confirm file exists: it looks
// when files reports a change in the deploy dir, and at every poll. It
// never touches the file: awaitConfirmation claims it, so nothing found
// here can be lost between the two.
func (d *deploy) watchConfirm(ctx context.Context, path string, files *fileWatch, wake chan<- struct{}) {
	for {
		if _, err := os.Lstat(path); err == nil {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-files.changed():
		case <-d.r.Clock.After(d.r.PollInterval):
		}
	}
}

// claimConfirm takes the confirm file (renaming it first, so a new one
// written meanwhile is not deleted unread) and checks its token in constant
// time. A wrong token is reported and waiting goes on.
func (d *deploy) claimConfirm(path string) bool {
	claimed := path + ".claimed"
	if err := os.Rename(path, claimed); err != nil {
		return false
	}
	got, err := readFileLimit(claimed, 4096)
	_ = os.Remove(claimed)
	if err != nil {
		d.log.emit(agent.Event{Type: agent.EventConfirmRejected, Reason: "unreadable confirmation: " + err.Error()})
		return false
	}
	sum := sha256.Sum256(bytes.TrimSpace(got))
	if subtle.ConstantTimeCompare(sum[:], d.tokenHash[:]) != 1 {
		d.log.emit(agent.Event{Type: agent.EventConfirmRejected, Reason: "wrong confirmation token"})
		return false
	}
	d.log.emit(agent.Event{Type: agent.EventConfirmed})
	return true
}

// Confirm is `tether-agent confirm --dir D`: it hands the token to the
// runner and waits for its verdict. It writes the file only once the runner
// announced that it waits (a confirmation from before the activation
// finished would prove nothing, and the runner drops it), so a deployer may
// call it as early as it likes, and again after a dropped connection.
func (r *Runner) Confirm(ctx context.Context, dir, token string) error {
	r = r.withDefaults()
	token = strings.TrimSpace(token)
	if !agent.ValidToken(token) {
		return &agent.Error{Code: agent.CodeUsage, Msg: "confirm: want the deploy's token (hex) on standard input"}
	}
	dir = filepath.Clean(dir)
	var written, confirmed bool
	var writtenAt int64 // log size when the file was written: later rejections are about it
	events := filepath.Join(dir, eventsFile)
	err := r.tail(ctx, dir, 0, func(_ []byte, e agent.Event, off int64) (bool, error) {
		switch e.Type {
		case agent.EventAwaitingConfirmation:
			if !written {
				if fi, err := os.Stat(events); err == nil {
					writtenAt = fi.Size()
				}
				if err := writeFileAtomic(filepath.Join(dir, confirmFile), []byte(token+"\n"), 0o600); err != nil {
					return true, fmt.Errorf("write confirmation: %w", err)
				}
				written = true
			}
		case agent.EventConfirmRejected:
			if written && off >= writtenAt {
				return true, &agent.Error{Code: agent.CodeRejected, Msg: "confirmation rejected: " + e.Reason}
			}
		case agent.EventConfirmed:
			confirmed = true
			return true, nil
		case agent.EventRollingBack, agent.EventDone:
			if written {
				// Nobody will read it: leave nothing behind.
				_ = os.Remove(filepath.Join(dir, confirmFile))
			}
			if e.Type == agent.EventRollingBack {
				return true, &agent.Error{Code: agent.CodeTooLate, Msg: "too late: the deploy is rolling back" + suffix(": ", e.Reason)}
			}
			return true, &agent.Error{Code: agent.CodeTooLate, Status: e.Status,
				Msg: fmt.Sprintf("too late: the deploy ended %s without a confirmation%s", e.Status, suffix(": ", e.Reason))}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if !confirmed {
		return &agent.Error{Code: agent.CodeInternal, Msg: "confirm: event log ended without a verdict"}
	}
	return nil
}

func suffix(sep, s string) string {
	if s == "" {
		return ""
	}
	return sep + s
}
