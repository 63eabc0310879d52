package testhost_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/internal/testenv"
	"github.com/tetherdeploy/tether/internal/testhost"
)

func TestRelayControl(t *testing.T) {
	r := newRelay(t)
	ctx := testenv.Context(t, 30*time.Second)
	sock := filepath.Join(t.TempDir(), "relay.sock")
	if err := testhost.ServeControl(ctx, r, sock); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cmd     []string
		wantErr bool
		check   func(testhost.RelayStatus) bool
	}{
		{[]string{"status"}, false, func(s testhost.RelayStatus) bool { return !s.Cut && s.Latency == 0 }},
		{[]string{"cut"}, false, func(s testhost.RelayStatus) bool { return s.Cut && r.IsCut() }},
		{[]string{"restore"}, false, func(s testhost.RelayStatus) bool { return !s.Cut && !r.IsCut() }},
		{[]string{"latency", "40ms"}, false, func(s testhost.RelayStatus) bool { return s.Latency == 40*time.Millisecond }},
		{[]string{"rate", "5000"}, false, func(s testhost.RelayStatus) bool { return s.RateUp == 5000 && s.RateDown == 5000 }},
		{[]string{"rates", "100", "200"}, false, func(s testhost.RelayStatus) bool { return s.RateUp == 100 && s.RateDown == 200 }},
		{[]string{"rate", "fast"}, true, nil},
		{[]string{"latency"}, true, nil},
		{[]string{"explode"}, true, nil},
	}
	for _, tt := range tests {
		st, err := testhost.Control(ctx, sock, tt.cmd...)
		if (err != nil) != tt.wantErr {
			t.Errorf("%v: error %v, want error %v", tt.cmd, err, tt.wantErr)
			continue
		}
		if tt.check != nil && !tt.check(st) {
			t.Errorf("%v: status %+v", tt.cmd, st)
		}
	}
}
