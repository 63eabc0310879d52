package app

import (
	"io"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
	"github.com/tetherdeploy/tether/pkg/deploy"
)

// Target is what every request shares: which fleet, which of its nodes,
// and how to reach them. The CLI fills it from flags, the Action from its
// inputs.
type Target struct {
	// Dir is the directory a relative Flake is taken from (the Action's
	// working-directory); "" means the current directory.
	Dir string
	// Flake is a directory holding flake.nix, or path:DIR; "" means ".".
	Flake string
	// Config is the tether.toml to read; "" means the one beside
	// flake.nix, if any.
	Config string
	// Nodes is the selection as the user wrote it: names, @tags, globs.
	// Empty means every node.
	Nodes []string

	// KeyFiles and Keys are private keys (files, contents); KnownHostsFiles
	// and KnownHosts pin host keys. Empty means the environment's and the
	// configuration's own (see Session).
	KeyFiles        []string
	Keys            [][]byte
	KnownHostsFiles []string
	KnownHosts      [][]byte
	// AgentsDir holds tether-agent-linux-<arch>; "" finds them.
	AgentsDir string

	// BuildHost, when set, builds every selected node there (a node name,
	// user@host[:port], or deploy.Local), overriding the configuration.
	BuildHost string
	// Parallel is the most nodes handled at once; 0 means the
	// configuration's concurrency.
	Parallel int
	// ConfirmTimeout overrides the nodes' confirmation timeout when
	// positive.
	ConfirmTimeout time.Duration
	// Who names the run on the nodes' locks; "" means user@host (and the
	// CI run, when there is one).
	Who string

	// Progress receives what happens while the request runs.
	Progress Progress
}

// Progress is where a running operation reports: the front end's live
// view or log. Every field may be nil.
type Progress struct {
	// Events receives each node's steps.
	Events deploy.Sink
	// BuildLog receives the output of local builds.
	BuildLog io.Writer
	// Selected is told the selected nodes once the fleet is loaded,
	// before anything runs.
	Selected func(nodes []string)
}

// PlanRequest asks what a deploy would change.
type PlanRequest struct {
	Target
	// Commit is the revision planned, shown in the plan.
	Commit string
	// DryActivate also copies each changed closure and runs its dry
	// activation on the node: code from the change runs there as root.
	DryActivate bool
	// NoTargets forbids contacting any node, SSH queries included (a pull
	// request from a fork): only the new closures are known, and they are
	// built on the deployer. NoTargetsReason says why, for the reader.
	NoTargets       bool
	NoTargetsReason string
}

// DeployRequest asks for a deploy.
type DeployRequest struct {
	Target
	// Action is switch (the default), boot, test or dry-activate.
	Action agent.Action
	// KeepGoing deploys the other nodes when one fails, instead of
	// rolling back the ones already deployed.
	KeepGoing bool
	// ActivationTimeout overrides the nodes' activation timeout when
	// positive.
	ActivationTimeout time.Duration
	// AllowFailedUnits keeps an activation in which units failed.
	AllowFailedUnits bool
	// Reboot boots the new systems once and commits them only when
	// confirmed from that boot (deploy.Options.Reboot).
	Reboot bool
	// Compress is auto (""), on or off.
	Compress deploy.Compression
}

// RollbackRequest asks for a rollback.
type RollbackRequest struct {
	Target
	// Generation is the profile generation to go back to; 0 means the one
	// before the current.
	Generation int
}

// StatusRequest asks where every node is.
type StatusRequest struct {
	Target
}
