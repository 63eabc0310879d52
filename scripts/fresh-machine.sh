#!/usr/bin/env bash
# Checks scripts/setup.sh the way a new machine meets it. A machine that ran
# the suite before has /nix and Nix's build users; a fresh one has neither,
# and a setup that forgot them once passed CI on a machine that had both.
#
# In a private mount namespace this hides both: /nix becomes an empty tmpfs,
# and /etc a copy whose account files have no nixbld entries and which has
# no /etc/nix. There it runs setup.sh, then COMMAND (default: one real
# deploy to sandbox hosts: a build, sshd, a closure copy, an activation).
# Nothing of it outlives the namespace.
#
#   bash scripts/fresh-machine.sh [--setup SCRIPT] [COMMAND ...]
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
	echo "fresh-machine: needs root (mount namespaces)" >&2
	exit 1
fi

if [[ ${TETHER_FRESH_INSIDE:-} != 1 ]]; then
	# /nix must exist to be covered; creating the empty directory is what
	# setup.sh does first on a real fresh machine anyway.
	[[ -d /nix ]] || mkdir -m 0755 /nix
	work=$(mktemp -d /var/tmp/tether-fresh.XXXXXX)
	trap 'rm -rf "$work"' EXIT
	TETHER_FRESH_INSIDE=1 TETHER_FRESH_WORK=$work \
		unshare --mount --propagation private -- bash "$0" "$@"
	exit
fi

setup=scripts/setup.sh
if [[ ${1:-} == --setup ]]; then
	setup=$2
	shift 2
fi
if (($# == 0)); then
	set -- env TETHER_E2E=require go test -count=1 -run '^TestDeployFleetFromDeployNodes$' ./internal/e2e/
fi

work=$TETHER_FRESH_WORK
# What runs in here may check a fresh machine itself (test.sh does).
unset TETHER_FRESH_INSIDE TETHER_FRESH_WORK
cp -a /etc "$work/etc"
for f in passwd group shadow gshadow passwd- group- shadow- gshadow- subuid subgid; do
	if [[ -f $work/etc/$f ]]; then
		sed -i -E '/^nixbld[0-9]*:/d' "$work/etc/$f"
	fi
done
rm -rf "$work/etc/nix"
mount --bind "$work/etc" /etc
mount -t tmpfs -o mode=0755 fresh-nix /nix

if getent group nixbld >/dev/null || [[ -n $(ls -A /nix) ]]; then
	echo "fresh-machine: the simulation leaks the real machine's Nix setup" >&2
	exit 1
fi
echo "fresh-machine: /nix empty, no nixbld accounts, no /etc/nix; running $setup"
bash "$setup"
echo "fresh-machine: running $*"
"$@"
