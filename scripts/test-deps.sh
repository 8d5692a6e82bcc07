#!/usr/bin/env bash
# System packages the suite needs on a fresh machine: a headless Chromium (the report test opens the HTML dashboard
# in it; tests/exporter/report/test_html.py accepts chromium, chromium-browser or google-chrome, the last preinstalled on
# GitHub-hosted runners). Installs Debian's chromium only when none is there: as root directly, otherwise through
# passwordless sudo (a GitHub-hosted runner); fails with a clear message when neither works.
set -euo pipefail
for browser in chromium chromium-browser google-chrome; do
  if command -v "$browser" >/dev/null 2>&1; then
    exit 0
  fi
done
as_root=()
if [[ "$(id -u)" -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
    echo "test-deps: no chromium, chromium-browser or google-chrome on PATH, and installing one needs root" \
         "(or passwordless sudo): apt-get install -y chromium" >&2
    exit 1
  fi
  as_root=(sudo -n)
fi
echo "test-deps: installing Debian's chromium" >&2
"${as_root[@]}" apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
