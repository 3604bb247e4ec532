#!/usr/bin/env bash
# Build the Temporal CLI (its `server start-dev` is the peer) from the Go module proxy
# into .cache/peers/temporal/bin, only when it is missing. Prints the binary's path on
# the last line of stdout; exits non-zero (with the reason on stderr) when it cannot.
# Usage: bench/peers/setup_temporal.sh    (TEMPORAL_CLI_VERSION to pick another version)
# v1.5.1: the newest served release that builds; v1.9.1 (the newest on the proxy) has a
# go.mod "replace ... => ./cliext" to a nested module its zip leaves out, which
# `go install pkg@version` refuses and the proxy does not serve on its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=${TEMPORAL_CLI_VERSION:-v1.5.1}
CACHE=$PWD/.cache/peers/temporal
BIN=$CACHE/bin/temporal
if [ -x "$BIN" ] && [ "$(cat "$CACHE/version" 2>/dev/null)" = "$VERSION" ]; then
    echo "$BIN"; exit 0
fi
command -v go >/dev/null || { echo "no go toolchain on PATH" >&2; exit 1; }
mkdir -p "$CACHE/bin"
# Module and build caches stay under .cache so nothing is written elsewhere.
export GOBIN=$CACHE/bin GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gobuild GOFLAGS=-mod=mod
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
timeout "${SETUP_TIMEOUT:-1800}" go install "github.com/temporalio/cli/cmd/temporal@$VERSION" >&2
echo "$VERSION" >"$CACHE/version"
# Only the binary is needed: drop the module and build caches (3.4 GB for v1.5.1).
go clean -modcache >&2 || true
rm -rf "$GOCACHE"
echo "$BIN"
