package runner

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tetherdeploy/tether/pkg/agent"
)

// tokenHashFile holds, for a deploy that waits across a reboot, the
// SHA-256 of its confirmation token: the runner that takes the deploy up
// after the boot checks the confirmation against it. The token itself
// never touches the disk.
const tokenHashFile = "token.sha256"

// Boot loaders, as far as --reboot is concerned: whether the machine can be
// told to boot an entry once.
const (
	loaderSystemdBoot = "systemd-boot"
	loaderGRUB        = "GRUB"
	loaderExtlinux    = "extlinux"
)

// bootLoader is the machine's boot loader and where its configuration
// lives (under Root).
type bootLoader struct {
	kind string
	conf string // loader.conf (systemd-boot), grub.cfg (GRUB), extlinux.conf
}

// detectBootLoader finds the boot loader NixOS installed: systemd-boot on
// an EFI system partition mounted at /boot, /boot/efi or /efi; GRUB's
// /boot/grub/grub.cfg; the extlinux.conf of boards booted by U-Boot.
func (r *Runner) detectBootLoader() (bootLoader, error) {
	for _, esp := range []string{"boot", "boot/efi", "efi"} {
		conf := filepath.Join(r.Root, esp, "loader", "loader.conf")
		if _, err := os.Stat(conf); err == nil {
			return bootLoader{kind: loaderSystemdBoot, conf: conf}, nil
		}
	}
	if conf := filepath.Join(r.Root, "boot/grub/grub.cfg"); fileExists(conf) {
		return bootLoader{kind: loaderGRUB, conf: conf}, nil
	}
	if conf := filepath.Join(r.Root, "boot/extlinux/extlinux.conf"); fileExists(conf) {
		return bootLoader{kind: loaderExtlinux, conf: conf}, nil
	}
	return bootLoader{}, errors.New("cannot tell which boot loader this machine uses (no loader/loader.conf, grub/grub.cfg or extlinux/extlinux.conf under /boot)")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// errNoOneShot is --reboot on a machine whose boot loader cannot boot an
// entry once: booting the new system would make it the default, and a
// system that does not come up would keep booting.
func errNoOneShot(bl bootLoader) error {
	return fmt.Errorf("--reboot needs a boot loader that can boot an entry once, and this machine boots with %s (%s), which cannot: "+
		"deploy without --reboot (the new system is then live and confirmed, and becomes the default for the next boot), "+
		"and reboot the machine yourself when someone can power-cycle it and pick the previous generation from the boot menu if it does not come back", bl.kind, bl.conf)
}

// tool is the command to run a system tool by: the running NixOS system's
// own (the one that matches its boot loader and init), else from PATH.
func (r *Runner) tool(name string) string {
	p := filepath.Join(r.currentSystemLink(), "sw", "bin", name)
	if isExecutable(p) {
		return p
	}
	return name
}

// runTool runs argv in / and keeps the end of its output for the error.
func (r *Runner) runTool(ctx context.Context, argv ...string) error {
	var out tailBuffer
	out.max = 2048
	code, err := r.Exec.Run(ctx, Command{Argv: argv, Env: r.Env, Dir: "/", Stdout: &out, Stderr: &out})
	if err != nil || code != 0 {
		return &CmdError{Argv: argv, ExitCode: code, Stderr: out.String(), Err: err}
	}
	return nil
}

// setOneShot makes the boot loader boot generation gen of the system
// profile at the next boot only.
func (r *Runner) setOneShot(ctx context.Context, bl bootLoader, profile string, gen int) error {
	switch bl.kind {
	case loaderSystemdBoot:
		entry := systemdBootEntry(profile, gen)
		if !fileExists(filepath.Join(filepath.Dir(bl.conf), "entries", entry)) {
			return fmt.Errorf("set the one-shot boot entry: %s has no entry %s", filepath.Dir(bl.conf), entry)
		}
		return r.runTool(ctx, r.tool("bootctl"), "set-oneshot", entry)
	case loaderGRUB:
		b, err := readFileLimit(bl.conf, 16<<20)
		if err != nil {
			return fmt.Errorf("set the one-shot boot entry: %w", err)
		}
		entry, err := grubEntry(string(b), gen)
		if err != nil {
			return fmt.Errorf("set the one-shot boot entry: %w", err)
		}
		return r.runTool(ctx, r.tool("grub-reboot"), entry)
	}
	return errNoOneShot(bl)
}

// clearOneShot forgets a one-shot entry that was not used.
func (r *Runner) clearOneShot(ctx context.Context, bl bootLoader) error {
	switch bl.kind {
	case loaderSystemdBoot:
		return r.runTool(ctx, r.tool("bootctl"), "set-oneshot", "")
	case loaderGRUB:
		return r.runTool(ctx, r.tool("grub-editenv"), "/boot/grub/grubenv", "unset", "next_entry")
	}
	return nil
}

// systemdBootEntry is the entry NixOS's systemd-boot installer writes for
// a generation of the system profile (nixos-<profile>-generation-N.conf
// for other profiles).
func systemdBootEntry(profile string, gen int) string {
	if name := filepath.Base(profile); name != "system" {
		return fmt.Sprintf("nixos-%s-generation-%d.conf", name, gen)
	}
	return fmt.Sprintf("nixos-generation-%d.conf", gen)
}

var (
	grubSubmenuRE = regexp.MustCompile(`^\s*submenu\s+"([^"]*)"`)
	grubEntryRE   = regexp.MustCompile(`^\s*menuentry\s+"([^"]*)"`)
)

// grubEntry finds, in a grub.cfg NixOS wrote, the menu entry of
// generation gen, as grub-reboot names it: "<submenu>><title>". NixOS lists
// every generation in the submenu "NixOS - All configurations" as
// "NixOS - Configuration <N> (<date> - <version>)".
func grubEntry(cfg string, gen int) (string, error) {
	want := "NixOS - Configuration " + strconv.Itoa(gen) + " "
	submenu := ""
	sc := bufio.NewScanner(strings.NewReader(cfg))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	depth := 0
	for sc.Scan() {
		line := sc.Text()
		if m := grubSubmenuRE.FindStringSubmatch(line); m != nil {
			submenu = m[1]
		}
		if m := grubEntryRE.FindStringSubmatch(line); m != nil && strings.HasPrefix(m[1], want) {
			if submenu != "" && depth > 0 {
				return submenu + ">" + m[1], nil
			}
			return m[1], nil
		}
		depth += strings.Count(line, "{") - strings.Count(line, "}")
		if depth == 0 {
			submenu = ""
		}
	}
	return "", fmt.Errorf("grub.cfg has no entry for generation %d", gen)
}

// runReboot is a deploy with --reboot: the new system is booted once, and
// becomes the default only after it was confirmed from that boot.
//
// Before the reboot the new system is made a generation of the profile —
// not its current one — and the previous system's own
// switch-to-configuration boot writes the boot entries: every generation
// gets one and the previous system stays the default. The boot loader is
// told to boot the new generation once, and the machine reboots. The
// runner stops there, leaving the deploy unfinished on purpose; the
// runner the deployer starts after the boot (reconcile) takes it up.
func (d *deploy) runReboot(ctx context.Context, prof profileState) agent.Status {
	req := d.req
	switch {
	case !d.twoPhase:
		return d.fail(fmt.Errorf("--reboot: %s has no bin/switch-to-configuration; only a NixOS system can be booted once", req.Closure))
	case d.previous == "" || d.prevGen == 0 || !isExecutable(d.stc(d.previous)):
		return d.fail(fmt.Errorf("--reboot: profile %s has no previous NixOS generation to fall back to", req.ProfilePath))
	}
	bl, err := d.r.detectBootLoader()
	if err != nil {
		return d.fail(fmt.Errorf("--reboot: %w", err))
	}
	if bl.kind == loaderExtlinux {
		return d.fail(errNoOneShot(bl))
	}
	if err := writeFileAtomic(filepath.Join(d.dir, tokenHashFile), []byte(hex.EncodeToString(d.tokenHash[:])+"\n"), 0o600); err != nil {
		return d.fail(fmt.Errorf("--reboot: keep the token's hash: %w", err))
	}

	// From here the profile and the boot entries change: a failure, or
	// no reboot, puts them back (rollbackLive with committing set).
	d.committing = true
	ctx = context.WithoutCancel(ctx)
	undo := func(reason string) agent.Status {
		if err := d.r.clearOneShot(ctx, bl); err != nil {
			d.log.emit(agent.Event{Type: agent.EventWarning, Error: "clear the one-shot boot entry: " + err.Error()})
		}
		d.res.Reason = reason
		return d.rollbackLive(ctx, reason, false)
	}
	if err := d.pointAndRecord(ctx, prof); err != nil {
		return undo("--reboot: " + err.Error())
	}
	if err := d.r.nixEnv(ctx, req.ProfilePath, "--switch-generation", strconv.Itoa(d.prevGen)); err != nil {
		return undo("--reboot: keep the previous generation current: " + err.Error())
	}
	out := d.activate(ctx, activation{argv: []string{d.stc(d.previous), string(agent.ActionBoot)}, dir: "/"})
	if out.code != 0 {
		return undo("--reboot: write the boot entries: " + describeOutcome(out, req.ActivationTimeout.D()))
	}
	if err := d.r.setOneShot(ctx, bl, req.ProfilePath, d.newGen); err != nil {
		return undo("--reboot: " + err.Error())
	}
	return d.reboot(ctx, agent.Event{Type: agent.EventRebooting, Path: req.Closure, Generation: d.newGen}, func() agent.Status {
		return undo("the machine did not reboot")
	})
}

// RebootWait is how long a runner that asked for a reboot waits to be
// stopped by it before it takes the deploy back.
const RebootWait = 3 * time.Minute

// reboot announces ev and reboots the machine. The runner then waits to be
// stopped by the shutdown and leaves the deploy unfinished (suspended); if
// the machine has not gone down after RebootWait, notDown ends it.
func (d *deploy) reboot(ctx context.Context, ev agent.Event, notDown func() agent.Status) agent.Status {
	d.log.emit(ev)
	// The deployer following the log should hear of the reboot before
	// its connection goes with the machine: then it waits for the machine
	// to come back instead of calling it lost.
	select {
	case <-d.stop:
	case <-d.r.Clock.After(d.r.RebootPause):
	}
	if err := d.r.runTool(ctx, d.r.tool("systemctl"), "reboot"); err != nil {
		d.log.emit(agent.Event{Type: agent.EventWarning, Error: "reboot: " + err.Error()})
		return notDown()
	}
	select {
	case <-d.stop:
	case <-d.r.Clock.After(RebootWait):
		return notDown()
	}
	d.suspended = true
	return ""
}

// reconcileReboot takes up a --reboot deploy after the machine rebooted
// (or after its runner died, which it may also have).
func (d *deploy) reconcileReboot(ctx context.Context, j journal, rebooted, wait bool) agent.Status {
	req := d.req
	ctx = context.WithoutCancel(ctx)
	// The profile and the boot entries changed before the reboot: a
	// rollback puts them back.
	d.committing = true
	booted, _ := readLink(d.r.bootedSystemLink())
	bl, blErr := d.r.detectBootLoader()
	restore := func(reason string) agent.Status {
		if blErr == nil {
			if err := d.r.clearOneShot(ctx, bl); err != nil {
				d.log.emit(agent.Event{Type: agent.EventWarning, Error: "clear the one-shot boot entry: " + err.Error()})
			}
		}
		d.res.Reason = reason
		return d.rollbackLive(ctx, reason, !rebooted)
	}
	switch {
	case len(j.rebooting) == 0:
		// Died before it asked for the reboot.
		return restore("the agent stopped before the reboot")
	case len(j.rebooting) > 1:
		// It had rolled back and rebooted into the previous system.
		reason := "not confirmed after booting the new system"
		if j.rollingBack != nil {
			reason = j.rollingBack.Reason
		}
		d.res.Reason = reason + "; rebooted back into " + d.previous
		if !rebooted {
			return d.rollbackLive(ctx, d.res.Reason, true)
		}
		return agent.StatusRolledBack
	case !rebooted:
		return restore("the machine did not reboot")
	case !sameSystem(booted, req.Closure):
		return restore(fmt.Sprintf("the machine came back on %s, not on the new system: its one boot of the new system did not come up (or was power-cycled), and the default was still the previous system", orNothing(booted)))
	}

	// Booted the new system once: confirmed from this boot, it is
	// committed; otherwise the machine goes back to the default.
	d.res.RebootRequired = false
	confirmed, reason := false, "no deployer waits for it: the deploy was taken up by another contact"
	if wait {
		confirmed, reason = d.awaitConfirmation(ctx)
	}
	if confirmed {
		prof, err := readProfile(req.ProfilePath)
		if err != nil {
			return d.fail(err)
		}
		return d.commit(ctx, prof)
	}
	d.res.Reason = reason
	d.log.emit(agent.Event{Type: agent.EventRollingBack, Reason: reason, To: d.previous})
	if err := d.restoreRecords(ctx); err != nil {
		d.res.Error = err.Error()
		d.log.emit(agent.Event{Type: agent.EventRollbackFailed, Error: err.Error()})
		return agent.StatusRollbackFailed
	}
	out := d.activate(ctx, activation{argv: []string{d.stc(d.previous), string(agent.ActionBoot)}, dir: "/"})
	if out.code != 0 {
		err := fmt.Errorf("restore the boot default to %s: %s", d.previous, describeOutcome(out, req.ActivationTimeout.D()))
		d.res.Error = err.Error()
		d.log.emit(agent.Event{Type: agent.EventRollbackFailed, Error: err.Error()})
		return agent.StatusRollbackFailed
	}
	return d.reboot(ctx, agent.Event{Type: agent.EventRebooting, Path: d.previous, Generation: d.prevGen}, func() agent.Status {
		return d.rollbackLive(ctx, reason+"; the machine did not reboot, so the previous system was activated live", true)
	})
}

// sameSystem reports whether two store paths are the same system: the
// same path, or one a wrapper that links the other's
// switch-to-configuration (an activation profile around a toplevel).
func sameSystem(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	ra, err1 := filepath.EvalSymlinks(filepath.Join(a, "bin", "switch-to-configuration"))
	rb, err2 := filepath.EvalSymlinks(filepath.Join(b, "bin", "switch-to-configuration"))
	return err1 == nil && err2 == nil && ra == rb
}
