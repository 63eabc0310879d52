//go:build linux

// Command bench measures tether on sandbox hosts (internal/testhost) with
// real nix, real sshd and real closures: parallel against sequential
// deploys, fleet scaling, overhead over a hand-made copy and activation,
// bytes over the tunnel, the time from a missed confirmation to the
// restored system, peak memory on both ends for a large closure, and what
// two-phase activation costs and how soon a power cut is reported.
//
// It is not part of `go test`: run it as root with bench/run.sh, which
// installs what it needs and keeps nix offline.
//
//	bench/run.sh [-quick] [-only NAME[,NAME]] [-out FILE] [-v] [NAME ...]
//
// Each scenario prints a table and writes its section of RESULTS.md (the
// date, the machine and the command are written beside the figures;
// sections of scenarios not run are kept).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tetherdeploy/tether/internal/e2e"
	"github.com/tetherdeploy/tether/internal/testhost"
)

// scenario is one benchmark.
type scenario struct {
	name  string
	title string
	run   func(ctx context.Context, b *bench) (*section, error)
}

// scenarios in the order they run and appear in RESULTS.md.
var scenarios = []scenario{
	{"parallel", "0. Parallel vs sequential deploy (Home fleet, 3 nodes)", benchParallel},
	{"scaling", "1. Fleet scaling (direct fleet, 1 to 16 hosts)", benchScaling},
	{"overhead", "2. Overhead over a hand-made copy and activation (frame1 through a home-like tunnel)", benchOverhead},
	{"tunnel", "3. Bytes over the tunnel for a v1 → v2 update of rpi", benchTunnel},
	{"rollback", "4. Missed confirmation → previous system restored", benchRollback},
	{"memory", "5. Peak memory, small vs large closure", benchMemory},
	{"plan", "6. Plan vs deploy of the fixture fleet", benchPlan},
	{"compress", "7. zstd on the wire: real machine code through a home-like tunnel", benchCompress},
	{"powercut", "8. Two-phase activation: its cost, and a power cut while awaiting the confirmation", benchPowerCut},
	{"lan", "9. One node on a fast LAN: tether against a hand-made copy and switch", benchLAN},
	{"uneven", "10. A fleet whose nodes take different times to build: copies while building", benchUneven},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", "", "run only these scenarios (comma-separated: "+strings.Join(names(), ", ")+")")
	quick := fs.Bool("quick", false, "fewer runs and smaller fleets and closures: a few minutes instead of ~20")
	out := fs.String("out", "", "results file to update (default: bench/RESULTS.md in the module)")
	verbose := fs.Bool("v", false, "show tether's output")
	keep := fs.Bool("keep", false, "keep the scratch directory (fixture flakes, tether's JSON reports) and say where")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bench [flags] [scenario ...]\n\nscenarios:\n")
		for _, s := range scenarios {
			fmt.Fprintf(stderr, "  %-9s %s\n", s.name, s.title)
		}
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	selected, err := selectScenarios(*only, fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	b := &bench{out: stdout, log: stderr, quick: *quick, verbose: *verbose, keep: *keep, command: commandLine(args)}
	if err := b.runAll(ctx, selected, *out); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

func names() []string {
	var out []string
	for _, s := range scenarios {
		out = append(out, s.name)
	}
	return out
}

// selectScenarios picks the scenarios named by -only and the arguments;
// none named means all.
func selectScenarios(only string, args []string) ([]scenario, error) {
	want := map[string]bool{}
	for _, n := range append(strings.Split(only, ","), args...) {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	for n := range want {
		if !slices.Contains(names(), n) {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", n, strings.Join(names(), ", "))
		}
	}
	var out []scenario
	for _, s := range scenarios {
		if len(want) == 0 || want[s.name] {
			out = append(out, s)
		}
	}
	return out, nil
}

// commandLine is how this run was invoked, for RESULTS.md: through the
// wrapper when it says so.
func commandLine(args []string) string {
	prog := "go run ./bench"
	if os.Getenv("TETHER_BENCH_WRAPPER") != "" {
		prog = "bench/run.sh"
	}
	return strings.TrimSpace(prog + " " + strings.Join(args, " "))
}

func (b *bench) runAll(ctx context.Context, selected []scenario, outFile string) error {
	if err := testhost.Check(); err != nil {
		return err
	}
	root, err := e2e.ModuleRoot()
	if err != nil {
		return err
	}
	if outFile == "" {
		outFile = filepath.Join(root, "bench", "RESULTS.md")
	}
	if err := testhost.Clean(ctx, b.logf); err != nil {
		b.logf("cleaning what crashed runs left: %v", err)
	}
	work, err := os.MkdirTemp("", "tether-bench-")
	if err != nil {
		return err
	}
	if b.keep {
		defer b.logf("scratch directory kept: %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	b.work = work
	b.machine = describeMachine(ctx, root)
	fmt.Fprintf(b.out, "tether benchmarks — %s\nmachine: %s\n", b.command, b.machine)

	b.logf("building tether and its agent")
	b.bins, err = e2e.Build(ctx, root, filepath.Join(work, "bin"))
	if err != nil {
		return err
	}
	b.env = benchEnv(os.Environ())

	defer b.dropNow(context.WithoutCancel(ctx))
	var done []*section
	var errs []error
	for _, s := range selected {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		fmt.Fprintf(b.out, "\n== %s\n", s.title)
		start := time.Now()
		sec, err := s.run(ctx, b)
		if err != nil {
			fmt.Fprintf(b.out, "  FAILED: %v\n", err)
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
			continue
		}
		sec.name, sec.title = s.name, s.title
		sec.when = time.Now()
		sec.took = time.Since(start)
		sec.print(b.out)
		done = append(done, sec)
	}
	if len(done) > 0 {
		if err := writeResults(outFile, done, b.command, b.machine, b.quick); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(b.out, "\nresults written to %s\n", outFile)
		}
	}
	return errors.Join(errs...)
}
