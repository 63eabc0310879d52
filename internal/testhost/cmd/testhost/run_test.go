//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/internal/testhost"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"frobnicate"},
		{"up"},
		{"up", "--state", "x", "--topology", "ring"},
		{"down"},
		{"relay", "--state", "x"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
	}
}

// TestUpRelayAndStop drives `up` as the demo does: wait for the state file,
// steer the relay through `relay`, stop with a signal (here: the context),
// and check that nothing is left.
func TestUpRelayAndStop(t *testing.T) {
	testhost.NeedHosts(t)
	state := filepath.Join(t.TempDir(), "state.json")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var upErr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"up", "--state", state, "--latency", "5ms"}, &bytes.Buffer{}, &upErr)
	}()
	var s testhost.State
	testenv.Eventually(t, 3*time.Minute, "up to write its state file", func() bool {
		var err error
		if s, err = testhost.ReadState(state); err == nil {
			return true
		}
		select {
		case code := <-done:
			t.Fatalf("up exited %d: %s", code, upErr.String())
		default:
		}
		return false
	})
	if len(s.Hosts) != 3 || s.Relay == "" || s.Control == "" || s.KnownHosts == "" {
		t.Errorf("state %+v", s)
	}
	if _, err := os.Stat(s.ClientKey); err != nil {
		t.Errorf("client key: %v", err)
	}
	kh, err := os.ReadFile(s.KnownHosts)
	if err != nil || !strings.Contains(string(kh), "[127.0.0.1]:") {
		t.Errorf("known_hosts %q, %v", kh, err)
	}

	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"relay", "--state", state, "cut"}, &out, &errb); code != 0 {
		t.Fatalf("relay cut: exit %d: %s", code, errb.String())
	}
	var st testhost.RelayStatus
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || !st.Cut || st.Latency != 5*time.Millisecond {
		t.Errorf("relay cut printed %q (%v)", out.String(), err)
	}

	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("up exited %d: %s", code, upErr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("up did not stop")
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file still there: %v", err)
	}
	left, err := testhost.Leftovers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if l.Run == s.Run {
			t.Errorf("left behind: %s", l)
		}
	}
}
