"""The real collector forwarding to an OTLP backend (a second collector writing files) and to the W&B bridge:
all three signals arrive, the redaction step removes forbidden attributes, and outages/crashes lose nothing."""

from __future__ import annotations

import json
import re
import threading
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from app.demo.topology import COLLECTOR_CONFIG
from otel_wandb.bridge._decode import FORBIDDEN_KEY_PATTERN
from tests.support import free_port, wait_until
from tests.support.collector import (
    ALLOWED_NEIGHBOURS,
    BACKEND_CONFIG,
    FORBIDDEN_KEYS,
    count_in_file,
    logs_request,
    metrics_request,
    post,
    read_log_records,
    set_attributes,
    spans_request,
)

CANARY = "CANARY-secret-diary-text-91c2"
FORBIDDEN = {key: f"{CANARY}-{i}" for i, key in enumerate(FORBIDDEN_KEYS)}
ALLOWED = ALLOWED_NEIGHBOURS
FAST_RETRY = {
    "WANDB_BRIDGE_RETRY_INITIAL": "100ms",
    "WANDB_BRIDGE_RETRY_MAX_INTERVAL": "500ms",
    "OTEL_COLLECTOR_BATCH_TIMEOUT": "100ms",
}


def _bridge_env(bridge_url: str) -> dict[str, str]:
    return {"WANDB_BRIDGE_EXPORTER": "otlp_http/wandb_bridge", "WANDB_BRIDGE_ENDPOINT": bridge_url, **FAST_RETRY}


def test_collector_and_bridge_share_one_key_policy():
    """otel-collector.yaml's default redaction pattern is the bridge's FORBIDDEN_KEY_PATTERN, anchored (RE2 \\z),
    with the bridge's flags: any case (i), '.' matching a newline (s)."""
    text = COLLECTOR_CONFIG.read_text()
    defaults = set(re.findall(r"\$\{env:OTEL_COLLECTOR_REDACT_KEYS:-(.*?)\}\"\)", text))
    assert defaults == {"(?is)^(" + FORBIDDEN_KEY_PATTERN + ")\\\\z"}, defaults
    assert text.count("OTEL_COLLECTOR_REDACT_KEYS") >= 2  # attributes everywhere + metric metadata


def test_bridge_hop_is_uncompressed_only_where_it_stays_on_the_host():
    """The single collector sends the bridge uncompressed by default (same host or compose network: gzip costs the
    collector CPU and saves nothing there); the agent and gateway configs, whose hops cross hosts, keep gzip."""
    pattern = r"compression: \$\{env:WANDB_BRIDGE_COMPRESSION:-(\w+)\}"
    assert re.findall(pattern, COLLECTOR_CONFIG.read_text()) == ["none"]
    for name in ("agent.yaml", "gateway.yaml"):
        assert re.findall(pattern, (COLLECTOR_CONFIG.parent / "collector" / name).read_text()) == ["gzip"], name


def _forbidden_everywhere_traces():
    """20 spans with forbidden keys on the resource, the scope, every span, a span event and a span link."""
    req = spans_request(20, attrs={**FORBIDDEN, **ALLOWED}, resource={**FORBIDDEN, "app.region": "eu"})
    ss = req.resource_spans[0].scope_spans[0]
    set_attributes(ss.scope.attributes, {**FORBIDDEN, "scope.kind": "http"})
    span = ss.spans[0]
    event = span.events.add()
    event.name = "gen_ai.content.prompt"
    set_attributes(event.attributes, {**FORBIDDEN, "event.kept": 1})
    link = span.links.add()
    link.trace_id, link.span_id = b"\x01" * 16, b"\x02" * 8
    set_attributes(link.attributes, FORBIDDEN)
    return req


def _forbidden_everywhere_metrics():
    req = metrics_request(points=5, attrs={**FORBIDDEN, **ALLOWED})
    rm = req.resource_metrics[0]
    set_attributes(rm.resource.attributes, FORBIDDEN)
    set_attributes(rm.scope_metrics[0].scope.attributes, FORBIDDEN)
    set_attributes(rm.scope_metrics[0].metrics[0].metadata, FORBIDDEN)
    return req


def _forbidden_everywhere_logs():
    """An app error, an audit record and two GenAI events (event_name field / event.name attribute) whose bodies
    hold content; forbidden keys on the resource, the scopes and every record."""
    records = [
        ("app", 17, "failed", {**FORBIDDEN, **ALLOWED}),
        ("audit", 9, "entry.create", {**FORBIDDEN, **ALLOWED}),
        ("genai", 9, f'{{"content": "{CANARY} user prompt"}}', {"event.name": "gen_ai.user.message"}),
        ("genai", 9, f"{CANARY} assistant answer", {}),
    ]
    req = logs_request(records)
    rl = req.resource_logs[0]
    set_attributes(rl.resource.attributes, FORBIDDEN)
    for sl in rl.scope_logs:
        set_attributes(sl.scope.attributes, FORBIDDEN)
    rl.scope_logs[3].log_records[0].event_name = "gen_ai.choice"
    return req


def test_backend_and_bridge_get_all_signals_without_forbidden_attributes(
    start_collector, make_bridge, pipeline, tmp_path
):
    cfg = tmp_path / "backend.yaml"
    cfg.write_text(BACKEND_CONFIG)
    backend = start_collector(name="backend", config=cfg)
    bridge = make_bridge()
    col = start_collector(
        {
            "OTLP_BACKEND_EXPORTER": "otlp_http/backend",
            "OTLP_BACKEND_ENDPOINT": backend.http_endpoint,
            "OTLP_BACKEND_HEADERS": '{"x-tenant": "diary"}',
            **_bridge_env(bridge.url),
            "WANDB_BRIDGE_LOGS_EXPORTER": "otlp_http/wandb_bridge",
        }
    )
    assert post(col.http_endpoint, "/v1/traces", _forbidden_everywhere_traces().SerializeToString())[0] == 200
    assert post(col.http_endpoint, "/v1/metrics", _forbidden_everywhere_metrics().SerializeToString())[0] == 200
    assert post(col.http_endpoint, "/v1/logs", _forbidden_everywhere_logs().SerializeToString())[0] == 200

    out = backend.log_dir
    want = {"traces.json": ("spans", 20), "metrics.json": ("points", 5), "logs.json": ("logs", 4)}
    for name, (key, n) in want.items():
        wait_until(
            lambda name=name, key=key, n=n: count_in_file(out / name)[key] >= n,
            20,
            f"{n} {key} at the backend",
            interval=0.1,
        )
    wait_until(
        lambda: len(pipeline.spans) >= 20 and len(pipeline.metrics) >= 5 and len(pipeline.logs) >= 4, 20, "the bridge"
    )
    files = [out / n for n in want] + [col.log_dir / f for f in ("combined.log", "error.log", "audit.log")]
    wait_until(
        lambda: (col.log_dir / "audit.log").exists() and read_log_records(col.log_dir, "audit.log"),
        10,
        "audit.log",
        interval=0.1,
    )
    for path in files:
        text = path.read_text()
        assert CANARY not in text, path.name
        for key in FORBIDDEN:
            assert json.dumps(key) not in text, (path.name, key)
        for key in ALLOWED:  # the positive control: neighbours of the forbidden keys survive
            assert f'"{key}"' in text, (path.name, key)
    assert count_in_file(out / "traces.json")["spans"] == 20 and count_in_file(out / "logs.json")["logs"] == 4
    traces = (out / "traces.json").read_text()
    for kept in ('"deployment.environment.name"', '"app.region"', '"scope.kind"', '"event.kept"'):
        assert kept in traces, kept
    assert '"links"' not in traces and '"droppedLinksCount":1' in traces  # OTTL cannot edit a link: dropped
    bodies = [r["body"] for r in read_log_records(out, "logs.json")]
    assert sorted(bodies) == ["REDACTED", "REDACTED", "entry.create", "failed"], bodies
    assert {s.span_id for s in pipeline.spans} == {f"{i:016x}" for i in range(1, 21)}
    assert all(ALLOWED.items() <= s.attributes.items() for s in pipeline.spans)
    assert CANARY not in repr(pipeline.spans) + repr(pipeline.metrics) + repr(pipeline.logs)


def test_bridge_outage_and_collector_crash_lose_nothing(start_collector, make_bridge, pipeline):
    port = free_port()
    col = start_collector(_bridge_env(f"http://127.0.0.1:{port}"))
    for batch in range(4):  # bridge down: everything waits in the persistent queue
        assert (
            post(col.http_endpoint, "/v1/traces", spans_request(250, start=batch * 250).SerializeToString())[0] == 200
        )
    assert post(col.http_endpoint, "/v1/metrics", metrics_request(points=40).SerializeToString())[0] == 200
    col.restart(kill=True)  # SIGKILL: only the on-disk queue survives
    restarted = len(col.lines)
    assert post(col.http_endpoint, "/v1/traces", spans_request(500, start=1000).SerializeToString())[0] == 200
    # the restarted collector sends from its queue and fails (the bridge is still down) before the bridge comes up
    wait_until(
        lambda: any("Exporting failed" in line and "wandb_bridge" in line for line in col.lines[restarted:]),
        30,
        "the restarted collector to fail a send to the bridge",
        interval=0.1,
    )
    make_bridge(port=port)  # the bridge comes up
    wait_until(
        lambda: len({s.span_id for s in pipeline.spans}) >= 1500 and len(pipeline.metrics) >= 40,
        30,
        "every queued span and point at the bridge",
        interval=0.1,
    )
    assert {s.span_id for s in pipeline.spans} == {f"{i:016x}" for i in range(1, 1501)}
    assert {p.attributes["point"] for p in pipeline.metrics} == set(range(40))


class _CountingExporter(OTLPSpanExporter):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.results: list[SpanExportResult] = []

    def export(self, spans):
        result = super().export(spans)
        self.results.append(result)
        return result


def test_collector_killed_mid_load_sender_sees_no_failure(start_collector, make_bridge, pipeline):
    bridge = make_bridge()
    col = start_collector(_bridge_env(bridge.url))
    exporter = _CountingExporter(endpoint=col.http_endpoint + "/v1/traces", timeout=15)
    provider = TracerProvider(resource=Resource.create({"service.name": "load"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=50_000, schedule_delay_millis=100))
    tracer = provider.get_tracer("load")
    sent: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for _ in range(50):
                with tracer.start_as_current_span("GET /entries") as span:
                    sent.append(f"{span.get_span_context().span_id:016x}")
            time.sleep(0.01)  # pacing: ~5000 spans/s, a steady load rather than a burst

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    wait_until(lambda: len(exporter.results) >= 3 and len(sent) >= 1000, 30, "load flowing through the collector")
    col.restart(kill=True)  # mid-load: the SDK's batches in flight meet a dead port, then the new process
    exported = len(exporter.results)
    wait_until(lambda: len(exporter.results) >= exported + 3, 30, "exports through the restarted collector")
    stop.set()
    worker.join(30)
    assert not worker.is_alive()
    assert provider.force_flush(30_000)
    provider.shutdown()
    assert len(sent) > 1000 and len(exporter.results) > 5
    assert exporter.results.count(SpanExportResult.FAILURE) == 0
    wait_until(
        lambda: len({s.span_id for s in pipeline.spans}) >= len(sent), 30, "all spans at the bridge", interval=0.1
    )
    assert {s.span_id for s in pipeline.spans} == set(sent)
