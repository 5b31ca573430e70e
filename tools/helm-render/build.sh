#!/usr/bin/env bash
# Builds helm-render offline against Debian's Go packages (GOPATH mode, /usr/share/gocode):
#   apt-get install golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev
# Usage: tools/helm-render/build.sh OUTPUT_BINARY [GOCACHE_DIR]
# The Go build cache (default: next to the output) makes a rebuild take well under a second.
set -euo pipefail
out="${1:?usage: build.sh OUTPUT_BINARY [GOCACHE_DIR]}"
src="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cache="${2:-$(dirname "$out")/.gocache}"
if ! command -v go > /dev/null; then
  echo "helm-render: 'go' not found; run tools/install-deps.sh (Debian: golang-go)" >&2
  exit 1
fi
for d in github.com/Masterminds/sprig gopkg.in/yaml.v2; do
  if [ ! -d "/usr/share/gocode/src/$d" ]; then
    echo "helm-render: /usr/share/gocode/src/$d missing; run tools/install-deps.sh" >&2
    exit 1
  fi
done
cd "$src"
env -u GOFLAGS GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$cache" GOPROXY=off \
  go build -trimpath -o "$out" .
