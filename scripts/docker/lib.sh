# shellcheck shell=bash
# shellcheck disable=SC2034  # variables for the scripts that source this file
# Shared helpers of scripts/docker/*.sh (sourced, not run). Everything these scripts download, build or keep lives
# under the tools cache, never inside the repository:
#   ${AI_DIARY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ai-diary-tools}
# Pinned versions (change them here, deliberately):
COMPOSE_VERSION="${COMPOSE_VERSION:-v2.40.3}"
JAEGER_MODULE_VERSION="${JAEGER_MODULE_VERSION:-v1.75.0}"   # github.com/jaegertracing/jaeger (ships Jaeger v2 cmd/jaeger)
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"

TOOLS_DIR="${AI_DIARY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ai-diary-tools}"
# The Docker CLI config dir that holds the compose plugin (cli-plugins/docker-compose) built by install.sh.
TOOLS_DOCKER_CONFIG="$TOOLS_DIR/docker-config"
PROG="$(basename "${BASH_SOURCE[1]:-$0}")"

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
loud() {  # a banner on stderr for things the user must not miss
  printf '%s: ************************************************************\n' "$PROG" >&2
  local line; for line in "$@"; do printf '%s: * %s\n' "$PROG" "$line" >&2; done
  printf '%s: ************************************************************\n' "$PROG" >&2
}

# AS_ROOT: prefix for commands that need root: empty as root, "sudo -n" with passwordless sudo, else fail.
AS_ROOT=()
need_root() {
  if [[ "$(id -u)" -eq 0 ]]; then AS_ROOT=(); return 0; fi
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then AS_ROOT=(sudo -n); return 0; fi
  die "$1 needs root (or passwordless sudo)"
}

# find_bin NAME: a binary on PATH or in the sbin directories a non-root PATH may lack.
find_bin() {
  local name="$1" dir
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  for dir in /usr/local/sbin /usr/sbin /sbin /usr/local/bin /usr/bin /bin; do
    [[ -x "$dir/$name" ]] && { echo "$dir/$name"; return 0; }
  done
  return 1
}

# find_go: a Go toolchain >= 1.24 (GO=/path/to/go wins), or fail with a clear message.
find_go() {
  local go="${GO:-}" v
  if [[ -z "$go" ]]; then
    go="$(command -v go 2>/dev/null || true)"
    [[ -z "$go" && -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go
  fi
  [[ -n "$go" && -x "$go" ]] || die "no Go toolchain (install Go >= 1.24 or set GO=/path/to/go)"
  v="$("$go" env GOVERSION 2>/dev/null || true)"   # go1.26.8
  if [[ ! "$v" =~ ^go1\.([0-9]+) ]] || (( BASH_REMATCH[1] < 24 )); then
    die "$go is ${v:-unknown}: Go >= 1.24 is needed"
  fi
  echo "$go"
}

# go_module_build MODULE@VERSION PKG OUT [LDFLAGS]: builds PKG (e.g. ./cmd) of a module fetched with
# `go mod download` (go install refuses modules with replace/exclude directives) in a writable copy of the module
# directory, CGO_ENABLED=0 (static), to OUT. Reused when OUT exists.
go_module_build() {
  local modver="$1" pkg="$2" out="$3" ldflags="${4:-}" go dir src
  if [[ -x "$out" ]]; then log "reusing $out"; return 0; fi
  go="$(find_go)"
  log "go mod download $modver (first time: several minutes)"
  dir="$(GOFLAGS=-mod=mod "$go" mod download -json "$modver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || die "go mod download $modver gave no module directory"
  src="$TOOLS_DIR/src/${modver//[\/@]/_}"
  rm -rf "$src.tmp" && mkdir -p "$(dirname "$src")"
  cp -r "$dir" "$src.tmp" && chmod -R u+w "$src.tmp"    # the module cache is read-only
  rm -rf "$src" && mv "$src.tmp" "$src"
  log "building $modver $pkg (CGO_ENABLED=0, nice; a few minutes on 2 cores)"
  mkdir -p "$(dirname "$out")"
  ( cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local nice -n 10 \
      "$go" build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg" )
  mv -f "$out.tmp" "$out"
  rm -rf "$src"   # the module cache keeps the sources; the copy was only writable scratch
  log "built $out ($(du -h "$out" | cut -f1))"
}

# timed LABEL CMD...: runs CMD, then logs how long it took.
timed() {
  local label="$1" t0=$SECONDS; shift
  "$@"
  log "$label took $((SECONDS - t0)) s"
}
