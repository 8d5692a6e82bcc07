#!/usr/bin/env bash
# Build the ai-diary collector with the OpenTelemetry Collector Builder (OCB).
#   collector/build.sh            -> collector/_build/otelcol-ai-diary (reused while manifest.yaml is unchanged)
#   FORCE=1 collector/build.sh    -> rebuild anyway
# Needs Go (>= 1.24) and the Go module proxy. Exits non-zero when it cannot build.
set -euo pipefail

BUILDER_VERSION="v0.161.0"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/_build"
bin="$out/otelcol-ai-diary"
stamp="$out/.manifest.sha256"
export GOBIN="$out/bin"

command -v go >/dev/null || { echo "build.sh: 'go' not found on PATH (install Go >= 1.24)" >&2; exit 2; }
mkdir -p "$out" "$GOBIN"

want="$(cat "$here/manifest.yaml" "$here/build.sh" | sha256sum | cut -d' ' -f1)"
if [[ -z "${FORCE:-}" && -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "build.sh: $bin is up to date (manifest unchanged)"
  exit 0
fi

builder="$GOBIN/builder"
if ! { [[ -x "$builder" ]] && "$builder" version 2>/dev/null | grep -q "$BUILDER_VERSION"; }; then
  echo "build.sh: installing builder $BUILDER_VERSION into $GOBIN"
  go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
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
