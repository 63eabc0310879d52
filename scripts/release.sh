#!/usr/bin/env bash
# Builds tether's release archives: tether for linux and darwin × amd64 and
# arm64, each carrying the linux agents (amd64, arm64, arm) inside, so the
# binary alone deploys:
#   <outdir>/tether_<version>_<os>_<arch>.tar.gz   tether, README.md, LICENSE*
#   <outdir>/SHA256SUMS
# usage: scripts/release.sh VERSION [OUTDIR]        (default ./dist/release)
#
# Reproducible: the same tree and the same Go version give the same bytes
# (-trimpath, no build id, fixed GOAMD64/GOARM64, a tar with sorted names,
# owner 0 and the commit's time, gzip without name or time). Check a
# release by building it again and comparing SHA256SUMS.
#
# The agents reach the embed through -overlay, so the working tree is never
# written (internal/agentbin/embed_on.go, build tag tether_embed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if (($# < 1)) || [[ ! $1 =~ ^v[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]]; then
	echo "usage: scripts/release.sh VERSION [OUTDIR]   (VERSION like v1.2.3)" >&2
	exit 2
fi
version=$1
out=${2:-dist/release}
mkdir -p "$out"
out=$(cd "$out" && pwd)

export CGO_ENABLED=0 GOFLAGS= GOAMD64=v1 GOARM64=v8.0 GOARM=6
: "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
echo "release $version with $(go version), time $SOURCE_DATE_EPOCH, into $out"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bash scripts/build-agents.sh "$work/agents" "$version" >/dev/null
{
	echo '{"Replace": {'
	sep=
	for arch in amd64 arm64 arm; do
		printf '%s"%s": "%s"\n' "$sep" "$root/internal/agentbin/agents/tether-agent-linux-$arch" "$work/agents/tether-agent-linux-$arch"
		sep=,
	done
	echo '}}'
} >"$work/overlay.json"

ldflags="-s -w -buildid= -X github.com/tetherdeploy/tether/internal/version.Version=$version"
archives=()
for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64; do
	goos=${target%/*} goarch=${target#*/}
	name=tether_${version}_${goos}_${goarch}
	stage=$work/stage/$name
	mkdir -p "$stage"
	GOOS=$goos GOARCH=$goarch go build -trimpath -tags tether_embed -overlay "$work/overlay.json" \
		-ldflags "$ldflags" -o "$stage/tether" ./cmd/tether
	for f in README.md LICENSE*; do
		[[ -f $f ]] && install -m 0644 "$f" "$stage/$f"
	done
	chmod 0755 "$stage" "$stage/tether"
	tar --sort=name --format=gnu --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
		-C "$work/stage" -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
	archives+=("$name.tar.gz")
	echo "$out/$name.tar.gz $(wc -c <"$out/$name.tar.gz") bytes"
done
(cd "$out" && sha256sum "${archives[@]}" >SHA256SUMS)
echo "$out/SHA256SUMS"
