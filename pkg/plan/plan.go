package plan

import (
	"sort"
	"time"
)

// SchemaVersion is the version of the Plan JSON shape; it changes only
// when a field is removed or changes meaning.
const SchemaVersion = 1

// Status says what could be planned for a node.
type Status string

const (
	StatusOK          Status = "ok"          // the new system differs; see Diff
	StatusNoChanges   Status = "no-changes"  // the node already runs the new system
	StatusUnreachable Status = "unreachable" // the node could not be queried
	StatusFresh       Status = "fresh"       // the node has no current system; everything is added
	StatusError       Status = "error"       // planning failed for another reason; see Error
	// StatusNotQueried: the node was deliberately not contacted (a pull
	// request from a fork never reaches the fleet); only the new system is
	// known. Error says why.
	StatusNotQueried Status = "not-queried"
)

// Plan is the whole fleet's plan: what `tether plan` prints and what the
// pull request comment is rendered from.
type Plan struct {
	SchemaVersion int    `json:"schemaVersion"`
	FlakeRef      string `json:"flakeRef"`
	// Commit is the revision the plan was made for, when known.
	Commit string `json:"commit,omitempty"`
	// Generated is supplied by the caller so that rendering is
	// reproducible.
	Generated time.Time  `json:"generated"`
	Nodes     []NodePlan `json:"nodes"`
}

// NodePlan is one node's part of a Plan.
type NodePlan struct {
	Node   string `json:"node"`
	Status Status `json:"status"`
	// CurrentSystem is the system the node runs now (empty when fresh or
	// unknown); NewSystem is the one the deploy would activate.
	CurrentSystem string `json:"currentSystem,omitempty"`
	NewSystem     string `json:"newSystem,omitempty"`
	Diff          *Diff  `json:"diff,omitempty"`
	// DryActivate is present only when dry-activate was asked for and
	// attempted.
	DryActivate *DryActivate `json:"dryActivate,omitempty"`
	// RebootFor names what of the new system differs from the system the
	// node booted and takes effect only at its next boot (BootLinks, in
	// that order); empty when nothing does or the booted system is
	// unknown.
	RebootFor []string `json:"rebootFor,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// BootLinks are the links of a NixOS system to what a live activation
// cannot replace: a change of any of them takes effect only at boot.
var BootLinks = []string{"kernel", "initrd", "kernel-modules", "systemd"}

// RebootFor lists the BootLinks whose targets differ between the system the
// node booted and the new one, given as link name → target. Nothing is
// known, so nothing is listed, when the booted system's links are unknown.
func RebootFor(booted, next map[string]string) []string {
	if len(booted) == 0 {
		return nil
	}
	var out []string
	for _, name := range BootLinks {
		if booted[name] != next[name] {
			out = append(out, name)
		}
	}
	return out
}

// Planned reports whether the node's plan says what a deploy would do
// there: false when it could not be queried, its planning failed, or its
// dry activation did.
func (n *NodePlan) Planned() bool {
	switch n.Status {
	case StatusUnreachable, StatusError:
		return false
	}
	return n.DryActivate == nil || n.DryActivate.Error == ""
}

// New assembles a Plan with its nodes in name order.
func New(flakeRef, commit string, generated time.Time, nodes []NodePlan) *Plan {
	p := &Plan{
		SchemaVersion: SchemaVersion,
		FlakeRef:      flakeRef,
		Commit:        commit,
		Generated:     generated,
		Nodes:         append([]NodePlan(nil), nodes...),
	}
	sort.SliceStable(p.Nodes, func(i, j int) bool { return p.Nodes[i].Node < p.Nodes[j].Node })
	return p
}

// NodeInput is what the caller gathered about one node.
type NodeInput struct {
	Node     string
	StoreDir string // "" for DefaultStoreDir
	// CurrentSystem is empty when the node has never been deployed.
	CurrentSystem  string
	CurrentClosure []Path
	NewSystem      string
	NewClosure     []Path
	// BootedLinks and NewLinks are the BootLinks of the system the node
	// booted and of the new one (name → target; absent when unknown).
	BootedLinks, NewLinks map[string]string
}

// ForNode diffs a node's current and new closures and sets the status:
// fresh when there is no current system (the diff then lists everything as
// added), no-changes when the node already runs the new system, error when
// a closure holds paths that are not store paths.
func ForNode(in NodeInput) NodePlan {
	np := NodePlan{Node: in.Node, CurrentSystem: in.CurrentSystem, NewSystem: in.NewSystem,
		RebootFor: RebootFor(in.BootedLinks, in.NewLinks)}
	before := in.CurrentClosure
	if in.CurrentSystem == "" {
		before = nil
	}
	d, err := DiffClosures(in.StoreDir, before, in.NewClosure)
	if err != nil {
		np.Status, np.Error = StatusError, err.Error()
		return np
	}
	np.Diff = &d
	switch {
	case in.CurrentSystem == "":
		np.Status = StatusFresh
	case in.CurrentSystem == in.NewSystem:
		np.Status = StatusNoChanges
	default:
		np.Status = StatusOK
	}
	return np
}

// Unreachable is the plan of a node that could not be queried.
func Unreachable(node, newSystem string, err error) NodePlan {
	return NodePlan{Node: node, Status: StatusUnreachable, NewSystem: newSystem, Error: errString(err)}
}

// Failed is the plan of a node whose planning failed for another reason
// (build or evaluation error).
func Failed(node string, err error) NodePlan {
	return NodePlan{Node: node, Status: StatusError, Error: errString(err)}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
