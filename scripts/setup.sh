#!/usr/bin/env bash
# Installs what tether's demo and test suite need on a Debian/Ubuntu machine:
# Nix (for builds and the sandbox hosts' stores), OpenSSH server (each sandbox
# host runs its own sshd), static busybox (the fixture flake's only tool) and
# iproute2 (network namespaces). Safe to run any number of times.
set -euo pipefail

need=()
for pkg in nix-bin openssh-server busybox-static iproute2 util-linux procps psmisc git ca-certificates; do
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

# Debian's sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd 2>/dev/null || true

# Nix wants its build users' group; Debian's nix-bin creates it, other
# installs may not. Builds run as root when it is absent.
if ! getent group nixbld >/dev/null && [[ $(id -u) == 0 ]]; then
	echo "setup: nixbld group missing; builds will run as root" >&2
fi
echo "setup: ok ($(nix --version), $(go version | cut -d' ' -f3))"
