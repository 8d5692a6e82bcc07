#!/usr/bin/env bash
# Stand-in images for a machine whose Docker engine cannot pull from any registry. For each image the repo needs:
#   - present and not a stand-in (pulled or loaded earlier)  -> left alone;
#   - a stand-in built from the same inputs                  -> reused;
#   - otherwise a bounded `docker pull` probe; when the registry answers, the real image is used, else a stand-in
#     is built and tagged with EXACTLY the name the repo uses (said loudly: it is not the upstream image).
# Stand-ins (labels ai-diary.standin=true, ai-diary.standin.for, ai-diary.standin.key):
#   python base (Dockerfile ARG PYTHON_IMAGE): Debian bookworm minbase by debootstrap with python3, venv, pip,
#       python-is-python3, ca-certificates (Python 3.11.2, not 3.11.14); EXTERNALLY-MANAGED removed (pip installs
#       like in the python image); no docs, man pages or translations (like debian:bookworm-slim, dpkg excludes);
#       the host's CA bundle; SSL_CERT_FILE set (uv does not read the system store).
#   collector (docker-compose.yml otel-collector image): FROM scratch, collector/_build/otelcol-ai-diary (our OCB
#       build: only the components otel-collector.yaml uses) at /otelcol-contrib, uid 10001, ENTRYPOINT and CMD
#       of the contrib image (["/otelcol-contrib"], ["--config", "/etc/otelcol-contrib/config.yaml"]).
#   jaeger (docker-compose.yml jaeger image): the real Jaeger v2 binary built from github.com/jaegertracing/jaeger
#       module $JAEGER_MODULE_VERSION, FROM scratch + busybox-static's wget (the compose healthcheck runs
#       `wget -q -O /dev/null http://127.0.0.1:13133/status`, the upstream image being Alpine-based),
#       JAEGER_LISTEN_HOST=0.0.0.0, uid 10001, ENTRYPOINT /cmd/jaeger/jaeger-linux like upstream.
# Needs DOCKER_HOST (scripts/docker/dockerd.sh start), Go (collector, jaeger), root or passwordless sudo for
# debootstrap. Inputs are cached in the tools cache (rootfs tarball, jaeger binary, busybox).
#   scripts/docker/standins.sh [python] [collector] [jaeger]      (default: all three)
# Environment: AI_DIARY_REPO (the checkout whose Dockerfile, docker-compose.yml and collector/ are used; default:
# the one holding this script); STANDINS_FORCE=1 rebuilds the stand-ins; STANDINS_PULL_TIMEOUT (s, default 20) bounds each probe;
# DEBIAN_MIRROR overrides the mirror found in /etc/apt/sources.list*.
set -euo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -n "${DOCKER_HOST:-}" ]] || die "DOCKER_HOST is not set: export \"\$(scripts/docker/dockerd.sh start STATE_DIR)\""
docker info >/dev/null 2>&1 || die "no Docker engine answers on DOCKER_HOST=$DOCKER_HOST"
repo="$(cd "${AI_DIARY_REPO:-$(dirname "${BASH_SOURCE[0]}")/../..}" && pwd)"   # whose Dockerfile/compose file
cache="$TOOLS_DIR/standins"
mkdir -p "$cache"
export DOCKER_BUILDKIT=0   # the classic builder: BuildKit would fetch frontends/metadata from a registry
pull_timeout="${STANDINS_PULL_TIMEOUT:-20}"
STANDIN_REV=2              # bump when this script changes what a stand-in contains

python_image="$(sed -n 's/^ARG PYTHON_IMAGE=\(.*\)$/\1/p' "$repo/Dockerfile" | head -1)"
compose_image() {  # compose_image REPOSITORY: the image: of docker-compose.yml with that repository
  sed -n "s|^[[:space:]]*image:[[:space:]]*[\"']\{0,1\}\($1:[^\"'[:space:]]*\).*|\1|p" "$repo/docker-compose.yml" | head -1
}
collector_image="$(compose_image otel/opentelemetry-collector-contrib)"
jaeger_image="$(compose_image jaegertracing/jaeger)"
[[ -n "$python_image" ]] || die "no 'ARG PYTHON_IMAGE=' in $repo/Dockerfile"
[[ -n "$collector_image" ]] || die "no otel/opentelemetry-collector-contrib image in $repo/docker-compose.yml"
[[ -n "$jaeger_image" ]] || die "no jaegertracing/jaeger image in $repo/docker-compose.yml"

ca_bundle=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
  [[ -s "$f" ]] && { ca_bundle="$f"; break; }
done
[[ -n "$ca_bundle" ]] || die "no CA bundle on this host (/etc/ssl/certs/ca-certificates.crt)"

sha() { sha256sum | cut -c1-16; }
label() { docker image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

# need IMAGE KEY: true when IMAGE must be built as a stand-in (absent or outdated stand-in, registry unreachable).
need() {
  local image="$1" key="$2" err
  if docker image inspect "$image" >/dev/null 2>&1; then
    if [[ "$(label "$image" ai-diary.standin)" != true ]]; then
      log "$image: present and not a stand-in: using it"
      return 1
    fi
    if [[ -z "${STANDINS_FORCE:-}" && "$(label "$image" ai-diary.standin.key)" == "$key" ]]; then
      loud "$image is a STAND-IN (built here, not the upstream image): reusing it"
      return 1
    fi
  fi
  log "probing the registry: docker pull $image (at most $pull_timeout s)"
  if err="$(timeout "$pull_timeout" docker pull -q "$image" 2>&1)"; then
    if [[ "$(label "$image" ai-diary.standin)" != true ]]; then
      log "$image: pulled from the registry: no stand-in needed"
      return 1
    fi
  fi
  log "registry unreachable for $image: ${err##*$'\n'}"
  return 0
}

# build_ctx IMAGE CTX: classic build of CTX/Dockerfile (no RUN needs a network).
build_ctx() {
  docker build -q --network=none --force-rm -t "$1" "$2" >/dev/null
}

# ---- python base ---------------------------------------------------------------------------------------------
debian_mirror() {  # the Debian archive this machine's apt uses (one-line or deb822 sources), else deb.debian.org
  local m
  m="$( { grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list || true; } \
        | awk -v s="$DEBIAN_SUITE" '$0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i == s) { u = ($2 ~ /^\[/) ? $3 : $2; print u; exit } }')"
  if [[ -z "$m" ]]; then
    m="$(awk -v s="$DEBIAN_SUITE" '
          /^[[:space:]]*$/ { if (ok && uri != "") { print uri; exit } ok = 0; uri = ""; next }
          /^URIs:/ { if ($2 !~ /security/) uri = $2 }
          /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
          END { if (ok && uri != "") print uri }' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
  fi
  echo "${DEBIAN_MIRROR:-${m:-http://deb.debian.org/debian}}"
}

python_standin() {
  local includes="python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
  local rootfs_key rootfs_tar raw key ctx mirror t0
  rootfs_key="$(echo "$DEBIAN_SUITE minbase $includes rev$STANDIN_REV" | sha)"
  rootfs_tar="$cache/python-rootfs-$DEBIAN_SUITE-$rootfs_key.tar"
  raw="ai-diary-standin/debian-python:$DEBIAN_SUITE-$rootfs_key"
  key="$( { echo "$rootfs_key rev$STANDIN_REV"; cat "$ca_bundle"; } | sha)"
  need "$python_image" "$key" || return 0
  t0=$SECONDS
  if [[ ! -s "$rootfs_tar" ]]; then
    need_root "debootstrap"
    find_bin debootstrap >/dev/null || die "no debootstrap: run scripts/docker/install.sh"
    mirror="$(debian_mirror)"
    local tmp; tmp="$(mktemp -d "$cache/rootfs.XXXXXX")"
    log "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror (about a minute)"
    if ! "${AS_ROOT[@]}" nice -n 10 "$(find_bin debootstrap)" --variant=minbase --include="$includes" \
         "$DEBIAN_SUITE" "$tmp/rootfs" "$mirror" > "$cache/debootstrap.log" 2>&1; then
      tail -20 "$cache/debootstrap.log" >&2
      "${AS_ROOT[@]}" rm -rf "$tmp"
      die "debootstrap failed (log: $cache/debootstrap.log)"
    fi
    # like the python image: pip may install into the system interpreter; no apt lists or caches in the image;
    # resolv.conf/hostname/hosts come from the engine
    "${AS_ROOT[@]}" rm -rf "$tmp/rootfs/usr/lib/python3.11/EXTERNALLY-MANAGED" \
      "$tmp/rootfs/var/lib/apt/lists/"* "$tmp/rootfs/var/cache/apt/"*.bin "$tmp/rootfs/var/cache/apt/archives/"*.deb \
      "$tmp/rootfs/var/log/"*.log "$tmp/rootfs/etc/hostname"
    # like debian:bookworm-slim (the python:*-slim images' base): no documentation, man pages or translations
    # (~50 MB), and dpkg keeps them out of later installs too; the copyright files stay
    "${AS_ROOT[@]}" find "$tmp/rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    "${AS_ROOT[@]}" find "$tmp/rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    "${AS_ROOT[@]}" rm -rf "$tmp/rootfs/usr/share/man/"* "$tmp/rootfs/usr/share/locale/"* "$tmp/rootfs/usr/share/info/"* \
      "$tmp/rootfs/usr/share/groff/"* "$tmp/rootfs/usr/share/lintian/"*
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/locale/*' \
      | "${AS_ROOT[@]}" tee "$tmp/rootfs/etc/dpkg/dpkg.cfg.d/docker" >/dev/null
    # shellcheck disable=SC2016  # expanded by that sh
    "${AS_ROOT[@]}" sh -c ': > "$1/etc/resolv.conf"' sh "$tmp/rootfs"
    "${AS_ROOT[@]}" tar --numeric-owner --xattrs -C "$tmp/rootfs" -cf "$tmp/rootfs.tar" .
    "${AS_ROOT[@]}" chown "$(id -u):$(id -g)" "$tmp/rootfs.tar"
    mv -f "$tmp/rootfs.tar" "$rootfs_tar"
    "${AS_ROOT[@]}" rm -rf "$tmp"
    log "rootfs cached: $rootfs_tar ($(du -h "$rootfs_tar" | cut -f1))"
  else
    log "reusing the rootfs tarball $rootfs_tar"
  fi
  if ! docker image inspect "$raw" >/dev/null 2>&1; then
    docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$rootfs_tar" "$raw" >/dev/null
  fi
  ctx="$(mktemp -d "$cache/ctx.XXXXXX")"
  cp "$ca_bundle" "$ctx/ca-certificates.crt"
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM $raw
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL ai-diary.standin=true ai-diary.standin.for="$python_image" ai-diary.standin.key="$key" \\
      ai-diary.standin.source="debootstrap --variant=minbase $DEBIAN_SUITE + $includes"
CMD ["python3"]
DOCKERFILE
  build_ctx "$python_image" "$ctx"
  rm -rf "$ctx"
  # what the Dockerfile and docker-compose.yml run in it
  docker run --rm --network=none --user 0:0 "$python_image" sh -ec '
    python --version; pip --version >/dev/null; python -m venv --without-pip /tmp/v; test -x /tmp/v/bin/python
    command -v groupadd useradd >/dev/null; test -x /usr/sbin/nologin
    python -c "import sqlite3, ssl, ctypes, venv, ensurepip"' >&2 \
    || die "the python stand-in lacks what the Dockerfile runs (pip, venv, groupadd/useradd, nologin)"
  loud "$python_image is a STAND-IN: Debian $DEBIAN_SUITE minbase + Debian's Python 3.11 (not the upstream python image)" \
       "built in $((SECONDS - t0)) s"
}

# ---- collector -----------------------------------------------------------------------------------------------
collector_standin() {
  local bin="$repo/collector/_build/otelcol-ai-diary" key ctx t0=$SECONDS go
  if [[ ! -x "$bin" ]] || ! (cd "$repo" && collector/build.sh >/dev/null 2>&1); then
    log "building our collector: collector/build.sh (first time: several minutes)"
    (cd "$repo" && nice -n 10 collector/build.sh >&2) || die "collector/build.sh failed"
  fi
  # FROM scratch needs a static binary (no libc there)
  if go="$(find_go 2>/dev/null)" && "$go" version -m "$bin" >/dev/null 2>&1; then
    "$go" version -m "$bin" | grep -q 'CGO_ENABLED=0' || die "$bin is not built with CGO_ENABLED=0: it would not run FROM scratch"
  elif LC_ALL=C grep -aq '/lib64/ld-linux' "$bin"; then
    die "$bin is dynamically linked: it would not run FROM scratch"
  fi
  key="$( { echo "rev$STANDIN_REV"; cat "$bin" "$ca_bundle"; } | sha)"
  need "$collector_image" "$key" || return 0
  ctx="$(mktemp -d "$cache/ctx.XXXXXX")"
  cp "$bin" "$ctx/otelcol-contrib"
  chmod 755 "$ctx/otelcol-contrib"
  cp "$ca_bundle" "$ctx/ca-certificates.crt"
  # a default config for CMD (compose mounts its own over it): OTLP in, nothing out, with our components only
  cat > "$ctx/config.yaml" <<'YAML'
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 0.0.0.0:4317}
      http: {endpoint: 0.0.0.0:4318}
exporters:
  nop: {}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [nop]}
    metrics: {receivers: [otlp], exporters: [nop]}
    logs: {receivers: [otlp], exporters: [nop]}
YAML
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
USER 10001:10001
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY otelcol-contrib /otelcol-contrib
COPY config.yaml /etc/otelcol-contrib/config.yaml
ENTRYPOINT ["/otelcol-contrib"]
CMD ["--config", "/etc/otelcol-contrib/config.yaml"]
EXPOSE 4317 4318 55679
LABEL ai-diary.standin=true ai-diary.standin.for="$collector_image" ai-diary.standin.key="$key" \\
      ai-diary.standin.source="collector/build.sh (OCB, collector/manifest.yaml)"
DOCKERFILE
  build_ctx "$collector_image" "$ctx"
  rm -rf "$ctx"
  docker run --rm --network=none "$collector_image" --version >&2 || die "the collector stand-in does not run"
  docker run --rm --network=none "$collector_image" validate --config /etc/otelcol-contrib/config.yaml >&2 \
    || die "the collector stand-in rejects its default config"
  loud "$collector_image is a STAND-IN: our OCB collector (collector/manifest.yaml components only)," \
       "not the contrib distribution; built in $((SECONDS - t0)) s"
}

# ---- jaeger --------------------------------------------------------------------------------------------------
busybox_static() {  # a static busybox from Debian's busybox-static .deb (downloaded, not installed)
  local dir="$cache/busybox" deb
  if [[ ! -x "$dir/bin/busybox" ]]; then
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
      die "need apt-get and dpkg-deb for busybox-static"
    fi
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    (cd "$dir.tmp" && apt-get download busybox-static >&2) || die "apt-get download busybox-static failed (apt-get update first?)"
    deb="$(ls "$dir.tmp"/busybox-static_*.deb)"
    dpkg-deb -x "$deb" "$dir.tmp/x"
    mkdir -p "$dir.tmp/bin" && mv "$dir.tmp/x/bin/busybox" "$dir.tmp/bin/busybox"
    rm -rf "$dir.tmp/x" "$deb" "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir/bin/busybox"
}

jaeger_standin() {
  local bin="$TOOLS_DIR/build/jaeger-$JAEGER_MODULE_VERSION/jaeger" busybox key ctx t0=$SECONDS
  timed "jaeger binary" go_module_build "github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION" ./cmd/jaeger "$bin" \
    "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_MODULE_VERSION"
  busybox="$(busybox_static)"
  key="$( { echo "rev$STANDIN_REV"; cat "$bin" "$busybox" "$ca_bundle"; } | sha)"
  need "$jaeger_image" "$key" || return 0
  ctx="$(mktemp -d "$cache/ctx.XXXXXX")"
  mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/cmd/jaeger" "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/tmp"
  chmod 1777 "$ctx/rootfs/tmp"
  cp "$busybox" "$ctx/rootfs/bin/busybox"
  ln -s busybox "$ctx/rootfs/bin/wget"
  ln -s busybox "$ctx/rootfs/bin/sh"
  cp "$bin" "$ctx/rootfs/cmd/jaeger/jaeger-linux"
  cp "$ca_bundle" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/bin JAEGER_LISTEN_HOST=0.0.0.0
EXPOSE 4317 4318 5778 5779 9411 13132 13133 14250 14268 16686
VOLUME ["/tmp"]
ENTRYPOINT ["/cmd/jaeger/jaeger-linux"]
USER 10001
LABEL ai-diary.standin=true ai-diary.standin.for="$jaeger_image" ai-diary.standin.key="$key" \\
      ai-diary.standin.source="github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION ./cmd/jaeger + busybox-static wget"
DOCKERFILE
  build_ctx "$jaeger_image" "$ctx"
  rm -rf "$ctx"
  docker run --rm --network=none "$jaeger_image" version >&2 || die "the jaeger stand-in does not run"
  docker run --rm --network=none --entrypoint wget "$jaeger_image" --help 2>&1 | grep -q Usage \
    || die "the jaeger stand-in has no wget for the compose healthcheck"
  loud "$jaeger_image is a STAND-IN: Jaeger v2 built from github.com/jaegertracing/jaeger@$JAEGER_MODULE_VERSION" \
       "(not the upstream Alpine image; no UI assets); built in $((SECONDS - t0)) s"
}

what=("$@")
[[ ${#what[@]} -gt 0 ]] || what=(python collector jaeger)
for w in "${what[@]}"; do
  case "$w" in
    python) timed "python base ($python_image)" python_standin ;;
    collector) timed "collector ($collector_image)" collector_standin ;;
    jaeger) timed "jaeger ($jaeger_image)" jaeger_standin ;;
    *) die "unknown stand-in '$w' (python, collector, jaeger)" ;;
  esac
done
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
  | grep -E "^($python_image|$collector_image|$jaeger_image)\b" >&2 || true
