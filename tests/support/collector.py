"""Pytest plugin (registered by tests/conftest.py) and helpers for the collector and bridge tests.

Fixtures: ``collector_bin``, ``start_collector``, ``pipeline`` (a ``TappedPipeline``: the real ``Pipeline``),
``make_bridge`` (an in-process bridge feeding it). Helpers: OTLP payload builders, an HTTP poster, readers of the
collector's file-exporter output. Process control lives in app.demo.topology (the demo and benchmarks use it too)."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.demo import topology
from otel_wandb.bridge import BridgeServer
from otel_wandb.config import BridgeConfig
from otel_wandb.pipeline import Pipeline
from otel_wandb.sink import WandbSink
from tests.support.wandb_run import RecorderRun

PROTO = "application/x-protobuf"


# -- payloads ------------------------------------------------------------------------------------------------

# Keys the privacy walls must delete (collector redaction step, bridge decoder): content, tool calls, credentials
# in captured headers -- in the forms Python's instrumentation writes them ('_' for '-') and in any case.
FORBIDDEN_KEYS = (
    "app.content",
    "app.content.entry",
    "app.content.summary",
    "APP.Content.Title",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.prompt",
    "gen_ai.prompt.0.content",
    "gen_ai.completion",
    "gen_ai.completion.0.content",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "gen_ai.tool.definitions",
    "http.request.header.authorization",
    "http.request.header.Authorization",
    "http.request.header.cookie",
    "http.request.header.proxy_authorization",
    "http.request.header.proxy-authorization",
    "http.request.header.x_api_key",
    "http.request.header.x-api-key",
    "http.request.header.api_key",
    "http.request.header.wandb_api_key",
    "http.request.header.openai-api-key",
    "http.request.header.x_auth_token",
    "http.response.header.set_cookie",
    "http.response.header.set-cookie",
    "http.response.header.Set-Cookie",
    "app.content.x\ny",
    "app.content.\n",
    "gen_ai.prompt.0\n.content",
    "GEN_AI.completion.\r\n0",  # '.' and \n
)
# Their neighbours, which must survive (the positive control).
ALLOWED_NEIGHBOURS = {
    "app.contents_length": 42,
    "app.content_type": "diary",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.tool.name": "lookup",
    "gen_ai.usage.input_tokens": 7,
    "http.route": "/entries",
    "http.request.header.content_type": "application/json",
    "http.request.header.cookie_count": 1,
}


def set_attributes(kvs: Any, attrs: dict[str, Any]) -> None:
    for k, v in attrs.items():
        kv = kvs.add()
        kv.key = k
        if isinstance(v, bool):
            kv.value.bool_value = v
        elif isinstance(v, int):
            kv.value.int_value = v
        elif isinstance(v, float):
            kv.value.double_value = v
        else:
            kv.value.string_value = str(v)


def spans_request(
    n: int,
    *,
    start: int = 0,
    attrs: dict[str, Any] | None = None,
    error_every: int = 0,
    service: str = "ai-diary-test",
    resource: dict[str, Any] | None = None,
) -> ExportTraceServiceRequest:
    """n SERVER spans named 'GET /entries' (ids derived from the index, so they are unique and checkable)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    set_attributes(rs.resource.attributes, {"service.name": service, **(resource or {})})
    ss = rs.scope_spans.add()
    ss.scope.name = "test.scope"
    now = time.time_ns()
    for i in range(start, start + n):
        s = ss.spans.add()
        s.trace_id = (i + 1).to_bytes(16, "big")
        s.span_id = (i + 1).to_bytes(8, "big")
        s.name, s.kind = "GET /entries", 2
        s.start_time_unix_nano, s.end_time_unix_nano = now - 5_000_000, now
        set_attributes(
            s.attributes,
            {
                "http.request.method": "GET",
                "http.route": "/entries",
                "http.response.status_code": 500 if error_every and i % error_every == 0 else 200,
                "test.index": i,
                **(attrs or {}),
            },
        )
        if error_every and i % error_every == 0:
            s.status.code = 2
    return req


def metrics_request(
    name: str = "test.requests", value: int = 1, *, attrs: dict[str, Any] | None = None, points: int = 1
) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    set_attributes(rm.resource.attributes, {"service.name": "ai-diary-test"})
    m = rm.scope_metrics.add().metrics.add()
    m.name, m.unit = name, "1"
    m.sum.aggregation_temporality, m.sum.is_monotonic = 2, True
    now = time.time_ns()
    for i in range(points):
        p = m.sum.data_points.add()
        p.start_time_unix_nano, p.time_unix_nano, p.as_int = now - 10**9, now, value
        set_attributes(p.attributes, {"point": i, **(attrs or {})})
    return req


def logs_request(records: list[tuple[str, int, str, dict[str, Any]]]) -> ExportLogsServiceRequest:
    """records: (scope, severity_number, body, attributes); one ScopeLogs per record."""
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    set_attributes(rl.resource.attributes, {"service.name": "ai-diary-test"})
    now = time.time_ns()
    for scope, sev, body, attrs in records:
        sl = rl.scope_logs.add()
        sl.scope.name = scope
        r = sl.log_records.add()
        r.time_unix_nano, r.severity_number, r.body.string_value = now, sev, body
        r.severity_text = {9: "INFO", 13: "WARN", 17: "ERROR", 21: "FATAL"}.get(sev, "")
        set_attributes(r.attributes, attrs)
    return req


# -- HTTP ----------------------------------------------------------------------------------------------------


def post(
    base_url: str,
    path: str,
    body: bytes,
    content_type: str = PROTO,
    *,
    gzip_body: bool = False,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    host_port = base_url.split("://", 1)[1].rstrip("/")
    conn = http.client.HTTPConnection(host_port, timeout=timeout)
    hdrs = {"Content-Type": content_type, **(headers or {})}
    if gzip_body:
        body = gzip.compress(body)
        hdrs["Content-Encoding"] = "gzip"
    try:
        conn.request("POST", path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get_json(base_url: str, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(base_url.split("://", 1)[1].rstrip("/"), timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


# -- collector file output -----------------------------------------------------------------------------------


def file_set(log_dir: Path, base: str) -> list[Path]:
    """The live file and its rotated backups (<stem>-<timestamp><ext>) for base like 'combined.log'."""
    stem, ext = os.path.splitext(base)
    return sorted(p for p in Path(log_dir).glob(f"{stem}*{ext}") if p.name == base or p.name.startswith(stem + "-"))


def read_log_records(log_dir: Path, base: str) -> list[dict[str, Any]]:
    """Every log record in the file set, flattened from the file exporter's JSON lines (one request per line)."""
    out = []
    for path in file_set(log_dir, base):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            for rl in json.loads(line).get("resourceLogs", []):
                res = {a["key"]: a["value"] for a in rl.get("resource", {}).get("attributes", [])}
                for sl in rl.get("scopeLogs", []):
                    scope = sl.get("scope", {}).get("name", "")
                    for r in sl.get("logRecords", []):
                        out.append(
                            {
                                "scope": scope,
                                "severity": r.get("severityNumber", 0),
                                "time_ns": int(r.get("timeUnixNano") or 0),
                                "body": r.get("body", {}).get("stringValue"),
                                "resource": res,
                                "attributes": {a["key"]: a["value"] for a in r.get("attributes", [])},
                            }
                        )
    return out


def read_file_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()] if path.exists() else []


def count_in_file(path: Path) -> dict[str, int]:
    """Spans, metric data points and log records in a file exporter's output (all signals)."""
    n = {"spans": 0, "points": 0, "logs": 0}
    for req in read_file_lines(path):
        for rs in req.get("resourceSpans", []):
            n["spans"] += sum(len(ss.get("spans", [])) for ss in rs.get("scopeSpans", []))
        for rm in req.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    for kind in ("sum", "gauge", "histogram", "exponentialHistogram"):
                        n["points"] += len(m.get(kind, {}).get("dataPoints", []))
        for rl in req.get("resourceLogs", []):
            n["logs"] += sum(len(sl.get("logRecords", [])) for sl in rl.get("scopeLogs", []))
    return n


BACKEND_CONFIG = """
# A stand-in OTLP backend: the same collector binary writing every signal it receives to a file.
extensions:
  health_check:
    endpoint: 127.0.0.1:${env:OTEL_COLLECTOR_HEALTH_PORT}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${env:OTEL_COLLECTOR_HTTP_PORT}
exporters:
  file/traces: {path: "${env:LOG_DIR}/traces.json", flush_interval: 100ms}
  file/metrics: {path: "${env:LOG_DIR}/metrics.json", flush_interval: 100ms}
  file/logs: {path: "${env:LOG_DIR}/logs.json", flush_interval: 100ms}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {receivers: [otlp], exporters: [file/traces]}
    metrics: {receivers: [otlp], exporters: [file/metrics]}
    logs: {receivers: [otlp], exporters: [file/logs]}
"""


# -- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def collector_bin() -> Path:
    """The real collector binary; built with collector/build.sh when missing. Fails (never skips) if it can't."""
    if not topology.COLLECTOR_BINARY.exists():
        topology.build_collector()
    assert topology.COLLECTOR_BINARY.exists(), "collector/_build/otelcol-ai-diary missing after collector/build.sh"
    return topology.COLLECTOR_BINARY


@pytest.fixture
def start_collector(collector_bin, tmp_path) -> Iterator[Callable[..., topology.CollectorHandle]]:
    """start_collector(env=None, name='c') -> a running collector with LOG_DIR=tmp_path/<name>/logs."""
    started: list[topology.CollectorHandle] = []

    def _start(env: dict[str, str] | None = None, name: str = "c", **kw: Any) -> topology.CollectorHandle:
        base = tmp_path / name
        env = {
            "WANDB_BRIDGE_EXPORTER": "nop",
            "LOG_FLUSH_INTERVAL": "100ms",
            "OTEL_COLLECTOR_BATCH_TIMEOUT": "100ms",
            **(env or {}),
        }
        handle = topology.start_collector(env, base / "logs", queue_dir=base / "queue", **kw)
        started.append(handle)
        return handle

    yield _start
    for h in reversed(started):
        h.stop()


class TappedPipeline(Pipeline):
    """The real ``Pipeline`` (its real ``WandbSink`` writing into a ``RecorderRun``: ``.run``) that also keeps every
    batch it took (not closed: valid and invalid records alike), so that bridge tests can look at each decoded span,
    point and log record. It validates, rejects, refuses (closed) and shuts down exactly as ``Pipeline`` does: the
    copy is all it adds."""

    def __init__(self, interval_s: float = 3600.0) -> None:
        self.run = RecorderRun()
        super().__init__(WandbSink(run=self.run), interval_s=interval_s)
        self.spans: list[Any] = []
        self.metrics: list[Any] = []
        self.logs: list[Any] = []

    @staticmethod
    def _tap(add: Callable[[list[Any]], int | None], kept: list[Any], records: Any) -> int | None:
        records = list(records)
        rejected = add(records)
        if rejected is not None:
            kept.extend(records)
        return rejected

    def add_spans(self, spans: Any) -> int | None:
        return self._tap(super().add_spans, self.spans, spans)

    def add_metrics(self, points: Any) -> int | None:
        return self._tap(super().add_metrics, self.metrics, points)

    def add_logs(self, logs: Any) -> int | None:
        return self._tap(super().add_logs, self.logs, logs)


@pytest.fixture
def pipeline() -> Iterator[TappedPipeline]:
    tapped = TappedPipeline()
    yield tapped
    tapped.shutdown(5)


@pytest.fixture
def make_bridge(pipeline) -> Iterator[Callable[..., BridgeServer]]:
    """make_bridge(token='', max_body_bytes=...) -> an in-process bridge on a free port feeding `pipeline`."""
    servers: list[BridgeServer] = []

    def _make(**kw: Any) -> BridgeServer:
        kw.setdefault("port", 0)
        server = BridgeServer(BridgeConfig(host="127.0.0.1", **kw), pipeline).start()
        servers.append(server)
        return server

    yield _make
    for s in servers:
        s.stop(5)
