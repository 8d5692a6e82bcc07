"""Benchmarks of the W&B bridge and the collector: ``run() -> str`` returns a markdown section for BENCHMARKS.md.

1. Decode (in process, one core): the bridge's traces path (lite schema + KeyValue cache) against walking the full
   protobuf tree, interleaved A/B rounds, medians; plus decode + the core's Aggregator.
2. The bridge fed by the real collector: spans queued in the collector's persistent queue while the bridge is
   down, then the bridge (subprocess, real Pipeline, offline W&B run) starts and drains them. Spans/s over the
   wall clock and per bridge CPU-second (/proc/<pid>/stat).
3. The collector at the demo's load: CPU (% of one core) and memory (VmRSS / VmHWM) from /proc/<pid>.

    python -m bench.bench_bridge          # prints the section
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.demo import topology
from otel_wandb.bridge import _decode as otlp_decode
from otel_wandb.core import Aggregator
from otel_wandb.records import INTERNAL, SpanRecord

TICK = os.sysconf("SC_CLK_TCK")
ROUTES = ["/api/entries", "/api/entries/{entry_id}", "/api/entries/{entry_id}/summary", "/api/users", "/api/mood"]


def set_attributes(kvs: Any, attrs: Mapping[str, str | int]) -> None:
    """OTLP KeyValues from a mapping of str and int values (the benches' span attributes)."""
    for k, v in attrs.items():
        kv = kvs.add()
        kv.key = k
        if isinstance(v, int):
            kv.value.int_value = v
        else:
            kv.value.string_value = v


def spans_body(n: int, rng: random.Random) -> bytes:
    """Spans shaped like the service's: Flask server spans (11 attributes) and LLM client spans (gen_ai.*)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    set_attributes(
        rs.resource.attributes,
        {
            "service.name": "ai-diary",
            "service.version": "0.1.0",
            "host.name": "bench",
            "process.pid": 4242,
            "telemetry.sdk.language": "python",
        },
    )
    ss = rs.scope_spans.add()
    ss.scope.name = "opentelemetry.instrumentation.flask"
    now = time.time_ns()
    for i in range(n):
        s = ss.spans.add()
        s.trace_id, s.span_id = rng.randbytes(16), rng.randbytes(8)
        s.start_time_unix_nano = now
        s.end_time_unix_nano = now + rng.randint(1_000_000, 400_000_000)
        if i % 3 == 2:
            s.name, s.kind, s.parent_span_id = "chat gpt-4o-mini", 3, rng.randbytes(8)
            set_attributes(
                s.attributes,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": rng.randint(50, 900),
                    "gen_ai.usage.output_tokens": rng.randint(10, 300),
                    "server.address": "127.0.0.1",
                },
            )
        else:
            route = rng.choice(ROUTES)
            code = 500 if rng.random() < 0.02 else 200
            s.name, s.kind = f"GET {route}", 2
            set_attributes(
                s.attributes,
                {
                    "http.request.method": "GET",
                    "http.route": route,
                    "http.response.status_code": code,
                    "url.scheme": "http",
                    "url.path": route.replace("{entry_id}", str(rng.randint(1, 500))),
                    "server.address": "127.0.0.1",
                    "server.port": 8000,
                    "network.protocol.version": "1.1",
                    "user_agent.original": "python-httpx/0.28.1",
                    "client.address": "127.0.0.1",
                    "enduser.pseudo.id": f"u-{rng.randint(1, 50):04x}",
                },
            )
            if code == 500:
                s.status.code = 2
    return req.SerializeToString()


def _full_tree_spans(body: bytes) -> list[SpanRecord]:
    """Reference: the straightforward decode walking the full protobuf message tree (the 'B' of the A/B)."""
    req = ExportTraceServiceRequest.FromString(body)
    out = []
    for rs in req.resource_spans:
        resource = otlp_decode.attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    SpanRecord(
                        s.name,
                        INTERNAL,
                        s.start_time_unix_nano,
                        s.end_time_unix_nano,
                        s.trace_id.hex(),
                        s.span_id.hex(),
                        s.parent_span_id.hex() or None,
                        s.status.code == 2,
                        s.status.message,
                        otlp_decode.attributes(s.attributes),
                        resource,
                        ss.scope.name,
                    )
                )
    return out


def _rate(fn: Callable[[], Any], n: int) -> float:
    """Items per CPU-second of this thread (immune to other processes sharing the cores)."""
    t = time.thread_time()
    fn()
    return n / max(1e-9, time.thread_time() - t)


def bench_decode(rounds: int = 7, n: int = 8192) -> dict[str, float]:
    rng = random.Random(1)
    bodies = [spans_body(n, rng) for _ in range(4)]
    res: dict[str, list[float]] = {"lite": [], "full": [], "lite+core": []}
    for i in range(rounds):  # interleaved A/B
        body = bodies[i % len(bodies)]
        agg = Aggregator()
        res["lite"].append(_rate(lambda body=body: otlp_decode.decode("traces", body), n))
        res["full"].append(_rate(lambda body=body: _full_tree_spans(body), n))
        res["lite+core"].append(
            _rate(lambda body=body, agg=agg: agg.add_spans(otlp_decode.decode("traces", body).records), n)
        )
    return {k: statistics.median(v) for k, v in res.items()}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def mem_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _post(url: str, path: str, body: bytes) -> int:
    import http.client

    conn = http.client.HTTPConnection(url.split("://", 1)[1], timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/x-protobuf"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _wandb_env(tmp: Path) -> dict[str, str]:
    return {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp / "wandb"),
        "WANDB_EXPORT_INTERVAL": "5",
        "WANDB_SILENT": "true",
        "WANDB_PROJECT": "bench-bridge",
    }


def bench_drain(tmp: Path, total: int = 150_000, per_request: int = 1000) -> dict[str, float]:
    """Queue `total` spans in the collector while the bridge is down, then time the bridge draining them."""
    rng = random.Random(2)
    port = topology.free_port()
    col = topology.start_collector(
        {
            "WANDB_BRIDGE_ENDPOINT": f"http://127.0.0.1:{port}",
            "WANDB_BRIDGE_RETRY_INITIAL": "100ms",
            "WANDB_BRIDGE_RETRY_MAX_INTERVAL": "200ms",
            "WANDB_BRIDGE_QUEUE_SIZE": "100000",
            "OTEL_COLLECTOR_LOG_LEVEL": "error",
        },
        tmp / "drain" / "logs",
        queue_dir=tmp / "drain" / "queue",
    )
    bridge = None
    try:
        # every span its own id: the bridge drops a span id it has seen (WANDB_BRIDGE_DEDUP_SPANS)
        for body in [spans_body(per_request, rng) for _ in range(total // per_request)]:
            assert _post(col.http_endpoint, "/v1/traces", body) == 200
        bridge = topology.start_bridge(_wandb_env(tmp), port=port)
        pid = bridge.pid
        start = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            n = bridge.stats()["spans"]
            if start is None and n > 0:
                start = (time.monotonic(), cpu_seconds(pid), n, cpu_seconds(col.pid))
            if n >= total:
                break
            time.sleep(0.01)
        end = (time.monotonic(), cpu_seconds(pid), bridge.stats()["spans"], cpu_seconds(col.pid))
        assert start is not None and end[2] >= total, f"bridge got {end[2]} of {total} spans"
        spans = end[2] - start[2]
        return {
            "spans": end[2],
            "wall_rate": spans / (end[0] - start[0]),
            "cpu_rate": spans / max(1e-9, end[1] - start[1]),
            "cpu_share": (end[1] - start[1]) / (end[0] - start[0]),
            "rss_mib": mem_kib(pid)["VmRSS"] / 1024,
            "collector_share": (end[3] - start[3]) / (end[0] - start[0]),
        }
    finally:
        col.stop()
        if bridge is not None:
            bridge.stop(60)


def _demo_payloads(rng: random.Random, rps: int, period: float) -> tuple[bytes, bytes, bytes]:
    per = max(1, int(rps * period))
    spans = spans_body(per * 3, rng)  # server + db + (1 in 3) LLM spans per request
    logs = ExportLogsServiceRequest()
    sl = logs.resource_logs.add().scope_logs.add()
    sl.scope.name = "app"
    for i in range(per * 2):
        r = sl.log_records.add()
        r.time_unix_nano, r.severity_number, r.body.string_value = time.time_ns(), 17 if i % 40 == 0 else 9, "request"
        set_attributes(r.attributes, {"http.route": rng.choice(ROUTES), "enduser.pseudo.id": "u-0001"})
    metrics = ExportMetricsServiceRequest()
    m = metrics.resource_metrics.add().scope_metrics.add().metrics.add()
    m.name, m.unit = "http.server.request.duration", "s"
    m.histogram.aggregation_temporality = 2
    for route in ROUTES:
        p = m.histogram.data_points.add()
        p.count, p.sum = 100, 3.2
        p.explicit_bounds.extend([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
        p.bucket_counts.extend([10] * 10)
        set_attributes(p.attributes, {"http.route": route, "http.request.method": "GET"})
    return spans, logs.SerializeToString(), metrics.SerializeToString()


def bench_collector_load(tmp: Path, rps: int = 50, seconds: float = 10.0) -> dict[str, float]:
    """The collector (with the bridge up) at the demo's load: rps requests/s -> 3 spans + 2 logs each, and one
    metrics export per second; CPU and memory of the collector process."""
    rng = random.Random(3)
    bridge = topology.start_bridge(_wandb_env(tmp / "load"))
    col = topology.start_collector(
        {"WANDB_BRIDGE_ENDPOINT": bridge.url, "OTEL_COLLECTOR_LOG_LEVEL": "error"},
        tmp / "load" / "logs",
        queue_dir=tmp / "load" / "queue",
    )
    try:
        period = 0.2
        spans, logs, metrics = _demo_payloads(rng, rps, period)
        idle_cpu0, t0 = cpu_seconds(col.pid), time.monotonic()
        time.sleep(2.0)
        idle = (cpu_seconds(col.pid) - idle_cpu0) / (time.monotonic() - t0)
        cpu0, t0, ticks = cpu_seconds(col.pid), time.monotonic(), 0
        while time.monotonic() - t0 < seconds:
            _post(col.http_endpoint, "/v1/traces", spans)
            _post(col.http_endpoint, "/v1/logs", logs)
            if ticks % int(1 / period) == 0:
                _post(col.http_endpoint, "/v1/metrics", metrics)
            ticks += 1
            time.sleep(max(0.0, t0 + ticks * period - time.monotonic()))
        busy = (cpu_seconds(col.pid) - cpu0) / (time.monotonic() - t0)
        mem = mem_kib(col.pid)
        return {
            "rps": rps,
            "spans_s": rps * 3,
            "logs_s": rps * 2,
            "idle_cpu": idle,
            "cpu": busy,
            "rss_mib": mem["VmRSS"] / 1024,
            "hwm_mib": mem["VmHWM"] / 1024,
        }
    finally:
        col.stop()
        bridge.stop(60)


def run() -> str:
    if not topology.COLLECTOR_BINARY.exists():
        topology.build_collector()
    dec = bench_decode()
    with tempfile.TemporaryDirectory(prefix="bench-bridge-") as d:
        tmp = Path(d)
        drain = bench_drain(tmp)
        load = bench_collector_load(tmp)
    return "\n".join(
        [
            "## W&B bridge and collector (bench/bench_bridge.py)",
            "",
            f"Machine: {os.cpu_count()} cores; realistic spans (Flask server spans with 11 attributes, LLM client "
            "spans with gen_ai.* attributes); medians of interleaved rounds.",
            "",
            "| measure | value |",
            "|---|---|",
            f"| traces decode, lite schema + KeyValue cache (spans per CPU-second) | {dec['lite']:,.0f} |",
            f"| traces decode, full protobuf tree (spans per CPU-second) | {dec['full']:,.0f} |",
            f"| ratio lite / full | {dec['lite'] / dec['full']:.2f}x |",
            f"| decode + core Aggregator (spans per CPU-second) | {dec['lite+core']:,.0f} |",
            f"| bridge fed by the real collector: {drain['spans']:,} queued spans drained, spans/s (wall) "
            f"| {drain['wall_rate']:,.0f} |",
            f"| same, spans per bridge CPU-second (target >= 30,000) | {drain['cpu_rate']:,.0f} "
            f"({drain['cpu_rate'] / 30000:.2f}x target) |",
            f"| while draining: bridge CPU (cores) / bridge RSS / collector CPU (cores) | {drain['cpu_share']:.2f} / "
            f"{drain['rss_mib']:.0f} MiB / {drain['collector_share']:.2f} |",
            f"| collector at the demo's load ({load['rps']} req/s = {load['spans_s']} spans/s + {load['logs_s']} logs/s "
            f"+ 1 metrics export/s): CPU (% of one core) | {100 * load['cpu']:.1f} % (idle {100 * load['idle_cpu']:.1f} %) |",
            f"| collector memory at that load: VmRSS / VmHWM | {load['rss_mib']:.0f} MiB / {load['hwm_mib']:.0f} MiB |",
            "",
        ]
    )


if __name__ == "__main__":
    print(run())
