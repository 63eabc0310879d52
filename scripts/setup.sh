#!/usr/bin/env bash
# Installs what tether's demo and test suite need on a Debian/Ubuntu machine,
# and makes the Nix it installs work the way Nix's own multi-user installer
# leaves a machine:
#
#   - Debian's nix-bin ships binaries only: no /nix, no build users. Nix run
#     as root insists on its build users' group (`build-users-group` defaults
#     to nixbld for root), so every build fails on a fresh machine until the
#     group and its members exist.
#   - /nix/store owned by root:nixbld with mode 1775, /nix/var/nix for the
#     database, profiles and GC roots, /etc/nix/nix.conf naming the group.
#
# Also installs OpenSSH server (each sandbox host runs its own sshd), static
# busybox (the fixture flake's only tool), iproute2 (network namespaces),
# shellcheck (actionlint checks the workflows' scripts with it), and zsh and
# fish (the completion scripts are loaded by each shell in the tests).
# Idempotent: whatever exists already is kept as it is.
set -euo pipefail

nixbld_count=${TETHER_NIXBLD_USERS:-32}

need=()
for pkg in nix-bin openssh-server busybox-static iproute2 util-linux procps psmisc git ca-certificates passwd shellcheck zsh fish; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		need+=("$pkg")
	fi
done

if ((${#need[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "setup: missing packages: ${need[*]} (run as root or install them)" >&2
		exit 1
	fi
	echo "setup: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
	if [[ -x /usr/local/go/bin/go ]]; then
		export PATH=/usr/local/go/bin:$PATH
	else
		echo "setup: Go 1.26 or newer is required (https://go.dev/dl/)" >&2
		exit 1
	fi
fi

if [[ $(id -u) != 0 ]]; then
	# Without root there is nothing to set up: the end-to-end tests skip.
	echo "setup: not root; Nix's build users and /nix are left as they are"
	echo "setup: ok ($(nix --version), $(go version | cut -d' ' -f3))"
	exit 0
fi

# Debian's sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd
# Each sandbox host mounts its own boot loader directory here.
mkdir -p /boot

# A free id at or above $1 (the installer's 30000 range when it is free).
free_gid() {
	local id=$1
	while getent group "$id" >/dev/null; do id=$((id + 1)); done
	echo "$id"
}
free_uid() {
	local id=$1
	while getent passwd "$id" >/dev/null; do id=$((id + 1)); done
	echo "$id"
}

if ! getent group nixbld >/dev/null; then
	groupadd --gid "$(free_gid 30000)" nixbld
	echo "setup: created group nixbld"
fi
nologin=$(command -v nologin || echo /usr/sbin/nologin)
made=0
uid=30001
for i in $(seq 1 "$nixbld_count"); do
	name=nixbld$i
	if ! getent passwd "$name" >/dev/null; then
		uid=$(free_uid "$uid")
		useradd --no-create-home --no-user-group --home-dir /var/empty --shell "$nologin" \
			--uid "$uid" --gid nixbld --groups nixbld --comment "Nix build user $i" "$name"
		made=$((made + 1))
	elif ! id -nG "$name" | tr ' ' '\n' | grep -qx nixbld; then
		usermod --append --groups nixbld "$name"
	fi
	uid=$((uid + 1))
done
if ((made)); then
	echo "setup: created $made Nix build users"
fi

# The layout the installer makes; nix creates the rest of /nix/var itself.
install -d -m 0755 -o root -g root /nix /nix/var /nix/var/nix /nix/var/nix/gcroots /nix/var/nix/profiles
install -d -m 1775 -o root -g nixbld /nix/store
install -d -m 1777 /nix/var/nix/gcroots/per-user /nix/var/nix/profiles/per-user
install -d -m 0755 /etc/nix
if [[ ! -e /etc/nix/nix.conf ]]; then
	printf 'build-users-group = nixbld\n' >/etc/nix/nix.conf
	echo "setup: wrote /etc/nix/nix.conf"
elif ! grep -Eq '^[[:space:]]*build-users-group[[:space:]]*=' /etc/nix/nix.conf; then
	printf 'build-users-group = nixbld\n' >>/etc/nix/nix.conf
fi

echo "setup: ok ($(nix --version), $(go version | cut -d' ' -f3))"
