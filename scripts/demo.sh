#!/usr/bin/env bash
# tether's demo: deploys the example fleet to sandbox hosts on this machine
# (network namespaces with their own Nix store and sshd), upgrades it, shows
# a bad release rolling itself back, the same release with the plug pulled
# while it waits for its confirmation, then tears everything down.
# Needs root (network namespaces); installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH=/usr/local/go/bin:$PATH
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsubstituters =\nwarn-dirty = false'
exec go run ./internal/demo
