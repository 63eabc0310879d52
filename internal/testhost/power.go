package testhost

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// A sandbox host can lose power and boot again, the way a machine tether
// deploys to does when it is unplugged, panics or hangs until someone
// power-cycles it. Its disks keep what was written — /nix, /var/lib, /boot,
// /root, /tmp — and everything else is lost: every process, and /run.
//
// Booting is done by the host's firmware (firmwareScript), which reads the
// systemd-boot layout under /boot/loader as the fixture systems' boot
// loader installer writes it: the one-shot entry if one is set (then
// forgotten), else the default. It starts the entry's init (the init= of
// its options line), which activates that system and starts its services,
// sshd among them. A host with no entry boots "bare": links up, sshd.
//
// Each host has its own boot ID, bind-mounted over
// /proc/sys/kernel/random/boot_id inside the host, where the agent reads
// it as on any machine: a new one at every boot.

// bootIDFile is the host's boot ID (under Dir), seen inside the host at
// the kernel's path.
const bootIDFile = "boot_id"

// rebootRequest is the host's power button, under its /run/testhost: a
// process inside the host (the fixture's systemctl reboot) creates it, and
// the host's reboot watcher then resets the host.
const rebootRequest = "reboot"

// firmwareScript boots the host (see above). It runs inside the host;
// nothing is spliced into it.
const firmwareScript = `set -u
loader=/boot/loader
entry=""
if [ -s "$loader/oneshot" ]; then
	entry=$(cat "$loader/oneshot")
	rm -f "$loader/oneshot"
elif [ -s "$loader/loader.conf" ]; then
	entry=$(sed -n 's/^default[[:space:]]*//p' "$loader/loader.conf" | head -n 1)
fi
init=""
if [ -n "$entry" ] && [ -f "$loader/entries/$entry" ]; then
	init=$(sed -n 's/^options.*init=\([^[:space:]]*\).*/\1/p' "$loader/entries/$entry" | head -n 1)
fi
printf '%s\n' "$entry" > /run/testhost/booted-entry
if [ -n "$init" ] && [ -x "$init" ]; then
	setsid "$init" </dev/null >/run/testhost/boot.log 2>&1 &
	exit 0
fi
for l in $(ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); if ($2 != "lo") print $2 }'); do
	ip link set "$l" up
done
exec /run/testhost/sshd-start
`

// newBootID makes a boot ID in the kernel's format (a random UUID).
func newBootID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// BootID is the host's current boot ID.
func (h *Host) BootID() string {
	b, _ := os.ReadFile(filepath.Join(h.Dir, bootIDFile))
	return strings.TrimSpace(string(b))
}

// writeBootID gives the host a new boot ID. The file is rewritten in
// place: it is bind-mounted, and a new inode would not be seen.
func (h *Host) writeBootID() error {
	f, err := os.OpenFile(filepath.Join(h.Dir, bootIDFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o444)
	if err != nil {
		return fmt.Errorf("host %s: boot ID: %w", h.Name, err)
	}
	_, err = f.WriteString(newBootID() + "\n")
	return errors.Join(err, f.Close())
}

// Reset cuts the host's power and boots it again.
func (h *Host) Reset(ctx context.Context) error {
	if err := h.PowerCut(ctx); err != nil {
		return err
	}
	return h.PowerOn(ctx)
}

// PowerCut is the host losing power: every process of the host is killed
// with SIGKILL (none gets to clean up), and its /run is emptied but for
// /run/testhost, the sandbox's own plumbing. The host stays off until
// PowerOn.
func (h *Host) PowerCut(ctx context.Context) error {
	h.power.Lock()
	defer h.power.Unlock()
	if !h.Alive() {
		return fmt.Errorf("host %s: not running", h.Name)
	}
	anchor := h.anchor.Process.Pid
	for {
		pids, err := h.Pids()
		if err != nil {
			return fmt.Errorf("host %s: power cut: %w", h.Name, err)
		}
		pids = slices.DeleteFunc(pids, func(p int) bool { return p == anchor })
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("host %s: power cut: processes %v still alive: %w", h.Name, pids, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	run := filepath.Join(h.Dir, "run")
	ents, err := os.ReadDir(run)
	if err != nil {
		return fmt.Errorf("host %s: power cut: %w", h.Name, err)
	}
	var errs []error
	for _, e := range ents {
		if e.Name() != "testhost" {
			errs = append(errs, os.RemoveAll(filepath.Join(run, e.Name())))
		}
	}
	for _, f := range []string{rebootRequest, "booted-entry", "boot.log"} {
		if err := os.Remove(filepath.Join(run, "testhost", f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("host %s: power cut: clear /run: %w", h.Name, err)
	}
	return nil
}

// PowerOn boots the host: a new boot ID, then the firmware starts the
// system of the one-shot boot entry, or of the default one. It returns once
// that system's init is started; whether sshd comes up is that system's
// business, as on a real machine.
func (h *Host) PowerOn(ctx context.Context) error {
	h.power.Lock()
	defer h.power.Unlock()
	if err := h.writeBootID(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(h.Dir, "run", "sshd"), 0o755); err != nil {
		return fmt.Errorf("host %s: power on: %w", h.Name, err)
	}
	if _, err := h.Exec(ctx, "/bin/sh", "-c", firmwareScript); err != nil {
		return fmt.Errorf("host %s: power on: %w", h.Name, err)
	}
	return nil
}

// BootedEntry is the boot entry the host's firmware booted last ("" when it
// had none and booted bare).
func (h *Host) BootedEntry() string {
	b, _ := os.ReadFile(filepath.Join(h.Dir, "run", "testhost", "booted-entry"))
	return strings.TrimSpace(string(b))
}

// watchReboots resets the host whenever something inside it asks for a
// reboot (rebootRequest), until the host is gone. Errors go to the host's
// stderr log.
func (h *Host) watchReboots() {
	req := filepath.Join(h.Dir, "run", "testhost", rebootRequest)
	for {
		select {
		case <-h.anchorDone:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := os.Stat(req); err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := h.Reset(ctx); err != nil && h.Alive() {
			fmt.Fprintf(&h.stderr, "testhost: host %s: reboot: %v\n", h.Name, err)
		}
		cancel()
	}
}
