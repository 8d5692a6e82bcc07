#!/usr/bin/env bash
# System packages the suite needs on a fresh machine: Debian's headless Chromium (the report test opens the
# HTML dashboard in it). Installs only what is missing; needs root (CI and these machines run as root).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  echo "test-deps: installing Debian's chromium" >&2
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
fi
