package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/remote/remotetest"
)

// frontEnds runs the same deploy through the command line and through the
// Action, on one application layer over a fake engine whose report has the
// given statuses, and returns both exit codes.
type frontEnds struct {
	t     *testing.T
	flake string
	key   []byte
	keyF  string
	known string
	ev    *fleet.FakeEvaluator
}

func newFrontEnds(t *testing.T, nodes ...string) *frontEnds {
	t.Helper()
	dir := t.TempDir()
	ev, err := app.FakeFlake(dir, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	_, key := remotetest.NewKey(t)
	f := &frontEnds{t: t, flake: dir, key: key, ev: ev}
	f.keyF = filepath.Join(t.TempDir(), "id")
	f.known = filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(f.keyF, f.key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.known, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *frontEnds) app(rep func([]*fleet.Node) *deploy.Report) (*app.App, *app.FakeEngine) {
	eng := &app.FakeEngine{
		DeployReport: func(nodes []*fleet.Node, _ deploy.Options) *deploy.Report { return rep(nodes) },
		RollbackReport: func(nodes []*fleet.Node, _ deploy.RollbackOptions) *deploy.Report {
			return rep(nodes)
		},
	}
	a := &app.App{Eval: f.ev, Engine: func(*app.Session, deploy.Sink) app.Engine { return eng }}
	return a, eng
}

// cli runs `tether <args> --flake ...` and returns the exit code and stderr.
func (f *frontEnds) cli(a *app.App, args ...string) (int, string) {
	env := Env{"HOME=" + f.t.TempDir(), "USER=tester", "TETHER_AGENTS_DIR=" + f.t.TempDir()}
	a.Getenv = env.Get
	var out, errb bytes.Buffer
	full := append([]string{"tether"}, args[0], "--flake", f.flake, "--ssh-key", f.keyF, "--known-hosts", f.known)
	code := RunApp(context.Background(), a, append(full, args[1:]...), env, &out, &errb)
	return code, errb.String() + out.String()
}

// action runs `tether action` with command (deploy or rollback) and returns
// the exit code and the job log.
func (f *frontEnds) action(a *app.App, command string, nodes ...string) (int, string) {
	env := Env{"HOME=" + f.t.TempDir(), "USER=runner", "TETHER_AGENTS_DIR=" + f.t.TempDir(),
		"GITHUB_EVENT_NAME=workflow_dispatch", "GITHUB_REPOSITORY=o/r", "GITHUB_SHA=0123456789abcdef0123456789abcdef01234567",
		"INPUT_COMMAND=" + command, "INPUT_FLAKE=" + f.flake, "INPUT_NODES=" + strings.Join(nodes, " "),
		"INPUT_SSH-PRIVATE-KEY=" + string(f.key), "INPUT_KNOWN-HOSTS=", "INPUT_COMMENT=false",
	}
	a.Getenv = env.Get
	var out, errb bytes.Buffer
	code := RunApp(context.Background(), a, []string{"tether", "action"}, env, &out, &errb)
	return code, errb.String() + out.String()
}

func reportOf(nodes []*fleet.Node, interrupted bool, statuses ...deploy.Status) *deploy.Report {
	rep := &deploy.Report{Interrupted: interrupted}
	for i, n := range nodes {
		rep.Results = append(rep.Results, deploy.Result{Node: n.Name, Status: statuses[i]})
	}
	return rep
}

// TestExitCodes pins the exit code of a deploy for each outcome a user
// acts on, through both front ends.
func TestExitCodes(t *testing.T) {
	const weird = deploy.Status("half-deployed") // a status this build does not know
	for _, tc := range []struct {
		a, b        deploy.Status
		interrupted bool
		want        int
	}{
		{deploy.StatusDeployed, deploy.StatusDeployed, false, 0},
		{deploy.StatusDeployed, deploy.StatusRebootRequired, false, 0},
		{deploy.StatusDryActivated, deploy.StatusDryActivated, false, 0},
		{deploy.StatusDeployed, deploy.StatusFailed, false, 1},
		{deploy.StatusDeployed, deploy.StatusUnreachable, false, 1},
		{deploy.StatusFailed, deploy.StatusSkipped, false, 1},
		{deploy.StatusDeployed, deploy.StatusPending, false, 1},
		{deploy.StatusDeployed, weird, false, 1},
		{deploy.StatusRolledBack, deploy.StatusFailed, false, 3},
		{deploy.StatusRolledBack, deploy.StatusSkipped, false, 3},
		{deploy.StatusRolledBack, deploy.StatusUnreachable, false, 3},
		{deploy.StatusRolledBack, deploy.StatusUncertain, false, 4},
		{deploy.StatusUncertain, deploy.StatusDeployed, false, 4},
		// Interrupted: a node that rolled back or is uncertain is still the
		// news; nodes the interrupt kept from starting are not failures.
		{deploy.StatusDeployed, deploy.StatusSkipped, true, 130},
		{deploy.StatusSkipped, deploy.StatusSkipped, true, 130},
		{deploy.StatusDeployed, deploy.StatusDeployed, true, 130},
		{deploy.StatusRolledBack, deploy.StatusSkipped, true, 3},
		{deploy.StatusUncertain, deploy.StatusRolledBack, true, 4},
		{deploy.StatusFailed, deploy.StatusSkipped, true, 1},
		{weird, deploy.StatusSkipped, true, 1},
	} {
		name := fmt.Sprintf("%s,%s,interrupted=%v", tc.a, tc.b, tc.interrupted)
		f := newFrontEnds(t, "a", "b")
		rep := func(nodes []*fleet.Node) *deploy.Report { return reportOf(nodes, tc.interrupted, tc.a, tc.b) }
		a, _ := f.app(rep)
		if got, log := f.cli(a, "deploy"); got != tc.want {
			t.Errorf("%s: tether deploy exits %d, want %d\n%s", name, got, tc.want, log)
		}
		a, _ = f.app(rep)
		if got, log := f.action(a, "deploy"); got != tc.want {
			t.Errorf("%s: tether action exits %d, want %d\n%s", name, got, tc.want, log)
		}
	}
}

// TestFrontEndsAgreeOnEveryOutcome runs every pair of node statuses,
// interrupted or not, through deploy and rollback on both front ends: the
// command line and the Action must always end with the same code.
func TestFrontEndsAgreeOnEveryOutcome(t *testing.T) {
	statuses := []deploy.Status{
		deploy.StatusPending, deploy.StatusDeployed, deploy.StatusRebootRequired, deploy.StatusDryActivated,
		deploy.StatusRolledBack, deploy.StatusFailed, deploy.StatusUnreachable, deploy.StatusUncertain,
		deploy.StatusSkipped, "no-such-status",
	}
	f := newFrontEnds(t, "a", "b")
	seen := map[int]bool{}
	for _, sa := range statuses {
		for _, sb := range statuses {
			for _, interrupted := range []bool{false, true} {
				rep := func(nodes []*fleet.Node) *deploy.Report { return reportOf(nodes, interrupted, sa, sb) }
				for _, cmd := range []string{"deploy", "rollback"} {
					a, eng := f.app(rep)
					cli, clog := f.cli(a, cmd, "a", "b")
					a2, eng2 := f.app(rep)
					act, alog := f.action(a2, cmd, "a", "b")
					if cli != act {
						t.Errorf("%s %s,%s interrupted=%v: tether %s exits %d, tether action %d\n--- cli\n%s--- action\n%s",
							cmd, sa, sb, interrupted, cmd, cli, act, clog, alog)
					}
					if len(eng.Calls()) != 1 || len(eng2.Calls()) != 1 {
						t.Fatalf("%s: engine calls %v and %v, want one each", cmd, eng.Calls(), eng2.Calls())
					}
					seen[cli] = true
				}
			}
		}
	}
	for _, code := range []int{0, 1, 3, 4, 130} {
		if !seen[code] {
			t.Errorf("no outcome exited %d", code)
		}
	}
}

// TestUsageErrorsExit2OnBothFrontEnds: a configuration the fleet cannot be
// loaded from touches nothing and exits 2, from either front end.
func TestUsageErrorsExit2OnBothFrontEnds(t *testing.T) {
	f := newFrontEnds(t, "a")
	a, eng := f.app(func(n []*fleet.Node) *deploy.Report { return reportOf(n, false, deploy.StatusDeployed) })
	if code, log := f.cli(a, "deploy", "nosuchnode"); code != app.ExitUsage || !strings.Contains(log, "nosuchnode") {
		t.Errorf("cli: exit %d, want 2\n%s", code, log)
	}
	if code, log := f.action(a, "deploy", "nosuchnode"); code != app.ExitUsage || !strings.Contains(log, "nosuchnode") {
		t.Errorf("action: exit %d, want 2\n%s", code, log)
	}
	if calls := eng.Calls(); len(calls) != 0 {
		t.Errorf("the engine ran %v for a usage error", calls)
	}
}
