#!/usr/bin/env bash
# System packages the suite needs on a fresh machine, each installed only when missing, as root directly or through
# passwordless sudo (a GitHub-hosted runner); a clear message when neither works:
#   - a headless Chromium (the report test opens the HTML dashboard in it; tests/exporter/report/test_html.py accepts
#     chromium, chromium-browser or google-chrome, the last preinstalled on GitHub-hosted runners): Debian's chromium;
#   - what the compose test (tests/integration/deploy/test_compose_real.py) runs docker-compose.yml with:
#     scripts/docker/install.sh (Debian's docker.io when there is no dockerd, debootstrap, and Compose v2 built from
#     Go modules when `docker compose version` fails). AI_DIARY_DOCKER_INSTALL names another installer (tests).
set -euo pipefail
here="${BASH_SOURCE[0]%/*}"
docker_install="${AI_DIARY_DOCKER_INSTALL:-$here/docker/install.sh}"

browser_present() {
  local browser
  for browser in chromium chromium-browser google-chrome; do
    command -v "$browser" >/dev/null 2>&1 && return 0
  done
  return 1
}

if ! browser_present; then
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
fi

# stdout: install.sh names the private DOCKER_CONFIG it installed compose into; the test harness reads it again
"$docker_install" >&2
