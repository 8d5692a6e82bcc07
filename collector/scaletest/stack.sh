#!/usr/bin/env bash
# Scale-out test stack on loopback: a capture "bridge", 2 gateways, 2 agents (collector/agent.yaml, gateway.yaml).
# The agents use the static resolver here (gateways on one address, two ports): it never re-routes. The failover
# test with the dns resolver is tests/integration/collector/test_fleet.py.
#   collector/scaletest/stack.sh start RUN_DIR     # starts all, waits for health; pids in RUN_DIR/*.pid
#   collector/scaletest/stack.sh stop RUN_DIR      # SIGTERM to what it started (by pid)
#   collector/scaletest/stack.sh gw RUN_DIR N      # (re)start gateway N (1|2) only
# Ports: capture 14319; gateway N: gRPC N4417, HTTP N4418, health N4134, metrics N4889 (N = 2, 3 for gw1, gw2);
# agent a: 14317/14318/14133/14888, agent b: 15317/15318/15133/15888. Extra settings come from the environment
# (SPAN_METRICS_FLUSH_INTERVAL, TAIL_SAMPLING_DECISION_WAIT, OTEL_GATEWAY_ID_1/_2 ...).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
col="$here/.."
bin="${OTELCOL_BIN:-$col/_build/otelcol-ai-diary}"
py="${PYTHON:-$here/../../.venv/bin/python}"; [[ -x "$py" ]] || py=python3  # capture.py needs opentelemetry-proto
cmd="$1"; run="$2"; mkdir -p "$run"

wait_health() { for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$1/" >/dev/null 2>&1 && return 0; sleep 0.2; done;
                echo "not healthy on :$1" >&2; return 1; }

start_gw() {
  local n="$1" p=$(( $1 + 1 )); local idvar="OTEL_GATEWAY_ID_$n"
  env OTEL_COLLECTOR_GRPC_PORT=${p}4417 OTEL_COLLECTOR_HTTP_PORT=${p}4418 OTEL_COLLECTOR_HEALTH_PORT=${p}4134 \
      OTEL_COLLECTOR_METRICS_PORT=${p}4889 OTEL_COLLECTOR_QUEUE_DIR="$run/gw$n-queue" \
      WANDB_BRIDGE_ENDPOINT=http://127.0.0.1:14319 ${!idvar:+OTEL_GATEWAY_ID=${!idvar}} \
      nice -n 5 "$bin" --config="$col/gateway.yaml" --feature-gates=processor.tailsamplingprocessor.recordpolicy >"$run/gw$n.log" 2>&1 &
  echo $! >"$run/gw$n.pid"
  wait_health ${p}4134
}

start_agent() {
  local name="$1" p="$2"; mkdir -p "$run/agent-$name-logs"
  env OTEL_COLLECTOR_GRPC_PORT=${p}317 OTEL_COLLECTOR_HTTP_PORT=${p}318 OTEL_COLLECTOR_HEALTH_PORT=${p}133 \
      OTEL_COLLECTOR_METRICS_PORT=${p}888 LOG_DIR="$run/agent-$name-logs" OTEL_AGENT_HOST_NAME="host-$name" \
      OTEL_GATEWAY_RESOLVER=static OTEL_GATEWAY_ENDPOINTS='[127.0.0.1:24417, 127.0.0.1:34417]' \
      WANDB_BRIDGE_ENDPOINT=http://127.0.0.1:14319 OTEL_COLLECTOR_QUEUE_DIR="$run/agent-$name-queue" \
      nice -n 5 "$bin" --config="$col/agent.yaml" >"$run/agent-$name.log" 2>&1 &
  echo $! >"$run/agent-$name.pid"
  wait_health ${p}133
}

busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "$cmd" in
  start)
    for port in 14319 24417 24134 34417 34134 14317 14133 15317 15133; do
      busy $port && { echo "port $port is in use: stop the previous stack first" >&2; exit 1; }
    done
    "$py" "$here/capture.py" --port 14319 --out "$run/capture" >"$run/capture.log" 2>&1 &
    echo $! >"$run/capture.pid"
    start_gw 1; start_gw 2; start_agent a 14; start_agent b 15
    echo "stack up in $run" ;;
  gw) start_gw "$3" ;;
  stop)
    for f in "$run"/agent-*.pid "$run"/gw*.pid "$run"/capture.pid; do
      [[ -f "$f" ]] || continue; pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done; rm -f "$f"
    done ;;
  *) echo "usage: $0 start|stop|gw RUN_DIR [N]" >&2; exit 2 ;;
esac
