//go:build linux

// Command demo shows tether deploying the example fleet to sandbox hosts on
// this machine: three machines where rpi is reachable only through frame1
// and frame1 only through a tunnel, a v1 → v2 upgrade, a release that kills
// sshd and rolls itself back, the same release with the plug pulled while it
// waits, and the fleet's status at the end.
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
	"time"

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
	out io.Writer
	bin e2e.Binaries
	fl  *testhost.Fleet
	ref string
	dir string
	env []string
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

	say(out, "4. Pull the plug: the bad release again, and web loses power while it waits\n   for a confirmation that cannot come. Nothing about the release was made\n   permanent before a confirmation, so web boots v2 again, and tether says so\n   as soon as web answers")
	if err := s.powerCut(ctx, fixture.Web); err != nil {
		return err
	}
	s.show(ctx)

	say(out, "5. tether status: where every machine is")
	if err := s.tether(ctx, 0, "status"); err != nil {
		return err
	}

	say(out, "6. tether rollback rpi: back to the previous generation (v1), under the same protection")
	if err := s.tether(ctx, 0, "rollback", fixture.RPi); err != nil {
		return err
	}
	s.show(ctx)
	say(out, "Demo complete: every step behaved as expected")
	return nil
}

// powerCut deploys the sshd-killing release to host, cuts the host's power
// once it waits for its confirmation, and switches it back on.
func (s *step) powerCut(ctx context.Context, host string) error {
	cmd := s.command(ctx, "deploy", "--confirm-timeout", "60s", host)
	if err := cmd.Start(); err != nil {
		return err
	}
	h := s.fl.Host(host)
	// The release is live (its activation ran and killed sshd): the node
	// now waits for a confirmation.
	for {
		b, err := h.ReadFile(ctx, fixture.GenerationFile)
		if g, perr := fixture.ParseGeneration(b); err == nil && perr == nil && g.Variant == fixture.CutSSH {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	time.Sleep(2 * time.Second)
	fmt.Fprintf(s.out, "\n  *** %s: power cut ***\n", host)
	if err := h.PowerCut(ctx); err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	fmt.Fprintf(s.out, "  *** %s: power on ***\n", host)
	on := time.Now()
	if err := h.PowerOn(ctx); err != nil {
		return err
	}
	err := s.check(cmd.Wait(), 3, "deploy")
	fmt.Fprintf(s.out, "  (tether reported %s after power-on)\n", time.Since(on).Round(100*time.Millisecond))
	return err
}

// command prepares one tether command with its output on the terminal.
func (s *step) command(ctx context.Context, args ...string) *exec.Cmd {
	full := []string{args[0], "--flake", s.ref, "--ssh-key", s.fl.ClientKeyPath,
		"--known-hosts", s.fl.KnownHostsPath, "--agents-dir", s.bin.AgentsDir}
	full = append(full, args[1:]...)
	fmt.Fprintf(s.out, "\n$ tether %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, s.bin.Tether, full...)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = s.out, s.out
	return cmd
}

// tether runs one tether command with its output on the terminal and
// checks its exit code.
func (s *step) tether(ctx context.Context, want int, args ...string) error {
	return s.check(s.command(ctx, args...).Run(), want, args[0])
}

// check checks how a tether command ended.
func (s *step) check(err error, want int, what string) error {
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return err
	}
	if code != want {
		return fmt.Errorf("tether %s exited %d, expected %d", what, code, want)
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
