#!/usr/bin/env bash
# Runs tether's whole test suite: static checks, unit tests and the end-to-end
# tests on sandbox hosts (real Nix, real sshd, real closures). Installs what
# it needs first. As root the end-to-end tests are required to run: a skip is
# a failure. Extra arguments go to `go test` (e.g. -run TestDeploy).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export PATH=/usr/local/go/bin:$PATH

# No binary cache is reachable from the sandbox; nix must never wait for one.
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsubstituters =\nwarn-dirty = false'

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [[ -n $unformatted ]]; then
	echo "gofmt needed on:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

# The CLI is what a fleet owner runs from a Mac; Linux-only packages (sandbox
# hosts' tools, bench, demo) carry build constraints instead.
for arch in arm64 amd64; do
	echo "== go vet, go build ./cmd/tether (darwin/$arch)"
	GOOS=darwin GOARCH=$arch go vet ./...
	GOOS=darwin GOARCH=$arch go build -o /dev/null ./cmd/tether
done

echo "== actionlint"
# Pinned; it runs shellcheck over the run: scripts (setup.sh installs it).
actionlint_version=v1.7.12
tools=$PWD/dist/tools/actionlint-$actionlint_version
GOBIN=$tools go install "github.com/rhysd/actionlint/cmd/actionlint@$actionlint_version"
"$tools/actionlint" .github/workflows/*.yml examples/workflows/*.yml

# staticcheck works offline once installed (the first install needs the
# Go module proxy). govulncheck is not run here: it needs its vulnerability
# database from the network at every run.
staticcheck_version=v0.8.2
echo "== staticcheck $staticcheck_version"
staticcheck=$(go env GOPATH)/bin/staticcheck
if ! "$staticcheck" -version 2>/dev/null | grep -q "(${staticcheck_version#v})"; then
	go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
fi
"$staticcheck" ./...

if [[ -x scripts/build-agents.sh ]]; then
	echo "== agents"
	bash scripts/build-agents.sh dist/agents
fi

if [[ $(id -u) == 0 ]]; then
	export TETHER_E2E=require
else
	echo "!! not root: end-to-end tests on sandbox hosts will be SKIPPED" >&2
fi

if [[ $(id -u) == 0 ]]; then
	# A crashed earlier run must not break this one.
	go run ./internal/testhost/cmd/testhost clean

	# This machine has /nix and Nix's build users now; a fresh one has
	# neither. Run setup and a real deploy where both are hidden.
	echo "== fresh machine"
	bash scripts/fresh-machine.sh
fi

echo "== go test"
go test -count=1 -timeout 45m "$@" ./...

if [[ $(id -u) == 0 ]]; then
	echo "== leftovers"
	# Runs whose owner still lives belong to another process (a benchmark
	# running beside the suite); what the suite leaked has no owner left.
	left=$(go run ./internal/testhost/cmd/testhost leftovers | grep -v ', live)$' || true)
	if [[ -n $left ]]; then
		echo "the test suite left sandbox hosts behind:" >&2
		echo "$left" >&2
		exit 1
	fi
	echo "none"
fi
