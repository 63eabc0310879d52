package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
)

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	polls := 0
	f, returned := run(t, func(f *fakeT) {
		testenv.Eventually(f, time.Minute, "the third poll", func() bool {
			polls++
			return polls == 3
		})
	})
	if !returned || f.fatal != "" || polls != 3 {
		t.Errorf("returned %v after %d polls (fatal %q), want a return at the third poll", returned, polls, f.fatal)
	}
}

func TestEventuallyTimeoutSaysWhatItWaitedFor(t *testing.T) {
	start := time.Now()
	polls := 0
	f, returned := run(t, func(f *fakeT) {
		testenv.Eventually(f, 100*time.Millisecond, "rpi to run v1", func() bool {
			polls++
			return false
		})
	})
	if returned {
		t.Fatal("Eventually returned though the condition never held")
	}
	if want := "gave up after 100ms waiting for rpi to run v1"; f.fatal != want {
		t.Errorf("failure %q, want %q", f.fatal, want)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond || polls < 2 {
		t.Errorf("gave up after %s and %d polls, want at least the timeout and more than one poll", waited, polls)
	}
}

// cond runs on the caller's goroutine, so it may stop the test itself.
func TestEventuallyConditionMayStopTheTest(t *testing.T) {
	polls := 0
	f, returned := run(t, func(f *fakeT) {
		testenv.Eventually(f, time.Minute, "a process", func() bool {
			polls++
			f.Fatal("the process exited")
			return false
		})
	})
	if returned || f.fatal != "the process exited" || polls != 1 {
		t.Errorf("returned %v after %d polls with %q, want the condition's own failure at once", returned, polls, f.fatal)
	}
}

func TestContextEndsWithTheTest(t *testing.T) {
	var ctx context.Context
	t.Run("inner", func(t *testing.T) {
		ctx = testenv.Context(t, time.Hour)
		if ctx.Err() != nil {
			t.Fatalf("context done while the test runs: %v", ctx.Err())
		}
		if d, ok := ctx.Deadline(); !ok || time.Until(d) < 59*time.Minute {
			t.Errorf("deadline %v (%v), want an hour from now", d, ok)
		}
	})
	if ctx.Err() == nil {
		t.Error("context still live after its test ended")
	}
	short := testenv.Context(t, time.Millisecond)
	select {
	case <-short.Done():
	case <-time.After(10 * time.Second):
		t.Error("context outlived its timeout")
	}
}
