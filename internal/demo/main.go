//go:build linux

// Command demo shows tether deploying the example fleet to sandbox hosts on
// this machine: three machines where rpi is reachable only through frame1
// and frame1 only through a tunnel, a v1 → v2 upgrade, a release that kills
// sshd and rolls itself back, and the fleet's status at the end.
//
// Run it as root with scripts/demo.sh (which installs what it needs).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tetherdeploy/tether/internal/e2e"
	"github.com/tetherdeploy/tether/internal/fixture"
	"github.com/tetherdeploy/tether/internal/testhost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Stdout)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, out io.Writer) int {
	if err := demo(ctx, out); err != nil {
		fmt.Fprintf(out, "\ndemo failed: %v\n", err)
		return 1
	}
	return 0
}

type step struct {
	out  io.Writer
	bin  e2e.Binaries
	fl   *testhost.Fleet
	ref  string
	dir  string
	env  []string
	n    int
	fail bool
}

func demo(ctx context.Context, out io.Writer) error {
	if err := testhost.Check(); err != nil {
		return err
	}
	root, err := e2e.ModuleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tether-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	say(out, "Building tether and its agent")
	bin, err := e2e.Build(ctx, root, filepath.Join(work, "bin"))
	if err != nil {
		return err
	}

	say(out, "Starting the sandbox fleet: runner → tunnel → frame1 → rpi, and web")
	fl, err := testhost.Start(ctx, testhost.Options{Topology: testhost.Home})
	if err != nil {
		return err
	}
	defer func() {
		say(out, "Tearing the sandbox fleet down")
		fl.Close()
	}()
	for _, name := range fl.Names() {
		h := fl.Host(name)
		via := "directly"
		if h.Via != "" {
			via = "only through " + h.Via
		} else if fl.Relay != nil && h.SSHAddr == fl.Relay.Addr() {
			via = "through the tunnel at " + h.SSHAddr
		}
		fmt.Fprintf(out, "  %-7s %-12s reached %s\n", name, h.IP, via)
	}

	hosts, err := e2e.HostConfs(fl)
	if err != nil {
		return err
	}
	flakeDir := filepath.Join(work, "fleet")
	ref, err := fixture.Config{Hosts: hosts}.Prepare(flakeDir)
	if err != nil {
		return err
	}
	s := &step{out: out, bin: bin, fl: fl, ref: ref, dir: flakeDir, env: e2e.TetherEnv(os.Environ())}

	say(out, "1. Deploy v1 to the whole fleet (deploy.nodes read from the flake)")
	if err := s.tether(ctx, 0, "deploy"); err != nil {
		return err
	}
	s.show(ctx)

	say(out, "2. Upgrade every machine to v2 (only the missing paths are copied)")
	for _, h := range fixture.Hosts() {
		if err := fixture.SetVariant(flakeDir, h, fixture.V2); err != nil {
			return err
		}
	}
	say(out, "   First the plan, as a pull request would show it: read-only queries on each machine,\n   nothing copied there (rpi adds --dry-activate to list the units that would change)")
	if err := s.tether(ctx, 0, "plan"); err != nil {
		return err
	}
	if err := s.tether(ctx, 0, "plan", "--dry-activate", fixture.RPi); err != nil {
		return err
	}
	if err := s.tether(ctx, 0, "deploy"); err != nil {
		return err
	}
	s.show(ctx)

	say(out, "3. A bad release for web: its activation kills sshd. Nobody can confirm,\n   so web rolls itself back to v2 after the 10 s confirmation timeout")
	if err := fixture.SetVariant(flakeDir, fixture.Web, fixture.CutSSH); err != nil {
		return err
	}
	if err := s.tether(ctx, 3, "deploy", "--confirm-timeout", "10s", fixture.Web); err != nil {
		return err
	}
	s.show(ctx)

	say(out, "4. tether status: where every machine is")
	if err := s.tether(ctx, 0, "status"); err != nil {
		return err
	}

	say(out, "5. tether rollback rpi: back to the previous generation (v1), under the same protection")
	if err := s.tether(ctx, 0, "rollback", fixture.RPi); err != nil {
		return err
	}
	s.show(ctx)
	say(out, "Demo complete: every step behaved as expected")
	return nil
}

// tether runs one tether command with its output on the terminal and
// checks its exit code.
func (s *step) tether(ctx context.Context, want int, args ...string) error {
	full := []string{args[0], "--flake", s.ref, "--ssh-key", s.fl.ClientKeyPath,
		"--known-hosts", s.fl.KnownHostsPath, "--agents-dir", s.bin.AgentsDir}
	full = append(full, args[1:]...)
	fmt.Fprintf(s.out, "\n$ tether %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, s.bin.Tether, full...)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = s.out, s.out
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return err
	}
	if code != want {
		return fmt.Errorf("tether %s exited %d, expected %d", args[0], code, want)
	}
	if want != 0 {
		fmt.Fprintf(s.out, "(exit code %d: rolled back, as expected)\n", code)
	}
	return nil
}

// show prints what each sandbox host runs, read from the host itself.
func (s *step) show(ctx context.Context) {
	fmt.Fprintln(s.out, "\n  what the machines run now (read from each host, not from tether):")
	for _, name := range s.fl.Names() {
		b, err := s.fl.Host(name).ReadFile(ctx, fixture.GenerationFile)
		state := "nothing yet"
		if err == nil {
			if g, err := fixture.ParseGeneration(b); err == nil {
				state = g.Variant + "  " + filepath.Base(g.Toplevel)
			}
		}
		sshd := "sshd up"
		if c, err := s.fl.Dial(ctx, name); err != nil {
			sshd = "sshd unreachable"
		} else {
			c.Close()
		}
		fmt.Fprintf(s.out, "  %-7s %-9s %s\n", name, sshd, state)
	}
}

func say(w io.Writer, msg string) {
	fmt.Fprintf(w, "\n\033[1m==> %s\033[0m\n", msg)
}
