#!/usr/bin/env bash
# Cross-compiles tether-agent, the static program uploaded to target
# machines, for every architecture a deploy may meet:
#   <out>/tether-agent-linux-{amd64,arm64,arm}
# usage: scripts/build-agents.sh [out-dir [version]]   (default ./dist/agents)
#
# A version (scripts/release.sh passes its own) is stamped into the agents,
# which report it to the deployer. tether builds the same agents itself, with
# the same flags, when it carries none (internal/agentbin).
#
# The 32-bit ARM build targets ARMv6 (GOARM=6): agent.GOARCH maps armv6l,
# armv7l and armv8l boards to this one build, and an ARMv7 build would die
# with an illegal instruction on ARMv6 boards (first Raspberry Pi, Pi Zero).
# Override with GOARM=7 to build for ARMv7 and newer only.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist/agents}
ldflags='-s -w'
if [[ -n ${2:-} ]]; then
	ldflags+=" -X github.com/tetherdeploy/tether/internal/version.Version=$2"
fi
mkdir -p "$out"
for arch in amd64 arm64 arm; do
	dst="$out/tether-agent-linux-$arch"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOARM=${GOARM:-6} \
		go build -trimpath -ldflags "$ldflags" -o "$dst.tmp" ./cmd/tether-agent
	mv "$dst.tmp" "$dst"
	echo "$dst $(wc -c <"$dst") bytes"
done
