#!/usr/bin/env bash
# Build the ai-diary collector with the OpenTelemetry Collector Builder (OCB).
#   collector/build.sh            -> collector/_build/otelcol-ai-diary (reused while manifest.yaml is unchanged)
#   FORCE=1 collector/build.sh    -> rebuild anyway
#   GO=/path/to/go collector/build.sh  -> use that Go toolchain
# Needs Go (>= 1.24) and the Go module proxy. Exits non-zero when it cannot build (a previous binary is kept).
set -euo pipefail

BUILDER_VERSION="v0.161.0"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/_build"
bin="$out/otelcol-ai-diary"
stamp="$out/.manifest.sha256"
export GOBIN="$out/bin"

GO="${GO:-go}"
command -v "$GO" >/dev/null || { echo "build.sh: '$GO' not found (install Go >= 1.24 or set GO=/path/to/go)" >&2; exit 2; }
[[ "$GO" == */* ]] && export PATH="$(dirname "$GO"):$PATH"  # the builder runs the first go on PATH
mkdir -p "$out" "$GOBIN"

want="$( { cat "$here/manifest.yaml"; echo "$BUILDER_VERSION"; } | sha256sum | cut -d' ' -f1)"
if [[ -z "${FORCE:-}" && -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "build.sh: $bin is up to date (manifest unchanged)"
  exit 0
fi

builder="$GOBIN/builder"
if ! { [[ -x "$builder" ]] && "$builder" version 2>/dev/null | grep -q "$BUILDER_VERSION"; }; then
  echo "build.sh: installing builder $BUILDER_VERSION into $GOBIN"
  "$GO" install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
fi

echo "build.sh: building the collector (first build downloads Go modules; takes a few minutes)"
rm -f "$stamp"
cd "$here"
"$builder" --config "$here/manifest.yaml"
cp "$out/src/otelcol-ai-diary" "$bin.tmp"
mv -f "$bin.tmp" "$bin"
"$bin" --version
echo "$want" > "$stamp"
echo "build.sh: built $bin"
