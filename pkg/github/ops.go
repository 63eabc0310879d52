package github

import (
	"context"
	"time"

	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/plan"
)

// Operations is what `tether action` asks the rest of tether to do. The
// command line wires it to the real planner and deployer; tests use a fake.
// This package decides what to run and reports on it; it never touches a
// node itself.
type Operations interface {
	// Plan computes the plan of the selected nodes. A plan whose nodes
	// failed individually is returned with a nil error; the error is for
	// a run that produced no plan at all (the flake did not evaluate).
	Plan(ctx context.Context, req PlanRequest) (*plan.Plan, error)
	// Deploy deploys the selected nodes. It returns the report even when
	// nodes failed; a non-nil error with a nil report means nothing was
	// attempted (bad configuration, no nodes).
	Deploy(ctx context.Context, req DeployRequest) (*deploy.Report, error)
	// Rollback activates an earlier generation on the selected nodes,
	// under the same protection as a deploy.
	Rollback(ctx context.Context, req RollbackRequest) (*deploy.Report, error)
}

// Target is what every request shares: the flake, the selection and how to
// reach the nodes, all from the action's inputs.
type Target struct {
	// Dir is the directory holding the flake (the working-directory
	// input); "" means the current directory. Flake is resolved from it.
	Dir   string
	Flake string
	// Nodes is the selection as the user wrote it: names, @tags, globs.
	// Empty means every node.
	Nodes []string
	// SSHPrivateKey and KnownHosts are the contents of those inputs; nil
	// when not given (the configuration's own then apply).
	SSHPrivateKey []byte
	KnownHosts    []byte
	// ConfirmTimeout overrides the magic rollback's confirmation timeout
	// when non-zero.
	ConfirmTimeout time.Duration
	// BuildHost overrides where closures are built when not "".
	BuildHost string
	// Parallel is the most nodes handled at once; 0 means the configured
	// default.
	Parallel int
	// KeepGoing continues with the other nodes after one fails.
	KeepGoing bool
	// Who names this run on the targets' locks: "github:<repo> run <id>
	// by <actor>".
	Who string
	// Commit is the revision being planned or deployed.
	Commit string
	// Progress receives live progress lines and the per-node logs. Never
	// nil in requests made by RunAction.
	Progress *Progress
}

// PlanRequest asks for a plan.
type PlanRequest struct {
	Target
	// DryActivate copies the closures and runs switch-to-configuration
	// dry-activate on the nodes. Never set together with
	// NoTargetCommands.
	DryActivate bool
	// NoTargetCommands forbids running any command on the nodes, SSH
	// queries included: the pull request comes from a fork, so nothing
	// it controls may reach production. The plan is then made from what
	// is known without contacting the nodes.
	NoTargetCommands bool
}

// DeployRequest asks for a deploy.
type DeployRequest struct {
	Target
	// DryActivate runs a dry activation instead of a switch: the report's
	// action is then dry-activate and nothing changes on the nodes.
	DryActivate bool
}

// RollbackRequest asks for a rollback.
type RollbackRequest struct {
	Target
	// Generation is the profile generation to go back to; 0 means the one
	// before the current.
	Generation int
}
