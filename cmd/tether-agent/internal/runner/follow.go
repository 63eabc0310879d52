package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// Follow is `tether-agent follow --dir D --offset N`: it copies the event
// log from byte offset N to w as it grows, whole lines only, and returns
// after the `done` line. A deployer whose connection dropped calls it again
// with the offset just past the last whole line it received (see
// agent.EventReader), and misses nothing.
//
// When the runner dies without writing `done` (killed, machine rebooted),
// Follow returns an agent.CodeRunnerGone error instead of waiting forever.
func (r *Runner) Follow(ctx context.Context, dir string, offset int64, w io.Writer) error {
	r = r.withDefaults()
	return r.tail(ctx, filepath.Clean(dir), offset, func(line []byte, _ agent.Event, _ int64) (bool, error) {
		_, err := w.Write(line)
		return false, err
	})
}

// tail calls fn for each whole line of D/events.jsonl from offset on, with
// the line's start offset, until fn stops it or the `done` line was handed
// over.
func (r *Runner) tail(ctx context.Context, dir string, offset int64, fn func(line []byte, e agent.Event, off int64) (bool, error)) error {
	path := filepath.Join(dir, eventsFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &agent.Error{Code: agent.CodeNotFound, Msg: fmt.Sprintf("no deploy at %s", dir), Err: err}
	}
	if err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	defer f.Close()

	// The prefix is read anyway: its `locked` event tells whether a runner
	// ever owned this deploy, and it checks the offset is a line boundary.
	locked := false
	if offset < 0 {
		return &agent.Error{Code: agent.CodeUsage, Msg: fmt.Sprintf("offset %d: negative", offset)}
	}
	if offset > 0 {
		prefix := make([]byte, offset)
		if _, err := io.ReadFull(f, prefix); err != nil {
			return &agent.Error{Code: agent.CodeUsage, Msg: fmt.Sprintf("offset %d: past the end of the event log", offset)}
		}
		if prefix[offset-1] != '\n' {
			return &agent.Error{Code: agent.CodeUsage, Msg: fmt.Sprintf("offset %d: not at the start of a line", offset)}
		}
		for _, line := range bytes.SplitAfter(prefix, []byte{'\n'}) {
			if e, err := agent.ParseEvent(line); err == nil {
				locked = locked || e.Type == agent.EventLocked
				if e.Terminal() {
					return nil
				}
			}
		}
	}

	// Watched before the first read: an event appended after that read
	// wakes the wait below.
	w := r.watchFiles(dir, eventsFile)
	defer w.close()
	var (
		pending   []byte
		pos       = offset
		buf       = make([]byte, 32<<10)
		goneSince time.Time
		lastProbe time.Time
		// launchedAt is when this follow started a runner to take the
		// deploy up (zero: it did not).
		launchedAt time.Time
		idleSince  = r.Clock.Now()
	)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			pending = append(pending, buf[:n]...)
			goneSince, idleSince = time.Time{}, r.Clock.Now()
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				line := pending[:i+1]
				e, perr := agent.ParseEvent(line)
				if perr != nil {
					return &agent.Error{Code: agent.CodeInternal, Msg: fmt.Sprintf("event log %s at offset %d", path, pos), Err: perr}
				}
				locked = locked || e.Type == agent.EventLocked
				stop, ferr := fn(line, e, pos)
				pos += int64(len(line))
				pending = pending[i+1:]
				if ferr != nil || stop {
					return ferr
				}
				if e.Terminal() {
					return nil
				}
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("follow: %w", err)
		}

		// Idle: is anyone still writing?
		now := r.Clock.Now()
		if now.Sub(lastProbe) >= time.Second || lastProbe.IsZero() {
			lastProbe = now
			if locked && launchedAt.IsZero() && r.takeUp(ctx, dir) {
				// Its runner died (killed, or the machine rebooted): a
				// runner started now ends the deploy, in this same log.
				launchedAt, goneSince = now, time.Time{}
			} else if r.runnerGone(dir, locked, now.Sub(idleSince)) && (launchedAt.IsZero() || now.Sub(launchedAt) >= r.StartWait) {
				if goneSince.IsZero() {
					goneSince = now
				} else if now.Sub(goneSince) >= r.GoneGrace {
					return &agent.Error{Code: agent.CodeRunnerGone, Msg: fmt.Sprintf("the agent running deploy %s stopped without finishing its event log (see %s)", filepath.Base(dir), filepath.Join(dir, agentLog))}
				}
			} else {
				goneSince = time.Time{}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.changed():
		case <-r.Clock.After(r.PollInterval):
		}
	}
}

// takeUp starts a runner (reconcile) for the deploy in dir when its own
// runner died before the end: the lock is free and lock.json still names
// the deploy. A runner that ends normally removes lock.json before it
// drops the lock, so this is never a deploy about to write its `done`.
func (r *Runner) takeUp(ctx context.Context, dir string) bool {
	stateDir := filepath.Dir(dir)
	st := unfinished(stateDir)
	if st == nil || st.DeployID != filepath.Base(dir) {
		return false
	}
	if err := r.startReconcile(ctx, stateDir, dir, st.DeployID); err != nil {
		fmt.Fprintf(r.Diag, "tether-agent: take up deploy %s: %v\n", st.DeployID, err)
		return false
	}
	return true
}

// runnerGone reports whether no process can still write this deploy's log:
// its runner held the lock and no longer does, or no runner ever appeared.
func (r *Runner) runnerGone(dir string, locked bool, idle time.Duration) bool {
	if !locked {
		return idle > r.StartWait+r.LockRetry
	}
	holder, err := probeLock(filepath.Dir(dir))
	if err != nil {
		return false
	}
	return holder == nil || holder.DeployID != filepath.Base(dir)
}
