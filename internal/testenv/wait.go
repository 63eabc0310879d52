package testenv

import (
	"context"
	"testing"
	"time"
)

// maxPause bounds the pause between two polls of Eventually.
const maxPause = 250 * time.Millisecond

// Eventually polls cond until it holds, and fails the test, saying what it
// waited for and how long, once timeout has passed without it. It polls
// often at first (10ms) and less often later (every 250ms): the conditions
// it serves range from a process that exits within milliseconds to a node
// that rolls back within a minute, and some cost a command in a sandbox
// host each time.
//
// Call it only from the test's own goroutine, as t.Fatal must be called:
// cond runs there too, so cond may itself stop the test with t.Fatal when
// the state it waits for can no longer come (the process it watches has
// exited).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 10 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPause)
	}
}

// Context is the test's context bounded by timeout: work started with it
// stops when the timeout passes or the test ends, whichever comes first,
// and the timer is released when the test ends.
func Context(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}
