package app

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/plan"
)

func TestDeployExitWithoutReport(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitFailed}, // no report and no reason is never success
		{Usage(errors.New("tether.toml:3: unknown key")), ExitUsage},
		{fmt.Errorf("load: %w", context.Canceled), ExitInterrupted},
		{errors.New("GC root directory: disk full"), ExitFailed},
	} {
		if got := DeployExit(nil, tc.err); got != tc.want {
			t.Errorf("DeployExit(nil, %v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestDeployExitErrorBesideAReport(t *testing.T) {
	ok := &deploy.Report{Results: []deploy.Result{{Node: "a", Status: deploy.StatusDeployed}}}
	if got := DeployExit(ok, errors.New("write report: disk full")); got != ExitFailed {
		t.Errorf("all deployed, but an error: %d, want %d", got, ExitFailed)
	}
	rolled := &deploy.Report{Results: []deploy.Result{{Node: "a", Status: deploy.StatusRolledBack}}}
	if got := DeployExit(rolled, errors.New("x")); got != ExitRolledBack {
		t.Errorf("a node rolled back and an error: %d, want %d (the node is the news)", got, ExitRolledBack)
	}
}

func TestPlanExit(t *testing.T) {
	node := func(s plan.Status, dryErr string) plan.NodePlan {
		n := plan.NodePlan{Node: "n", Status: s}
		if dryErr != "-" {
			n.DryActivate = &plan.DryActivate{Error: dryErr}
		}
		return n
	}
	for _, tc := range []struct {
		nodes []plan.NodePlan
		want  int
	}{
		{[]plan.NodePlan{node(plan.StatusOK, "-"), node(plan.StatusNoChanges, "-"), node(plan.StatusFresh, "")}, ExitOK},
		{[]plan.NodePlan{node(plan.StatusNotQueried, "-")}, ExitOK},
		{[]plan.NodePlan{node(plan.StatusOK, "-"), node(plan.StatusUnreachable, "-")}, ExitFailed},
		{[]plan.NodePlan{node(plan.StatusError, "-")}, ExitFailed},
		{[]plan.NodePlan{node(plan.StatusOK, "dry activation failed: exit 1")}, ExitFailed},
	} {
		if got := PlanExit(&plan.Plan{Nodes: tc.nodes}, nil); got != tc.want {
			t.Errorf("%+v: %d, want %d", tc.nodes, got, tc.want)
		}
	}
	if got := PlanExit(nil, Usage(errors.New("no flake.nix"))); got != ExitUsage {
		t.Errorf("no plan, usage error: %d", got)
	}
	if got := PlanExit(nil, context.Canceled); got != ExitInterrupted {
		t.Errorf("no plan, interrupted: %d", got)
	}
}

func TestStatusExit(t *testing.T) {
	if got := StatusExit([]deploy.NodeStatus{{Node: "a"}, {Node: "b"}}, nil); got != ExitOK {
		t.Errorf("all read: %d", got)
	}
	if got := StatusExit([]deploy.NodeStatus{{Node: "a"}, {Node: "b", Error: "unreachable"}}, nil); got != ExitFailed {
		t.Errorf("one unreadable: %d", got)
	}
}
