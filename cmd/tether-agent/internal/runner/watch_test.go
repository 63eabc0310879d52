package runner

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// waitModes are the two ways a file wait may end, each alone: a file watch
// with a poll that never fires (an hour, on a fake clock nobody advances),
// and polling with no watch at all (where inotify is missing or fails).
// Every wait of a deploy must end either way; if one depended on the poll,
// the first mode would hang until the test's context ends it.
var waitModes = []struct {
	name  string
	setup func(t *testing.T, r *Runner)
}{
	{"watched, never polled", func(t *testing.T, r *Runner) {
		if _, err := watchDir(t.TempDir()); err != nil {
			t.Skipf("no file watch here: %v", err)
		}
		r.PollInterval = time.Hour
	}},
	{"polled, not watched", func(t *testing.T, r *Runner) {
		r.watch = func(string, ...string) (*fileWatch, error) { return nil, errors.New("no watch in this test") }
	}},
}

// waitCtx bounds a test whose waits might never end: a wait that missed
// its change ends with the context instead of hanging the test.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// start waits for the runner's first event, the runner for the
// confirmation, confirm and follow for the runner's events.
func TestWaitsStartFollowConfirm(t *testing.T) {
	for _, mode := range waitModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t)
			mode.setup(t, h.r)
			ctx := waitCtx(t)
			_, newSys := h.oldAndNew(fakeSystem{}, false)
			var runner sync.WaitGroup
			h.r.Spawn = func(_ context.Context, argv, _ []string, _ string) error {
				runner.Go(func() {
					if _, err := h.r.Run(ctx, argv[len(argv)-1]); err != nil {
						t.Errorf("Run: %v", err)
					}
				})
				return nil
			}

			if _, err := h.r.Start(ctx, h.request("d-1", newSys), agent.DetachSetsid); err != nil {
				t.Fatalf("Start: %v", err)
			}
			dir := h.r.DeployDir("d-1")
			confirmed := make(chan error, 1)
			go func() { confirmed <- h.r.Confirm(ctx, dir, testToken) }()
			var out bytes.Buffer
			if err := h.r.Follow(ctx, dir, 0, &out); err != nil {
				t.Errorf("Follow: %v", err)
			}
			if err := <-confirmed; err != nil {
				t.Errorf("Confirm: %v", err)
			}
			runner.Wait()
			if got := agent.Steps(readEvents(t, dir)); !reflect.DeepEqual(got, evSuccess) {
				t.Errorf("events = %q", got)
			}
			if ctx.Err() != nil {
				t.Error("a wait ended only with the test's context")
			}
		})
	}
}
