package deploy

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/fleet"
)

// A node whose wall clock is an hour off either way — a board without a
// real-time clock before NTP, a mis-set zone — is confirmed like any
// other: the wait reaches the deployer as a duration and is measured on the
// deployer's own clock from when the announcement arrived. (Compared as a
// wall-clock deadline, a node an hour slow gave zero attempts.)
func TestConfirmationIgnoresTheNodesClock(t *testing.T) {
	for _, skew := range []time.Duration{-time.Hour, time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			n := &nodeRun{e: &Engine{}, node: &fleet.Node{Name: "rpi"}}
			var attempts atomic.Int32
			var last time.Time
			confirmed := make(chan struct{})
			a := &activation{n: n, req: agent.Request{ConfirmTimeout: agent.Duration(30 * time.Second)}, label: "system",
				confirmOnce: func(ctx context.Context, deadline time.Time) error {
					last = deadline
					if attempts.Add(1) < 2 {
						return errors.New("connection refused")
					}
					close(confirmed)
					return nil
				}}
			ctx := context.Background()
			now := time.Now()
			a.handle(ctx, ctx, agent.Event{Type: agent.EventAwaitingConfirmation, Time: now.Add(skew), Timeout: agent.Duration(5 * time.Second)})
			select {
			case <-confirmed:
			case <-time.After(10 * time.Second):
				t.Fatalf("not confirmed after %d attempts", attempts.Load())
			}
			if got := attempts.Load(); got != 2 {
				t.Errorf("%d attempts, want 2 (one failure, then success)", got)
			}
			if d := last.Sub(now); d < 4*time.Second || d > 6*time.Second {
				t.Errorf("attempts run until %s from the announcement, want the node's 5s wait", d)
			}
		})
	}
}

func TestConfirmDeadline(t *testing.T) {
	now := time.Now()
	req := agent.Request{ConfirmTimeout: agent.Duration(30 * time.Second)}
	tests := []struct {
		name string
		ev   agent.Event
		want time.Duration
	}{
		{"the announced wait", agent.Event{Timeout: agent.Duration(12 * time.Second), Time: now.Add(-3 * time.Hour)}, 12 * time.Second},
		{"no wait announced: the request's", agent.Event{Time: now.Add(3 * time.Hour)}, 30 * time.Second},
	}
	for _, tc := range tests {
		if got := confirmDeadline(now, tc.ev, req).Sub(now); got != tc.want {
			t.Errorf("%s: deadline %s after arrival, want %s", tc.name, got, tc.want)
		}
	}
}
