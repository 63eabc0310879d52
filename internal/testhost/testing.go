package testhost

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
)

// StartT starts a fleet for a test and removes it (and checks that nothing of
// it is left) when the test ends, passed, failed or interrupted by SIGINT or
// SIGTERM. Where sandbox hosts cannot run (not root, tools missing) the test
// is skipped with a loud reason, or fails when TETHER_E2E=require.
func StartT(t testing.TB, opts Options) *Fleet {
	t.Helper()
	NeedHosts(t)
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

// NeedHosts passes where sandbox hosts can run, and otherwise skips the
// test loudly with what is missing, or fails it under TETHER_E2E=require
// (testenv.SkipOrFail). Tests that start fleets their own way (Start,
// a child process) call it first, as StartT does.
func NeedHosts(t testing.TB) {
	t.Helper()
	if err := Check(); err != nil {
		testenv.SkipOrFail(t, err.Error())
	}
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
