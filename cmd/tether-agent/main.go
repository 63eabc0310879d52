// Command tether-agent is the small static program tether uploads to each
// target machine. It takes the machine's deploy lock, runs the activation
// detached from the SSH session, rolls back unless the deployer confirms in
// time, and makes the new system permanent only once confirmed. Every subcommand prints JSON on standard output.
// The protocol is described in docs/protocol.md, its types are package agent,
// and the implementation is package runner.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"github.com/tetherdeploy/tether/cmd/tether-agent/internal/runner"
	"github.com/tetherdeploy/tether/internal/version"
	"github.com/tetherdeploy/tether/pkg/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: tether-agent <command> [flags]

commands (each prints JSON on standard output):
  start  --state-dir S [--detach auto|systemd|setsid]   request JSON on stdin
  run    --dir D                                        the detached deploy (started by start)
  reconcile [--dir D | --state-dir S]                   end a deploy whose runner died (started by follow, status)
  follow --dir D [--offset N]                           stream the event log until done
  confirm --dir D                                       token on stdin
  status [--state-dir S] [--profile P]
  generation [--profile P] --number N
  import [--zstd]                                       export stream on stdin into nix-store --import
  version
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fail(stdout, stderr, usageErr("no command"))
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		stateDir = fs.String("state-dir", agent.StateDir(""), "agent state dir (<tempPath>/tether)")
		dir      = fs.String("dir", "", "deploy dir (<state-dir>/<deploy-id>)")
		profile  = fs.String("profile", agent.DefaultProfile, "profile path")
		offset   = fs.Int64("offset", 0, "byte offset in the event log to resume from")
		number   = fs.Int("number", -1, "generation number")
		detach   = fs.String("detach", string(agent.DetachAuto), "how to detach the runner: auto, systemd or setsid")
		fork     = fs.Bool(runner.ForkFlag[2:], false, "internal: middle process of the double fork")
		zstdIn   = fs.Bool("zstd", false, "import: the stream on stdin is zstd-compressed")
	)
	if err := fs.Parse(args); err != nil {
		return fail(stdout, stderr, usageErr(err.Error()))
	}
	if fs.NArg() > 0 {
		return fail(stdout, stderr, usageErr(fmt.Sprintf("%s: unexpected argument %q", cmd, fs.Arg(0))))
	}
	needDir := func() error {
		if *dir == "" || !filepath.IsAbs(*dir) {
			return usageErr(cmd + ": --dir must be an absolute deploy dir")
		}
		return nil
	}

	r := runner.New(*stateDir)
	r.Env = os.Environ()
	r.Diag = stderr
	if exe, err := os.Executable(); err == nil {
		// What start, follow and status launch detached runners from.
		r.Executable = exe
	}
	if uid, err := strconv.Atoi(os.Getenv("SUDO_UID")); err == nil && os.Geteuid() == 0 {
		// Run through sudo by the user who uploaded the agent into the
		// state dir: that user may own it.
		r.TrustedOwners = []int{uid}
	}

	switch cmd {
	case "import":
		if err := runner.Import(ctx, stdin, *zstdIn, os.Environ(), stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "tether-agent import: %v\n", err)
			return 1
		}
		return 0

	case "version":
		return reply(stdout, map[string]any{"protocol": agent.ProtocolVersion, "version": version.Get().Version,
			"os": runtime.GOOS, "arch": runtime.GOARCH})

	case "start":
		if r.Executable == "" {
			return fail(stdout, stderr, errors.New("start: cannot find the agent's own executable"))
		}
		var req agent.Request
		dec := json.NewDecoder(io.LimitReader(stdin, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return fail(stdout, stderr, &agent.Error{Code: agent.CodeInvalidRequest, Msg: "start: read request from stdin", Err: err})
		}
		res, err := r.Start(ctx, req, agent.Detach(*detach))
		if err != nil {
			return fail(stdout, stderr, err)
		}
		return reply(stdout, res)

	case "run", "reconcile":
		if *fork {
			// The middle of the double fork: start the same command
			// without the flag, and go.
			if r.Executable == "" {
				return fail(stdout, stderr, errors.New("fork: cannot find the agent's own executable"))
			}
			var rest []string
			for _, a := range args {
				if a != runner.ForkFlag {
					rest = append(rest, a)
				}
			}
			if err := runner.Fork(append([]string{r.Executable, cmd}, rest...), os.Environ()); err != nil {
				return fail(stdout, stderr, err)
			}
			return 0
		}
		// The SSH session that started us may hang up; that is no reason
		// to stop a deploy.
		signal.Ignore(syscall.SIGHUP)
		if cmd == "reconcile" {
			if *dir != "" {
				if err := needDir(); err != nil {
					return fail(stdout, stderr, err)
				}
			}
			res, err := r.Reconcile(ctx, *dir)
			if err != nil {
				return fail(stdout, stderr, err)
			}
			if res == nil {
				return reply(stdout, map[string]any{"ok": true, "reconciled": false})
			}
			return reply(stdout, res)
		}
		if err := needDir(); err != nil {
			return fail(stdout, stderr, err)
		}
		res, err := r.Run(ctx, *dir)
		if err != nil {
			return fail(stdout, stderr, err)
		}
		reply(stdout, res)
		if !res.Status.OK() {
			return 1
		}
		return 0

	case "follow":
		if err := needDir(); err != nil {
			return fail(stdout, stderr, err)
		}
		if err := r.Follow(ctx, *dir, *offset, stdout); err != nil {
			return fail(stdout, stderr, err)
		}
		return 0

	case "confirm":
		if err := needDir(); err != nil {
			return fail(stdout, stderr, err)
		}
		token, err := io.ReadAll(io.LimitReader(stdin, 4096))
		if err != nil {
			return fail(stdout, stderr, fmt.Errorf("confirm: read token: %w", err))
		}
		if err := r.Confirm(ctx, *dir, string(token)); err != nil {
			return fail(stdout, stderr, err)
		}
		return reply(stdout, map[string]bool{"ok": true})

	case "status":
		rep, err := r.Status(ctx, *profile)
		if err != nil {
			return fail(stdout, stderr, err)
		}
		return reply(stdout, rep)

	case "generation":
		if *number < 0 {
			return fail(stdout, stderr, usageErr("generation: --number is required"))
		}
		g, err := r.Generation(*profile, *number)
		if err != nil {
			return fail(stdout, stderr, err)
		}
		return reply(stdout, g)

	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprint(stderr, usage)
	return fail(stdout, stderr, usageErr(fmt.Sprintf("unknown command %q", cmd)))
}

func usageErr(msg string) error { return &agent.Error{Code: agent.CodeUsage, Msg: msg} }

func reply(stdout io.Writer, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return 1
	}
	if _, err := stdout.Write(append(b, '\n')); err != nil {
		return 1
	}
	return 0
}

// fail prints err as a JSON error reply (for the deployer) and as a line on
// stderr (for a person), and returns the exit status its code maps to.
func fail(stdout, stderr io.Writer, err error) int {
	if errors.Is(err, context.Canceled) {
		err = &agent.Error{Code: agent.CodeInternal, Msg: "interrupted", Err: err}
	}
	reply(stdout, agent.Reply(err))
	fmt.Fprintf(stderr, "tether-agent: %v\n", err)
	return agent.ExitCode(err)
}
