//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tetherdeploy/tether/internal/testhost"
)

const usage = `usage:
  testhost up --state FILE [--topology home|direct:N] [--latency D] [--rate BYTES_PER_S]
  testhost relay --state FILE status|cut|restore|latency D|rate N|rates UP DOWN
  testhost down --state FILE
  testhost clean
  testhost leftovers [--json]
`

// errUsage marks a command line error (exit code 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	var err error
	switch args[0] {
	case "up":
		err = up(ctx, args[1:], stdout, logf)
	case "down":
		err = down(ctx, args[1:], logf)
	case "relay":
		err = relay(ctx, args[1:], stdout)
	case "clean":
		err = testhost.Clean(ctx, logf)
	case "leftovers":
		err = leftovers(ctx, args[1:], stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "testhost %s: %v\n", args[0], err)
	if errors.Is(err, errUsage) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	return 1
}

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// parseWithState parses a subcommand that works on the fleet a state file
// describes: --state is required, and arguments are given exactly when
// withArgs; usage says what is required when they are not.
func parseWithState(fs *flag.FlagSet, args []string, state *string, withArgs bool, usage string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if *state == "" || (fs.NArg() > 0) != withArgs {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	return nil
}

func up(ctx context.Context, args []string, stdout io.Writer, logf func(string, ...any)) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	state := fs.String("state", "", "where to write the fleet's JSON description")
	topo := fs.String("topology", "home", "home or direct:N")
	latency := fs.Duration("latency", 0, "one-way delay on the tunnel")
	rate := fs.Int64("rate", 0, "tunnel bandwidth cap in bytes/s each way (0: none)")
	if err := parseWithState(fs, args, state, false, "up needs --state FILE and no arguments"); err != nil {
		return err
	}
	t, err := testhost.ParseTopology(*topo)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	statePath, err := filepath.Abs(*state)
	if err != nil {
		return err
	}
	f, err := testhost.Start(ctx, testhost.Options{Topology: t, Logf: logf})
	if err != nil {
		return err
	}
	defer f.Close()
	s := f.State()
	if f.Relay != nil {
		f.Relay.SetLatency(*latency)
		f.Relay.SetRate(*rate)
		s.Control = filepath.Join(f.Dir, "relay.sock")
		if err := testhost.ServeControl(ctx, f.Relay, s.Control); err != nil {
			return fmt.Errorf("relay control: %w", err)
		}
	}
	if err := testhost.WriteState(statePath, s); err != nil {
		return err
	}
	defer os.Remove(statePath)
	logf("testhost: run %s up; state in %s; stop with ^C or `testhost down --state %s`", f.Run, statePath, statePath)
	fmt.Fprintln(stdout, statePath)
	<-ctx.Done()
	logf("testhost: run %s: stopping", f.Run)
	return f.Close()
}

// readState parses the arguments of a subcommand that works on a fleet up
// started (down, relay) and reads the state file --state names; it
// returns the state, the file and the other arguments.
func readState(name string, args []string, withArgs bool, usage string) (testhost.State, string, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	state := fs.String("state", "", "state file written by up")
	if err := parseWithState(fs, args, state, withArgs, usage); err != nil {
		return testhost.State{}, "", nil, err
	}
	s, err := testhost.ReadState(*state)
	return s, *state, fs.Args(), err
}

func down(ctx context.Context, args []string, logf func(string, ...any)) error {
	s, state, _, err := readState("down", args, false, "down needs --state FILE")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := testhost.Stop(ctx, s.Run, logf); err != nil {
		return err
	}
	if err := os.Remove(state); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func relay(ctx context.Context, args []string, stdout io.Writer) error {
	s, _, words, err := readState("relay", args, true, "relay needs --state FILE and a command")
	if err != nil {
		return err
	}
	if s.Control == "" {
		return fmt.Errorf("run %s (%s) has no relay", s.Run, s.Topology)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	st, err := testhost.Control(ctx, s.Control, words...)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

func leftovers(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("leftovers", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parse(fs, args); err != nil {
		return err
	}
	left, err := testhost.Leftovers(ctx)
	for _, l := range left {
		if *asJSON {
			b, _ := json.Marshal(l)
			fmt.Fprintln(stdout, string(b))
		} else {
			fmt.Fprintln(stdout, l)
		}
	}
	return err
}
