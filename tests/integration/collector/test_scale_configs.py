"""The scale-out collector configs (collector/agent.yaml, collector/gateway.yaml): the agent reuses the single
collector's privacy wall and log files unchanged, counts every span of its host (span_metrics before load
balancing, straight to the bridge), the gateways only sample, every setting has an env default, both validate with
the real binary, and one agent -> one gateway -> a capturing "bridge" delivers span_metrics that the bridge core
adds up to the number of spans sent, plus only the tail-sampled traces. The fleet itself (4 app instances, 2 agents,
2 gateways, a gateway killed): test_fleet.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.demo.topology import COLLECTOR_CONFIG, CollectorPorts, start_collector
from otel_wandb import core
from otel_wandb.bridge import decode
from otel_wandb.core._metrics import BREAKDOWN_ATTRS, STATUS_ATTRS
from tests.support import ROOT, wait_until
from tests.support.collector import post, set_attributes

AGENT = ROOT / "collector" / "agent.yaml"
GATEWAY = ROOT / "collector" / "gateway.yaml"


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_agent_reuses_the_single_collectors_redaction_routing_and_log_files() -> None:
    single, agent = _load(COLLECTOR_CONFIG), _load(AGENT)
    for name in ("transform/redact", "filter/error_only", "filter/audit_only", "batch", "resource"):
        assert agent["processors"][name] == single["processors"][name], name
    for name in ("file/combined", "file/error", "file/audit"):
        assert agent["exporters"][name] == single["exporters"][name], name
    pipes = agent["service"]["pipelines"]
    for name in ("traces", "metrics", "logs", "logs/error", "logs/audit"):
        assert pipes[name]["processors"][0] == "memory_limiter"
        assert "transform/redact" in pipes[name]["processors"], name
    assert pipes["logs/error"]["exporters"] == ["file/error"] and pipes["logs/audit"]["exporters"] == ["file/audit"]
    assert "file/combined" in pipes["logs"]["exporters"]
    for resolver in ("dns", "static"):
        for signal, key in (("traces", "traceID"), ("metrics", "resource"), ("logs", "traceID")):
            lb = agent["exporters"][f"load_balancing/{signal}_{resolver}"]
            assert lb["routing_key"] == key and resolver in lb["resolver"]
            # resilience per gateway, not at the load_balancing level (whose retry resends the healthy share)
            assert "retry_on_failure" not in lb and "sending_queue" not in lb
    # the default finds the gateways by name (the resolver that drops a dead one), the fixed list on request
    assert pipes["traces/gateways"]["exporters"][0] == "load_balancing/traces_${env:OTEL_GATEWAY_RESOLVER:-dns}"


def test_every_setting_has_an_env_default() -> None:
    for path in (AGENT, GATEWAY):
        text = path.read_text()
        assert "${env:" in text
        assert not re.findall(r"\$\{env:[A-Za-z0-9_]+\}", text), f"{path.name}: a ${{env:VAR}} without :-default"


def test_agents_count_every_span_with_the_dimensions_the_bridge_breaks_down() -> None:
    agent, gw = _load(AGENT), _load(GATEWAY)
    allowed = set(BREAKDOWN_ATTRS) | set(STATUS_ATTRS) | {"gen_ai.operation.name"}
    for name in ("span_metrics/http", "span_metrics/ai"):
        c = agent["connectors"][name]
        assert {d["name"] for d in c["dimensions"]} <= allowed, name
        hist = c["histogram"]
        assert hist["unit"] == "s" and "CUMULATIVE" in c["aggregation_temporality"], name
        # the bridge's p95 within 3 % needs one scale finer than the SDK's default 160 buckets
        assert hist["exponential"]["max_size"] == f"${{env:SPAN_METRICS_EXP_MAX_SIZE:-{core.EXP_HISTOGRAM_MAX_SIZE}}}"
    dims = {d["name"] for d in agent["connectors"]["span_metrics/http"]["dimensions"]}
    assert {"http.route", "http.request.method", "http.response.status_code"} <= dims
    dims = {d["name"] for d in agent["connectors"]["span_metrics/ai"]["dimensions"]}
    assert {"gen_ai.request.model", "app.feature"} <= dims
    pipes = agent["service"]["pipelines"]
    # span_metrics sees every span, before load balancing: the gateways' pipeline is a sibling of the two
    # span_metrics pipelines, all fed by one forward connector after the privacy wall
    assert pipes["traces"]["exporters"] == ["forward/spans"]
    for name in ("traces/http_metrics", "traces/ai_metrics", "traces/gateways"):
        assert pipes[name]["receivers"] == ["forward/spans"], name
    # the counts go to the bridge through a persistent queue, not through a gateway
    assert pipes["metrics/span_metrics"]["receivers"] == ["span_metrics/http", "span_metrics/ai"]
    assert pipes["metrics/span_metrics"]["exporters"][0] == "${env:WANDB_BRIDGE_EXPORTER:-otlp_http/wandb_bridge}"
    assert agent["exporters"]["otlp_http/wandb_bridge"]["sending_queue"]["storage"] == "file_storage/queue"
    # the gateways sample and never count (a second span_metrics would double every request)
    assert not [c for c in gw.get("connectors", {}) if c.startswith("span_metrics")]
    assert gw["service"]["pipelines"]["traces/bridge"]["receivers"] == ["forward/sampled"]
    assert gw["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "tail_sampling"]
    for name in ("otlp_http/wandb_bridge", "otlp_http/backend"):
        assert gw["exporters"][name]["sending_queue"]["storage"] == "file_storage/queue", name


def _validate(collector_bin: Path, config: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(collector_bin), "validate", f"--config=file:{config}"],
        env={**os.environ, **env_extra},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_agent_and_gateway_validate(collector_bin: Path) -> None:
    assert _validate(collector_bin, AGENT, {}).returncode == 0
    assert _validate(collector_bin, GATEWAY, {}).returncode == 0
    variants = [
        (AGENT, {"OTEL_GATEWAY_HOSTNAME": "gateways.ai-diary.svc", "OTEL_AGENT_SPANS_EXPORTER": "file/spans"}),
        (
            AGENT,
            {
                "OTEL_GATEWAY_RESOLVER": "static",
                "OTEL_GATEWAY_ENDPOINTS": "[gw-1:4417, gw-2:4417]",
                "OTEL_AGENT_LOGS_EXPORTER": "nop",
                "OTEL_COLLECTOR_HOST": "0.0.0.0",
                "OTEL_AGENT_ID": "host-a",
                "OTLP_BACKEND_EXPORTER": "otlp_http/backend",
            },
        ),
        (
            GATEWAY,
            {
                "OTLP_BACKEND_EXPORTER": "otlp_http/backend",
                "WANDB_BRIDGE_LOGS_EXPORTER": "otlp_http/wandb_bridge",
                "TAIL_SAMPLING_BASELINE_PERCENT": "10",
            },
        ),
    ]
    for config, env in variants:
        res = _validate(collector_bin, config, env)
        assert res.returncode == 0, (config.name, env, res.stderr)


# -- one agent -> one gateway -> a capturing bridge ---------------------------------------------------------------


class _Capture(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        import gzip

        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Backend(_Capture):
    bodies: list[tuple[str, bytes]] = []


INSTANCES = (("t-1", "0"), ("t-2", "0"), ("t-3", "1"))


def _traces(n: int) -> ExportTraceServiceRequest:
    """n traces: a SERVER span (every 5th a 500 with status ERROR) with a gen_ai CLIENT child; plus, in each trace,
    an HTTP CLIENT span (the LLM API call) that span_metrics/http must not count as a request. Trace i comes from
    app process INSTANCES[i % 3]: two processes in worker slot 0 (two gunicorn instances of one host), one in slot 1."""
    req = ExportTraceServiceRequest()
    scopes = []
    for instance, slot in INSTANCES:
        rs = req.resource_spans.add()
        set_attributes(
            rs.resource.attributes,
            {"service.name": "ai-diary", "service.instance.id": instance, "app.worker.id": slot, "process.pid": 4242},
        )
        scopes.append(rs.scope_spans.add())
    now = time.time_ns()
    for i in range(n):
        ss = scopes[i % len(INSTANCES)]
        tid = (0xABC000 + i).to_bytes(16, "big")
        err = i % 5 == 0
        spans: tuple[tuple[int, dict[str, Any]], ...] = (
            (
                2,
                {
                    "http.request.method": "GET",
                    "http.route": "/api/entries",
                    "http.response.status_code": 500 if err else 200,
                },
            ),
            (3, {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "app.feature": "tag"}),
            (3, {"http.request.method": "POST", "http.response.status_code": 200}),
        )
        for j, (kind, attrs) in enumerate(spans):
            s = ss.spans.add()
            s.trace_id, s.span_id, s.kind, s.name = tid, (i * 4 + j + 1).to_bytes(8, "big"), kind, f"s{j}"
            if j:
                s.parent_span_id = (i * 4 + j).to_bytes(8, "big")
            s.start_time_unix_nano, s.end_time_unix_nano = now - 50_000_000 + j, now - j
            set_attributes(s.attributes, attrs)
            if err and j == 0:
                s.status.code = 2
    return req


def _span_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [
        span
        for line in path.read_text().splitlines()
        if line.strip()
        for rs in json.loads(line).get("resourceSpans", [])
        for ss in rs.get("scopeSpans", [])
        for span in ss.get("spans", [])
    ]


def test_agent_span_metrics_and_gateway_samples_reach_the_bridge(collector_bin: Path, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    _Capture.bodies = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    _Backend.bodies = []
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    gw_ports = CollectorPorts()
    fast = {"OTEL_COLLECTOR_BATCH_TIMEOUT": "200ms", "SPAN_METRICS_FLUSH_INTERVAL": "1s"}
    gateway = start_collector(
        {
            **fast,
            "WANDB_BRIDGE_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            "TAIL_SAMPLING_DECISION_WAIT": "1s",
            # every trace is kept (baseline 100 %): the backend gets them all, the bridge only the error traces
            "TAIL_SAMPLING_BASELINE_PERCENT": "100",
            "OTLP_BACKEND_TRACES_EXPORTER": "otlp_http/backend",
            "OTLP_BACKEND_ENDPOINT": f"http://127.0.0.1:{backend.server_port}",
        },
        tmp_path / "gw-logs",
        config=GATEWAY,
        ports=gw_ports,
        queue_dir=tmp_path / "gw-queue",
    )
    spans_file = tmp_path / "agent-spans.jsonl"
    agent = start_collector(
        {
            **fast,
            "OTEL_GATEWAY_PORT": str(gw_ports.grpc),  # the dns resolver over the default name, 127.0.0.1
            "OTEL_GATEWAY_RESOLVE_INTERVAL": "1s",
            "OTEL_AGENT_HOST_NAME": "host-t",
            "WANDB_BRIDGE_ENDPOINT": f"http://127.0.0.1:{server.server_port}",  # span_metrics: agent -> bridge
            "OTEL_AGENT_SPANS_EXPORTER": "file/spans",
            "OTEL_AGENT_SPANS_FILE": str(spans_file),
            "LOG_FLUSH_INTERVAL": "200ms",
        },
        tmp_path / "agent-logs",
        config=AGENT,
    )
    try:
        n = 20
        status, _, _ = post(agent.http_endpoint, "/v1/traces", _traces(n).SerializeToString())
        assert status == 200

        Stream = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]

        def newest_streams() -> dict[Stream, tuple[int, int]]:
            newest: dict[Stream, tuple[int, int]] = {}
            for path, body in list(_Capture.bodies):
                if path != "/v1/metrics":
                    continue
                req = ExportMetricsServiceRequest.FromString(body)
                for rm in req.resource_metrics:
                    res = tuple(sorted((a.key, a.value.string_value) for a in rm.resource.attributes))
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            if m.name.endswith(".calls"):
                                for p in m.sum.data_points:
                                    key = (m.name, res, tuple(sorted((a.key, str(a.value)) for a in p.attributes)))
                                    if key not in newest or p.time_unix_nano >= newest[key][0]:
                                        newest[key] = (p.time_unix_nano, p.as_int)
            return newest

        def newest_calls() -> dict[str, int]:
            out: dict[str, int] = {}
            for (name, _, _), (_, v) in newest_streams().items():
                out[name] = out.get(name, 0) + v
            return out

        want = {"span_metrics.http.server.calls": n, "span_metrics.gen_ai.client.calls": n}
        wait_until(lambda: newest_calls() == want, 30, "span_metrics totals")
        # one stream per host and worker slot, not per app process: the two slot-0 processes add into one series,
        # and the per-process resource attributes are gone (the gateways still get them: the tap below)
        resources = {res for _, res, _ in newest_streams()}
        env = (("deployment.environment", "local"), ("deployment.environment.name", "local"))
        host = (("host.name", "host-t"), ("service.name", "ai-diary"))
        assert resources == {(("app.worker.id", slot), *env, *host) for slot in ("0", "1")}, resources
        slot0 = sum(
            v
            for (name, res, _), (_, v) in newest_streams().items()
            if name == "span_metrics.http.server.calls" and ("app.worker.id", "0") in res
        )
        assert slot0 == sum(1 for i in range(n) if INSTANCES[i % 3][1] == "0")
        sampled = wait_until(lambda: [b for p, b in _Capture.bodies if p == "/v1/traces"], 20, "sampled traces")
        trace_ids = {
            s.trace_id
            for b in sampled
            for rs in ExportTraceServiceRequest.FromString(b).resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        }
        assert trace_ids == {(0xABC000 + i).to_bytes(16, "big") for i in range(0, n, 5)}  # the error traces only

        def backend_traces() -> set[bytes]:
            return {
                s.trace_id
                for p, b in list(_Backend.bodies)
                if p == "/v1/traces"
                for rs in ExportTraceServiceRequest.FromString(b).resource_spans
                for ss in rs.scope_spans
                for s in ss.spans
            }

        wait_until(lambda: len(backend_traces()) == n, 20, "every trace at the backend (baseline 100 %)")
        policies = {
            a.value.string_value
            for p, b in list(_Backend.bodies)
            if p == "/v1/traces"
            for rs in ExportTraceServiceRequest.FromString(b).resource_spans
            for ss in rs.scope_spans
            for a in ss.scope.attributes
            if a.key == "tailsampling.policy"
        }
        assert policies == {"errors", "baseline"}, policies  # the first policy that kept each trace
        assert {  # and still only the error traces at the bridge, now that every decision was taken
            s.trace_id
            for b in [b for p, b in _Capture.bodies if p == "/v1/traces"]
            for rs in ExportTraceServiceRequest.FromString(b).resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        } == trace_ids
        # the bridge core adds the cumulative streams up (one gateway here; SCALING-NOTES.md has two)
        agg = core.Aggregator(process_start_ns=time.time_ns() - 120 * 10**9)
        for path, body in list(_Capture.bodies):
            if path == "/v1/metrics":
                agg.add_metrics(decode("metrics", body).records)
        row = agg.flush(time.time_ns()).row
        # http/* and ai/* now come from the span_metrics streams (the lead's core change): same keys as from spans
        assert row["http/requests_total"] == n
        assert row["http/requests@status_class=5xx"] == n // 5
        assert row["http/requests@http.route=/api/entries"] == n
        assert row["ai/calls@gen_ai.request.model=gpt-4o-mini"] == n
        # the agent's tap has every span (3 per trace), the sampled traces are the gateway's
        wait_until(lambda: len(_span_lines(spans_file)) == 3 * n, 10, "every span in the tap")
        tapped = _span_lines(spans_file)
        assert {s["traceId"] for s in tapped} == {(0xABC000 + i).to_bytes(16, "big").hex() for i in range(n)}
        instances = {
            a["value"]["stringValue"]
            for line in spans_file.read_text().splitlines()
            if line.strip()
            for rs in json.loads(line).get("resourceSpans", [])
            for a in rs["resource"]["attributes"]
            if a["key"] == "service.instance.id"
        }
        assert instances == {i for i, _ in INSTANCES}  # what goes on to the gateways keeps its process resource
        # the agent, not the gateway, writes this host's log files
        assert (tmp_path / "agent-logs").is_dir() and not any((tmp_path / "gw-logs").iterdir())
    finally:
        agent.stop()
        gateway.stop()
        server.shutdown()
        backend.shutdown()
