package testhost

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartT starts a fleet for a test and removes it (and checks that nothing of
// it is left) when the test ends, passed, failed or interrupted by SIGINT or
// SIGTERM. Where sandbox hosts cannot run (not root, tools missing) the test
// is skipped with a loud reason, or fails when TETHER_E2E=require.
func StartT(t testing.TB, opts Options) *Fleet {
	t.Helper()
	if err := Check(); err != nil {
		SkipOrFail(t, err.Error())
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	catchInterrupts()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("testhost: %v", err)
	}
	t.Cleanup(func() {
		// t.Logf may not be called after the test is done; Close logs.
		f.logf = func(string, ...any) {}
		if err := f.Close(); err != nil {
			t.Errorf("testhost: close run %s: %v", f.Run, err)
		}
		left, err := f.Leftovers(context.Background())
		if err != nil {
			t.Errorf("testhost: list leftovers of run %s: %v", f.Run, err)
		}
		for _, l := range left {
			t.Errorf("testhost: left behind: %s", l)
		}
	})
	return f
}

// SkipOrFail skips a test that needs sandbox hosts, saying so loudly, or
// fails it when the environment says end-to-end tests are required
// (TETHER_E2E=require, set by scripts/test.sh as root).
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("TETHER_E2E") == "require" {
		t.Fatalf("END-TO-END TEST CANNOT RUN (TETHER_E2E=require): %s", reason)
	}
	t.Skipf("!!! SKIPPING END-TO-END TEST: %s (set TETHER_E2E=require to make this a failure)", reason)
}

var interruptOnce sync.Once

// catchInterrupts closes every live fleet on SIGINT/SIGTERM and then dies of
// the same signal: a test binary stopped with ^C would otherwise skip every
// t.Cleanup and leave hosts running until the next run cleans them.
func catchInterrupts() {
	interruptOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			sig := <-ch
			_ = CloseAll()
			signal.Reset(syscall.SIGINT, syscall.SIGTERM)
			if s, ok := sig.(syscall.Signal); ok {
				_ = syscall.Kill(os.Getpid(), s)
			}
			os.Exit(1)
		}()
	})
}
