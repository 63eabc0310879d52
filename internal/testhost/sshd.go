package testhost

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// sshdPath is the server every host runs; it must be started by absolute
// path (it re-executes itself for each connection).
const sshdPath = "/usr/sbin/sshd"

// newKey makes an ed25519 key and writes it in OpenSSH format to path (0600)
// and its public half to path.pub.
func newKey(path, comment string) (ssh.Signer, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment + "\n"
	if err := os.WriteFile(path+".pub", []byte(line), 0o644); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// configSafe reports whether s can go into sshd_config or nix.conf as one
// bare token. Our paths are made of run ids and host names, so this only
// guards against a future change slipping something odd in.
func configSafe(s string) bool {
	return s != "" && !strings.ContainsAny(s, " \t\r\n\"'#\\")
}

func sshdConfig(name, dir, listen string) (string, error) {
	etc := filepath.Join(dir, "etc")
	for _, s := range []string{etc, listen} {
		if !configSafe(s) {
			return "", fmt.Errorf("sshd_config for %s: unsafe token %q", name, s)
		}
	}
	return fmt.Sprintf(`# sandbox host %[1]s (internal/testhost); root login by key only
ListenAddress %[3]s
HostKey %[2]s/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AuthorizedKeysFile %[2]s/authorized_keys
AllowAgentForwarding yes
AllowTcpForwarding yes
SetEnv NIX_CONF_DIR=%[2]s/nix
MaxSessions 64
MaxStartups 64
UseDNS no
PrintMotd no
PrintLastLog no
Subsystem sftp internal-sftp
`, name, etc, listen), nil
}

// nixConf keeps a host's nix off the network and on its own store; the
// build users group is named only where it exists.
func nixConf() string {
	return "experimental-features = nix-command flakes\nsubstituters =\nsandbox = false\nbuild-users-group = " + nixConfBuildGroup() + "\n"
}

func nixConfBuildGroup() string {
	if _, err := user.LookupGroup("nixbld"); err == nil {
		return "nixbld"
	}
	return ""
}

// runnerUserpool is where the runner's nix keeps its build user locks.
const runnerUserpool = "/nix/var/nix/userpool"

// sshdStartScript is /run/testhost/sshd-start inside every host. It starts the
// host's sshd unless it runs already and waits until it listens; it works
// from anywhere inside the host (an SSH session, an activation script, the
// harness via nsenter), as all of those share the host's namespaces. It holds
// no per-host data: the config is reached through /run/testhost/sshd_config.
const sshdStartScript = `#!/bin/sh
# Starts this sandbox host's sshd unless it is already running (safe to rerun).
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
pidfile=/run/sshd.pid
running() {
	[ -s "$pidfile" ] || return 1
	pid=$(cat "$pidfile") || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# a recycled pid, or an sshd of another host, does not count
	[ "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/self/ns/net)" ] || return 1
	[ "$(readlink "/proc/$pid/exe")" = /usr/sbin/sshd ]
}
if running; then
	exit 0
fi
rm -f "$pidfile"
mkdir -p /run/sshd
chmod 0755 /run/sshd
/usr/sbin/sshd -f /run/testhost/sshd_config -E /run/testhost/sshd.log || exit $?
i=0
while [ "$i" -lt 200 ]; do
	if running; then
		exit 0
	fi
	sleep 0.05
	i=$((i + 1))
done
echo "sshd-start: sshd did not come up; end of /run/testhost/sshd.log:" >&2
tail -n 20 /run/testhost/sshd.log >&2
exit 1
`

// anchorScript runs as the first process of a host's private mount
// namespace: it puts the host's own directories on /nix, /run, /tmp,
// /var/lib, /boot and /root and its own boot ID over the kernel's, gives it
// the sysfs of its network namespace, says "ready" and then
// holds the namespace until its stdin closes (the owner closed it, or died). $1 is the
// host directory, $2 the build user pool to share ("" for none); nothing is
// spliced into the script.
const anchorScript = `set -e
d=$1
# /run/netns holds a mount of every named namespace; keeping copies here
# would keep other runs' namespaces alive after they are deleted.
umount -l /run/netns 2>/dev/null || :
# Build users are machine-wide but handed out per store: share the runner's
# pool so that two stores never build as the same user at once (a build
# starts by killing every process of its build user).
if [ -n "$2" ]; then
	mount --bind "$2" "$d/nix/var/nix/userpool"
fi
mount --rbind "$d/nix" /nix
mount --bind "$d/run" /run
mount --bind "$d/tmp" /tmp
# Its own /var/lib: what a machine keeps across reboots (tether's state)
# lives there, and the runner's must not be shared between hosts.
mount --bind "$d/var/lib" /var/lib
# Its own root home: the runner's dotfiles (a shell rc that starts
# background jobs, say) must not run in every SSH session of every host.
mount --bind "$d/root" /root
# Its own boot partition, where its boot loader keeps the entries, and its
# own boot ID, which changes when the host is power-cycled (power.go).
mount --bind "$d/boot" /boot
mount --bind "$d/boot_id" /proc/sys/kernel/random/boot_id
umount -l /sys
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
echo ready
exec cat >/dev/null
`
