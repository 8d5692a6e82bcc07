#!/usr/bin/env bash
# End-to-end run of the real docker-compose.yml on a machine without registry access, timed step by step:
# install.sh, a private dockerd, the stand-in images, `docker compose build`, `up` until every service is healthy,
# HTTP checks through the published ports (127.0.0.1 only), telemetry through the collector into Jaeger and the
# log files, `down -v`, and the dockerd stopped again (when this script started it).
#   scripts/docker/compose-smoke.sh [REPO_DIR]       (default: the repository holding this script)
# The repository is not modified: the env file is written to the state dir (compose --env-file).
# Environment: AI_DIARY_DOCKER_STATE (state dir of the private dockerd, default <tools cache>/run),
#   SMOKE_APP_PORT (18000), SMOKE_JAEGER_PORT (26686), SMOKE_HEALTH_TIMEOUT (s, 180), SMOKE_KEEP=1 (leave it up).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/docker/lib.sh
source "$here/lib.sh"

repo="$(cd "${1:-$here/../..}" && pwd)"
[[ -f "$repo/docker-compose.yml" && -f "$repo/.env.example" ]] || die "$repo has no docker-compose.yml/.env.example"
state="${AI_DIARY_DOCKER_STATE:-$TOOLS_DIR/run}"
app_port="${SMOKE_APP_PORT:-18000}"
jaeger_port="${SMOKE_JAEGER_PORT:-26686}"
health_timeout="${SMOKE_HEALTH_TIMEOUT:-180}"
project=ai-diary-smoke
timings=()
step() {  # step LABEL CMD...: run and record the duration
  local label="$1" t0=$SECONDS; shift
  log "== $label"
  "$@"
  timings+=("$(printf '%-28s %4d s' "$label" $((SECONDS - t0)))")
}

step "install.sh" "$here/install.sh" >/dev/null
export DOCKER_CONFIG="${DOCKER_CONFIG:-$TOOLS_DOCKER_CONFIG}"
docker compose version >/dev/null 2>&1 || export DOCKER_CONFIG="$TOOLS_DOCKER_CONFIG"

started_dockerd=""
if "$here/dockerd.sh" status "$state" >/dev/null 2>&1; then
  log "reusing the running private dockerd of $state"
else
  step "dockerd start" "$here/dockerd.sh" start "$state" >/dev/null
  started_dockerd=1
fi
export DOCKER_HOST="unix://$state/docker.sock"

envfile="$state/smoke.env"
compose() {
  docker compose --project-directory "$repo" -p "$project" --env-file "$envfile" \
    -f "$repo/docker-compose.yml" -f "$here/compose.host-build.yml" "$@"
}
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    log "FAILED (exit $rc): state of the services and their last log lines:"
    compose ps -a >&2 2>/dev/null || true
    compose logs --no-color --tail 30 >&2 2>/dev/null || true
  fi
  if [[ -z "${SMOKE_KEEP:-}" ]]; then
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    [[ -n "$started_dockerd" ]] && "$here/dockerd.sh" stop "$state" >/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT

step "stand-in images" env AI_DIARY_REPO="$repo" "$here/standins.sh"

cp "$repo/.env.example" "$envfile"
sed -i -e "s/^PSEUDONYM_SECRET=.*/PSEUDONYM_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')/" \
       -e "s/^WANDB_BRIDGE_TOKEN=.*/WANDB_BRIDGE_TOKEN=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')/" \
       -e "s/^APP_PORT=.*/APP_PORT=127.0.0.1:$app_port/" -e "s/^JAEGER_UI_PORT=.*/JAEGER_UI_PORT=127.0.0.1:$jaeger_port/" \
       "$envfile"

# The classic builder when the Dockerfile names a BuildKit frontend image (`# syntax=`): BuildKit would fetch it
# from the registry. One build at a time: all four services build the same image (2 cores).
if head -1 "$repo/Dockerfile" | grep -q '^# *syntax='; then
  log "Dockerfile has '$(head -1 "$repo/Dockerfile")': BuildKit would pull that frontend: DOCKER_BUILDKIT=0"
  export DOCKER_BUILDKIT=0
fi
export COMPOSE_BAKE=false COMPOSE_PARALLEL_LIMIT=1
step "compose build" nice -n 10 docker compose --project-directory "$repo" -p "$project" --env-file "$envfile" \
  -f "$repo/docker-compose.yml" -f "$here/compose.host-build.yml" build --quiet
unset COMPOSE_PARALLEL_LIMIT

wait_healthy() {
  local deadline=$((SECONDS + health_timeout)) svc st health code bad
  while :; do
    bad=""
    # service, state, health, exit code: healthchecked services healthy, the others running, one-shots exited 0
    while read -r svc st health code; do
      case "$st" in
        running) [[ "$health" == healthy || "$health" == none ]] || bad+=" $svc($st/$health)" ;;
        exited) [[ "$code" == 0 ]] || bad+=" $svc(exited $code)" ;;
        *) bad+=" $svc($st)" ;;
      esac
    done < <(compose ps -a --format '{{.Service}} {{.State}} {{if .Health}}{{.Health}}{{else}}none{{end}} {{.ExitCode}}')
    [[ -z "$bad" ]] && return 0
    (( SECONDS < deadline )) || die "not healthy after $health_timeout s:$bad"
    sleep 1
  done
}
step "compose up -d" compose up -d --no-build --quiet-pull
step "up -> all healthy" wait_healthy
compose ps -a --format '{{.Service}}: {{.Status}}' >&2

check() {
  local base="http://127.0.0.1:$app_port" token entry t
  curl -fsS -m 5 "$base/healthz" | grep -q '"ok"' || die "/healthz"
  curl -fsS -m 5 "$base/api/openapi.json" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["openapi"].startswith("3"), d.get("openapi")' \
    || die "/api/openapi.json"
  token="$(curl -fsS -m 5 -X POST -H 'Content-Type: application/json' -d '{"name":"x"}' "$base/api/users" \
           | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')" || die "POST /api/users"
  entry="$(curl -fsS -m 5 -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
           -d '{"text":"compose smoke test"}' "$base/api/entries" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')" \
    || die "POST /api/entries"
  # through the local-llm service (app -> local-llm by service name)
  curl -fsS -m 60 -X POST -H "Authorization: Bearer $token" "$base/api/entries/$entry/ai/summarize" \
    | grep -q '"result"' || die "POST /api/entries/$entry/ai/summarize"
  log "app: /healthz, /api/openapi.json, POST /api/users, an entry and its AI summary: ok"
  # app -> otel-collector -> jaeger (OTLP by service name), then the Jaeger query API on the published port
  for t in $(seq 1 30); do
    curl -fsS -m 5 "http://127.0.0.1:$jaeger_port/api/traces?service=ai-diary&limit=1" 2>/dev/null \
      | grep -q '"traceID"' && break
    (( t < 30 )) || die "no ai-diary trace in Jaeger after 30 s"
    sleep 1
  done
  log "telemetry: traces of ai-diary in Jaeger: ok"
  # otel-collector -> wandb-bridge (its own metrics on :8888, inside the network: asked from the app container)
  for t in $(seq 1 30); do
    compose exec -T app python -c 'import re, sys, urllib.request
m = urllib.request.urlopen("http://otel-collector:8888/metrics", timeout=4).read().decode()
sys.exit(0 if re.search(r"^otelcol_exporter_sent_spans[{][^}]*exporter=\"otlp_http/wandb_bridge\"[^}]*[}] [1-9]", m, re.M) else 1)' \
      2>/dev/null && break
    (( t < 30 )) || die "the collector sent no span to wandb-bridge in 30 s"
    sleep 1
  done
  log "telemetry: spans sent by the collector to wandb-bridge: ok"
  # the collector's file exporter on the logs volume (the collector image has no shell: look from the app image)
  compose run --rm --no-deps -T --user 10001:10001 -v "${project}_logs:/logs:ro" --entrypoint ls init-volumes /logs \
    | grep -q combined.log || die "no combined.log on the logs volume"
  log "telemetry: the collector's combined.log on the logs volume: ok"
}
step "HTTP and telemetry checks" check
log "images:"
docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -v '<none>' >&2 || true

if [[ -n "${SMOKE_KEEP:-}" ]]; then
  log "SMOKE_KEEP set: left running (DOCKER_HOST=$DOCKER_HOST, project $project)"
else
  step "compose down -v" compose down -v --remove-orphans
  if [[ -n "$started_dockerd" ]]; then step "dockerd stop" "$here/dockerd.sh" stop "$state" >/dev/null; fi
fi
trap - EXIT
log "== timings"
printf '%s\n' "${timings[@]}" >&2
log "PASSED"
