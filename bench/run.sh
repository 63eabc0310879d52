#!/usr/bin/env bash
# Runs tether's benchmarks on sandbox hosts (network namespaces with their
# own Nix store and sshd) and updates bench/RESULTS.md. Needs root; installs
# what it needs first. Arguments go to the program, e.g.:
#   bench/run.sh -quick            a few minutes
#   bench/run.sh -only scaling     one scenario
#   bench/run.sh                   everything, ~10 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH=/usr/local/go/bin:$PATH
# No binary cache is reachable from the sandbox; nix must never wait for one.
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsubstituters =\nwarn-dirty = false'
export TETHER_BENCH_WRAPPER=1
if [[ $(id -u) != 0 ]]; then
	exec sudo --preserve-env=PATH,NIX_CONFIG,TETHER_BENCH_WRAPPER go run ./bench "$@"
fi
exec go run ./bench "$@"
