package github

import (
	"context"

	"github.com/tetherdeploy/tether/internal/app"
	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/plan"
)

// Operations is what `tether action` asks the rest of tether to do: the
// application layer (*app.App), or a fake in tests. This package decides
// what to run and reports on it; it never touches a node itself.
type Operations interface {
	// Plan computes the plan of the selected nodes. A plan whose nodes
	// failed individually is returned with a nil error; the error is for
	// a run that produced no plan at all (the flake did not evaluate).
	Plan(ctx context.Context, req app.PlanRequest) (*plan.Plan, error)
	// Deploy deploys the selected nodes. It returns the report even when
	// nodes failed; a non-nil error with a nil report means nothing was
	// attempted (bad configuration, no nodes).
	Deploy(ctx context.Context, req app.DeployRequest) (*deploy.Report, error)
	// Rollback activates an earlier generation on the selected nodes,
	// under the same protection as a deploy.
	Rollback(ctx context.Context, req app.RollbackRequest) (*deploy.Report, error)
}
