package app

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tetherdeploy/tether/pkg/deploy"
	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
)

// FakeEngine is an Engine for tests of the front ends: it answers each
// operation with what it was given, records the calls, and panics on an
// operation it was given no answer for, so a test notices work it did not
// plan.
type FakeEngine struct {
	// DeployReport and RollbackReport answer Deploy and Rollback; the
	// report's Action and DeployID are filled from the options.
	DeployReport   func(nodes []*fleet.Node, opts deploy.Options) *deploy.Report
	RollbackReport func(nodes []*fleet.Node, opts deploy.RollbackOptions) *deploy.Report
	NodeStatus     func(nodes []*fleet.Node) []deploy.NodeStatus
	// Closures answers Build: each node's new closure (keyed by node
	// name); a node in BuildErrors failed to build.
	Closures    map[string][]nix.PathInfo
	BuildErrors map[string]error
	// BootLinks answers Builds.BootLinks: each node's new system's
	// kernel, initrd, kernel-modules and systemd links.
	BootLinks map[string]map[string]string
	// States answers Inspect; a node in InspectErrors is unreachable.
	States        map[string]deploy.NodeState
	InspectErrors map[string]error
	// Events is where the engine reports: set it from App.Engine's
	// events argument to see what the operations are told.
	Events deploy.Sink

	mu    sync.Mutex
	calls []string
}

// Calls lists the operations run so far, in order.
func (f *FakeEngine) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *FakeEngine) record(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, op)
}

func (f *FakeEngine) Deploy(_ context.Context, nodes []*fleet.Node, opts deploy.Options) *deploy.Report {
	f.record("deploy")
	if f.DeployReport == nil {
		panic("FakeEngine: unexpected Deploy")
	}
	rep := f.DeployReport(nodes, opts)
	rep.Action, rep.DeployID = deploy.Action(opts.Action), opts.DeployID
	return rep
}

func (f *FakeEngine) Rollback(_ context.Context, nodes []*fleet.Node, opts deploy.RollbackOptions) *deploy.Report {
	f.record("rollback")
	if f.RollbackReport == nil {
		panic("FakeEngine: unexpected Rollback")
	}
	rep := f.RollbackReport(nodes, opts)
	rep.Action, rep.DeployID = deploy.ActionRollback, opts.DeployID
	return rep
}

func (f *FakeEngine) Status(_ context.Context, nodes []*fleet.Node, _ int) []deploy.NodeStatus {
	f.record("status")
	if f.NodeStatus == nil {
		panic("FakeEngine: unexpected Status")
	}
	return f.NodeStatus(nodes)
}

func (f *FakeEngine) Build(context.Context, []*fleet.Node, deploy.Options) deploy.Builds {
	f.record("build")
	if f.Closures == nil && f.BuildErrors == nil {
		panic("FakeEngine: unexpected Build")
	}
	return fakeBuilds{f}
}

type fakeBuilds struct{ f *FakeEngine }

func (b fakeBuilds) Closure(_ context.Context, node, root string) ([]nix.PathInfo, error) {
	if err := b.f.BuildErrors[node]; err != nil {
		return nil, err
	}
	c, ok := b.f.Closures[node]
	if !ok {
		return nil, fmt.Errorf("FakeEngine: no closure for %s", node)
	}
	return c, nil
}

func (b fakeBuilds) Close(context.Context) {}

// BootLinks answers from BootLinks, keyed by node name.
func (b fakeBuilds) BootLinks(_ context.Context, node, _ string) map[string]string {
	return b.f.BootLinks[node]
}

func (f *FakeEngine) Inspect(_ context.Context, n *fleet.Node) (deploy.NodeState, error) {
	f.record("inspect " + n.Name)
	if err := f.InspectErrors[n.Name]; err != nil {
		return deploy.NodeState{}, err
	}
	st, ok := f.States[n.Name]
	if !ok {
		panic(fmt.Sprintf("FakeEngine: unexpected Inspect of %s", n.Name))
	}
	return st, nil
}

// FakeFlake writes a flake.nix into dir and returns an evaluator whose
// deploy.nodes hold the named nodes (hostname <name>.lan, one system
// profile each), for tests that load a fleet without nix.
func FakeFlake(dir string, nodes ...string) (*fleet.FakeEvaluator, error) {
	if err := os.WriteFile(filepath.Join(dir, "flake.nix"), []byte("{ outputs = { self }: { }; }\n"), 0o644); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString(`{"sshUser":"root","nodes":{`)
	for i, n := range nodes {
		if i > 0 {
			b.WriteString(",")
		}
		h := storeHash(n)
		fmt.Fprintf(&b, `%q:{"hostname":%q,"profiles":{"system":{"path":{"drvPath":"/nix/store/%s-%s.drv","out":"/nix/store/%s-%s","name":%q,"system":"x86_64-linux"}}}}`,
			n, n+".lan", h, n, h, n, n)
	}
	b.WriteString("}}")
	return &fleet.FakeEvaluator{Results: map[string]string{dir + "#deploy": b.String()}}, nil
}

// storeHash is a store path hash for name, in nix's base-32 alphabet.
func storeHash(name string) string {
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	sum := sha256.Sum256([]byte(name))
	var b strings.Builder
	for i := range 32 {
		b.WriteByte(alphabet[sum[i]%32])
	}
	return b.String()
}
