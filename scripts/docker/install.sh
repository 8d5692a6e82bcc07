#!/usr/bin/env bash
# Installs what running docker-compose.yml on this machine needs, and only what is missing:
#   - Debian's docker.io (dockerd, containerd, runc) via apt when there is no dockerd;
#   - debootstrap via apt when missing (standins.sh builds the Python base image with it);
#   - Docker Compose v2 ($COMPOSE_VERSION), built from Go modules when `docker compose version` fails, installed as
#     a CLI plugin in a private Docker config dir under the tools cache (the user's ~/.docker is not touched).
# Idempotent: a second run only checks. Root or passwordless sudo is needed for apt only.
#   scripts/docker/install.sh
# Then:  export DOCKER_CONFIG=<printed dir>   (or call <tools>/bin/docker-compose directly)
set -euo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_updated=""
apt_install() {  # apt_install PKG...: Debian packages, without starting any service they ship
  need_root "apt-get install $*"
  if [[ -z "$apt_updated" ]]; then
    "${AS_ROOT[@]}" apt-get update -q >&2
    apt_updated=1
  fi
  # A package's maintainer scripts must not start a system dockerd/containerd on /var/run/docker.sock:
  # policy-rc.d exit 101 forbids it (left alone when the machine already has one).
  local policy=/usr/sbin/policy-rc.d made_policy=""
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${AS_ROOT[@]}" tee "$policy" >/dev/null
    "${AS_ROOT[@]}" chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 || rc=$?
  [[ -n "$made_policy" ]] && "${AS_ROOT[@]}" rm -f "$policy"
  return "$rc"
}

# --- the engine ---------------------------------------------------------------------------------------------
if dockerd="$(find_bin dockerd)"; then
  log "dockerd present: $dockerd ($("$dockerd" --version 2>/dev/null || echo '?'))"
else
  log "no dockerd: installing Debian's docker.io (no service is started; scripts/docker/dockerd.sh runs a private one)"
  timed "apt-get install docker.io" apt_install docker.io
  find_bin dockerd >/dev/null || die "docker.io installed but no dockerd found"
fi
for b in containerd runc docker; do
  find_bin "$b" >/dev/null || die "$b is missing although dockerd is there (install docker.io or containerd/runc)"
done

# --- debootstrap (the Python base stand-in) --------------------------------------------------------------------
if find_bin debootstrap >/dev/null; then
  log "debootstrap present"
else
  log "no debootstrap: installing it"
  timed "apt-get install debootstrap" apt_install debootstrap
fi

# --- Docker Compose v2 -----------------------------------------------------------------------------------------
plugin="$TOOLS_DOCKER_CONFIG/cli-plugins/docker-compose"
if docker compose version >/dev/null 2>&1; then
  log "docker compose works already: $(docker compose version 2>/dev/null)"
elif DOCKER_CONFIG="$TOOLS_DOCKER_CONFIG" docker compose version >/dev/null 2>&1; then
  log "compose plugin present: $plugin"
else
  log "docker compose missing: building Compose $COMPOSE_VERSION from Go modules"
  built="$TOOLS_DIR/build/compose-$COMPOSE_VERSION/docker-compose"
  timed "building compose" go_module_build "github.com/docker/compose/v2@$COMPOSE_VERSION" ./cmd "$built" \
    "-X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION"
  mkdir -p "$(dirname "$plugin")" "$TOOLS_DIR/bin"
  install -m 755 "$built" "$plugin.tmp" && mv -f "$plugin.tmp" "$plugin"
  ln -sfn "$plugin" "$TOOLS_DIR/bin/docker-compose"
  DOCKER_CONFIG="$TOOLS_DOCKER_CONFIG" docker compose version >/dev/null \
    || die "built $plugin but 'docker compose version' still fails with DOCKER_CONFIG=$TOOLS_DOCKER_CONFIG"
  log "installed $plugin ($(DOCKER_CONFIG="$TOOLS_DOCKER_CONFIG" docker compose version))"
fi
if ! docker compose version >/dev/null 2>&1; then
  log "to use it:  export DOCKER_CONFIG=$TOOLS_DOCKER_CONFIG   (a private CLI config: no registry logins there)"
  log "        or: $TOOLS_DIR/bin/docker-compose ...            (the same binary, standalone)"
  echo "DOCKER_CONFIG=$TOOLS_DOCKER_CONFIG"
fi
log "done"
