package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherdeploy/tether/pkg/fleet"
	"github.com/tetherdeploy/tether/pkg/nix"
)

// storeSim is the deployer's store for buildLocal's tests: outputs become
// valid when the test says, the realisation returns when the test says,
// and the commands are recorded.
type storeSim struct {
	mu      sync.Mutex
	valid   map[string]bool
	log     []string
	realise chan error
}

func newStoreSim() *storeSim {
	return &storeSim{valid: map[string]bool{}, realise: make(chan error, 1)}
}

func (s *storeSim) setValid(paths ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range paths {
		s.valid[p] = true
	}
}

func (s *storeSim) record(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, line)
}

func (s *storeSim) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// started waits until the realisation has started.
func (s *storeSim) started(t *testing.T) {
	t.Helper()
	for i := 0; !slices.ContainsFunc(s.commands(), func(c string) bool { return strings.HasPrefix(c, "realise") }); i++ {
		if i > 10000 {
			t.Fatalf("no realisation started: %q", s.commands())
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *storeSim) Run(ctx context.Context, argv []string, _ io.Reader, stdout, _ io.Writer) error {
	args := argv[1:]
	if i := slices.Index(args, "--add-root"); i >= 0 {
		args = args[:i]
	}
	switch {
	case slices.Contains(args, "--check-validity"):
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range args[2:] {
			if !s.valid[p] {
				fmt.Fprintln(stdout, p)
			}
		}
		return nil
	case slices.Contains(args, "--realise") && strings.HasSuffix(args[1], ".drv"):
		s.record("realise " + strings.Join(args[1:], " "))
		select {
		case err := <-s.realise:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	case slices.Contains(args, "--realise"):
		s.record("root " + strings.Join(args[1:], " "))
		return nil
	}
	return fmt.Errorf("storeSim: unexpected %q", argv)
}

func simNode(name string) *fleet.Node {
	return &fleet.Node{Name: name, Profiles: []*fleet.Profile{{Name: "system",
		DrvPath: "/nix/store/" + name + "-system.drv", OutPath: "/nix/store/" + name + "-system"}}}
}

// buildRun starts buildLocal on nodes and returns what it reports, as it
// reports it, and a channel closed when it returns.
func buildRun(ctx context.Context, sim *storeSim, opts Options, names ...string) (<-chan string, <-chan struct{}) {
	e := &Engine{Nix: &nix.Runner{Exec: sim}}
	var runs []*nodeRun
	for i, n := range names {
		runs = append(runs, e.newRun(simNode(n), i, opts))
	}
	reports := make(chan string, len(names))
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.buildLocal(ctx, runs, opts, func(r *nodeRun, err error) {
			if err != nil {
				reports <- r.node.Name + ": " + err.Error()
			} else {
				reports <- r.node.Name + ": built"
			}
		})
	}()
	return reports, done
}

func next(t *testing.T, reports <-chan string) string {
	t.Helper()
	select {
	case r := <-reports:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no report within 10s")
		return ""
	}
}

// The nodes' builds run in one realisation; each node is handed on, its
// outputs rooted first, as soon as they are valid, while the realisation
// still runs.
func TestBuildLocalHandsOnEachNodeWhenItsOutputsAreValid(t *testing.T) {
	sim := newStoreSim()
	reports, done := buildRun(context.Background(), sim, Options{GCRootDir: "/tmp/roots"}, "a", "b")
	sim.started(t)
	sim.setValid("/nix/store/a-system")
	if got := next(t, reports); got != "a: built" {
		t.Fatalf("first report %q, want a built", got)
	}
	if cmds := sim.commands(); !slices.Equal(cmds, []string{"realise /nix/store/a-system.drv /nix/store/b-system.drv", "root /nix/store/a-system"}) {
		t.Errorf("commands %q: want one realisation of both, and a rooted while it runs", cmds)
	}
	sim.setValid("/nix/store/b-system")
	sim.realise <- nil
	if got := next(t, reports); got != "b: built" {
		t.Errorf("second report %q, want b built", got)
	}
	<-done
}

// Nothing to build: no realisation, every node handed on at once.
func TestBuildLocalSkipsTheBuildWhenAllIsBuilt(t *testing.T) {
	sim := newStoreSim()
	sim.setValid("/nix/store/a-system", "/nix/store/b-system")
	reports, done := buildRun(context.Background(), sim, Options{GCRootDir: "/tmp/roots"}, "a", "b")
	<-done
	if a, b := next(t, reports), next(t, reports); a != "a: built" || b != "b: built" {
		t.Errorf("reports %q, %q", a, b)
	}
	if cmds := sim.commands(); !slices.Equal(cmds, []string{"root /nix/store/a-system /nix/store/b-system"}) {
		t.Errorf("commands %q, want the outputs rooted and nothing realised", cmds)
	}
}

// With keep-going nix builds what it can; the nodes whose outputs are
// valid are built, the others fail with the build's error.
func TestBuildLocalFailureWithKeepGoing(t *testing.T) {
	sim := newStoreSim()
	reports, done := buildRun(context.Background(), sim, Options{KeepGoing: true}, "a", "b")
	sim.started(t)
	sim.setValid("/nix/store/a-system")
	sim.realise <- errors.New("exit status 1")
	<-done
	got := []string{next(t, reports), next(t, reports)}
	slices.Sort(got)
	if got[0] != "a: built" || !strings.HasPrefix(got[1], "b: build: realise 2 derivations: ") || !strings.HasSuffix(got[1], "exit status 1") {
		t.Errorf("reports %q, want a built and b failed with the build's error", got)
	}
	if cmds := sim.commands(); len(cmds) == 0 || cmds[0] != "realise /nix/store/a-system.drv /nix/store/b-system.drv --keep-going" {
		t.Errorf("commands %q, want a realisation with --keep-going", cmds)
	}
}

// A stopped build reports nothing of the nodes it did not build.
func TestBuildLocalStoppedReportsNothingMore(t *testing.T) {
	sim := newStoreSim()
	ctx, cancel := context.WithCancel(context.Background())
	reports, done := buildRun(ctx, sim, Options{}, "a")
	sim.started(t)
	cancel()
	<-done
	select {
	case r := <-reports:
		t.Errorf("a stopped build reported %q", r)
	default:
	}
}
