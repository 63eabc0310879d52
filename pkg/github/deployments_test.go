package github

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tetherdeploy/tether/pkg/deploy"
)

func TestStatusFor(t *testing.T) {
	long := strings.Repeat("a very long build error line ", 20)
	tests := []struct {
		action string
		res    deploy.Result
		state  string
		desc   string
	}{
		{"switch", deploy.Result{Status: deploy.StatusDeployed, Generation: 42}, "success", "deployed generation 42"},
		{"switch", deploy.Result{Status: deploy.StatusDeployed}, "success", "deployed"},
		{"switch", deploy.Result{Status: deploy.StatusRebootRequired, Generation: 9}, "success", "on generation 9; reboot required to finish"},
		{"switch", deploy.Result{Status: deploy.StatusRolledBack, Error: "activation failed\nexit status 2", Reason: ""}, "failure", "failed and rolled back: activation failed"},
		{"switch", deploy.Result{Status: deploy.StatusFailed, Error: "\n  build failed  \nlog"}, "failure", "failed: build failed"},
		{"switch", deploy.Result{Status: deploy.StatusUnreachable, Error: "dial: timeout"}, "failure", "unreachable: dial: timeout"},
		{"switch", deploy.Result{Status: deploy.StatusUncertain, Error: "lost contact"}, "error", "state uncertain, check the node: lost contact"},
		{"switch", deploy.Result{Status: deploy.StatusSkipped}, "error", "not attempted"},
		{"switch", deploy.Result{Status: "exploded"}, "error", "exploded"},
		{"rollback", deploy.Result{Status: deploy.StatusDeployed, Generation: 41}, "success", "rolled back to generation 41"},
		{"rollback", deploy.Result{Status: deploy.StatusRolledBack, Reason: "units failed"}, "failure", "rollback failed, node back on its previous system: units failed"},
	}
	for _, tt := range tests {
		state, desc := statusFor(&deploy.Report{Action: deploy.Action(tt.action)}, &tt.res)
		if state != tt.state || desc != tt.desc {
			t.Errorf("%s %s: %s %q, want %s %q", tt.action, tt.res.Status, state, desc, tt.state, tt.desc)
		}
	}
	_, desc := statusFor(&deploy.Report{Action: "switch"}, &deploy.Result{Status: deploy.StatusFailed, Error: long})
	if got := truncate(desc, maxDescription); utf8.RuneCountInString(got) != maxDescription || !strings.HasSuffix(got, "…") {
		t.Errorf("truncated description %q (%d characters)", got, utf8.RuneCountInString(got))
	}
	if truncate("short", maxDescription) != "short" {
		t.Error("a short description was changed")
	}
}
