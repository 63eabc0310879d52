//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// confirmTimeout is the confirmation window of the rollback benchmark.
const confirmTimeout = 5 * time.Second

// benchRollback deploys releases that cut the deployer off (sshd killed,
// or the node's links taken down) to rpi, which sits behind frame1, with
// a short confirmation timeout, and measures from the agent's deadline to
// the previous system running again.
func benchRollback(ctx context.Context, b *bench) (*section, error) {
	variants := pick(b,
		[]string{fixture.CutSSH, fixture.CutSSH, fixture.CutSSH, fixture.LinkDown, fixture.LinkDown},
		[]string{fixture.CutSSH, fixture.LinkDown})
	s, err := b.startSandbox(ctx, testhost.Home, nil)
	if err != nil {
		return nil, err
	}
	defer s.close()
	rpi := s.fleet.Host(fixture.RPi)
	if _, err := s.prebuild(ctx, []string{fixture.RPi}, fixture.V1, fixture.CutSSH, fixture.LinkDown); err != nil {
		return nil, err
	}
	if _, err := s.deploy(ctx, runOpts{}, fixture.RPi); err != nil {
		return nil, err
	}
	v1, err := generation(rpi)
	if err != nil {
		return nil, err
	}

	t := &table{header: []string{"run", "variant", "deadline → rolling back", "deadline → rolled-back event", "deadline → v1 running (polled)", "deadline → tether exits", "tether exit", "rpi status"}}
	var restored []time.Duration
	for i, v := range variants {
		b.logf("rollback: run %d/%d, %s", i+1, len(variants), v)
		m, err := rollbackRun(ctx, s, rpi, v, v1.Toplevel)
		if err != nil {
			return nil, fmt.Errorf("run %d (%s): %w", i+1, v, err)
		}
		restored = append(restored, m.rolledBack)
		t.add(fmt.Sprint(i+1), v, millis(m.rollingBack), millis(m.rolledBack), millis(m.polled), millis(m.exited),
			fmt.Sprint(m.code), string(m.status))
	}
	return &section{
		setup: fmt.Sprintf("Home fleet; rpi (reached only through frame1) runs v1. Each run deploys a release whose activation cuts the deployer off "+
			"(cut-ssh: kills sshd; link-down: takes rpi's links down) with `tether deploy --confirm-timeout %s rpi`. "+
			"Times are from the deadline the agent announced (the `awaiting-confirmation` event's deadline in rpi's /tmp/tether/<deployId>/events.jsonl) "+
			"to: the agent starting the rollback (`rolling-back`), finishing it (`rolled-back`: the profile set back and v1's activation done), "+
			"/run/fixture/generation on rpi naming v1 again (polled from the runner every 10 ms), and the tether process exiting.", confirmTimeout),
		tables: []*table{t},
		notes: []string{fmt.Sprintf("Median deadline → rolled back: %s over %d runs; every run ended with rpi's /run/current-system on the v1 toplevel "+
			"and /run/fixture/generation naming v1. Event times are the agent's clock, the polled and exit times the runner's: the same machine.",
			millis(median(restored)), len(restored))},
	}, nil
}

type rollbackTimes struct {
	rollingBack, rolledBack, polled, exited time.Duration
	code                                    int
	status                                  deploy.Status
}

func rollbackRun(ctx context.Context, s *sandbox, rpi *testhost.Host, variant, v1 string) (rollbackTimes, error) {
	var m rollbackTimes
	if err := s.setVariant(variant, fixture.RPi); err != nil {
		return m, err
	}
	w := watchGeneration(rpi)
	r, err := s.tether(ctx, runOpts{}, "deploy", "--confirm-timeout", confirmTimeout.String(), fixture.RPi)
	back := w.stop()
	if err != nil {
		return m, err
	}
	m.code = r.code
	res, ok := r.result(fixture.RPi)
	if !ok {
		return m, fmt.Errorf("no report for rpi: %s", r)
	}
	m.status = res.Status
	if res.Status != deploy.StatusRolledBack || r.code == 0 {
		return m, fmt.Errorf("want rpi rolled back and a non-zero exit: %s", r)
	}
	id := res.DeployID
	if id == "" {
		id = r.report.DeployID
	}
	log, err := rpi.ReadFile(ctx, path.Join(agent.DeployDir(agent.StateDir(""), id), "events.jsonl"))
	if err != nil {
		return m, err
	}
	ev, err := parseEvents(log)
	if err != nil {
		return m, err
	}
	await, rolling, rolled := ev[agent.EventAwaitingConfirmation], ev[agent.EventRollingBack], ev[agent.EventRolledBack]
	if await == nil || rolled == nil || rolling == nil || await.Timeout == 0 {
		return m, fmt.Errorf("rpi's event log lacks awaiting-confirmation, rolling-back or rolled-back:\n%s", log)
	}
	// Both times are the node's: its deadline is the announcement plus
	// the wait it announced.
	deadline := await.Time.Add(await.Timeout.D())
	m.rollingBack = rolling.Time.Sub(deadline)
	m.rolledBack = rolled.Time.Sub(deadline)
	m.exited = r.started.Add(r.wall).Sub(deadline)
	if back.IsZero() {
		return m, fmt.Errorf("never saw rpi leave v1 and come back (tether: %s)", r)
	}
	m.polled = back.Sub(deadline)
	return m, expectVariant(rpi, fixture.V1, v1)
}

// parseEvents keeps the last event of each type in an event log.
func parseEvents(log []byte) (map[agent.EventType]*agent.Event, error) {
	out := map[agent.EventType]*agent.Event{}
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		e, err := agent.ParseEvent(sc.Bytes())
		if err != nil {
			return nil, err
		}
		out[e.Type] = &e
	}
	return out, sc.Err()
}

// genWatch polls a host's fixture generation from the runner and notes
// when it first leaves v1 and then first names v1 again.
type genWatch struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	left bool
	back time.Time
}

func watchGeneration(h *testhost.Host) *genWatch {
	w := &genWatch{done: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			g, err := generation(h)
			now := time.Now()
			if err == nil {
				w.mu.Lock()
				switch {
				case g.Variant != fixture.V1:
					w.left = true
				case w.left && w.back.IsZero():
					w.back = now
				}
				w.mu.Unlock()
			}
			select {
			case <-w.done:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// stop ends the polling and returns when v1 came back (zero if it did not).
func (w *genWatch) stop() time.Time {
	close(w.done)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.back
}
