"""A seeded, bounded fuzz of the real bridge: several thousand generated OTLP payloads (protobuf and JSON; mutated
seeds from tests/exporter/bridge/fuzz_corpus/, structurally absurd messages, hostile JSON) against a bridge process
with a real offline W&B run. Every request gets an answer and no 5xx, the bridge's memory stays bounded, and the run
is still correct afterwards: valid data sent last is counted exactly, and no key holds NaN, inf or a control
character. ``FUZZ_SEED`` / ``FUZZ_PAYLOADS`` replay or widen a run."""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from app.demo.topology import start_bridge
from otel_wandb.runfile import find_runs, read_run
from tests.support.collector import logs_request, metrics_request, spans_request
from tests.support.otlp import JSON, hostile_cases, nested_value, valid_metric, valid_spans

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CORPUS = Path(__file__).parent / "fuzz_corpus"
SEED = int(os.environ.get("FUZZ_SEED", "20261203"))
PAYLOADS = int(os.environ.get("FUZZ_PAYLOADS", "6000"))
PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")
REQUESTS = {
    "/v1/traces": ExportTraceServiceRequest,
    "/v1/metrics": ExportMetricsServiceRequest,
    "/v1/logs": ExportLogsServiceRequest,
}
RSS_GROWTH_LIMIT_MIB = 150


def corpus() -> list[tuple[str, bytes]]:
    """(path, body) seeds: the files kept in fuzz_corpus/ (their name starts with the signal)."""
    seeds = []
    for f in sorted(CORPUS.iterdir()):
        signal = f.name.split("-", 1)[0]
        seeds.append((f"/v1/{signal}", f.read_bytes()))
    assert len(seeds) >= 15, "the corpus seeds are missing"
    return seeds


def write_corpus() -> None:
    """Regenerate fuzz_corpus/ (valid requests of every kind and the hostile cases of issue 13)."""
    CORPUS.mkdir(exist_ok=True)
    seeds = {
        "traces-valid-spans": spans_request(5, error_every=2).SerializeToString(),
        "metrics-valid-sum": metrics_request(points=3).SerializeToString(),
        "logs-valid": logs_request(
            [("app", 17, "failed", {"k": 1}), ("audit", 9, "entry.create", {})]
        ).SerializeToString(),
    }
    for case in hostile_cases():
        name = case.name.replace(" ", "-").replace("*", "").replace("/", "")
        seeds[f"{case.path.rsplit('/', 1)[1]}-{name}" + ("-json" if case.content_type == JSON else "")] = case.body
    for name, body in seeds.items():
        (CORPUS / name).write_bytes(body)


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if not data:
            data += bytes(rng.randrange(256) for _ in range(8))
        elif op < 0.3:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif op < 0.5:  # truncate
            del data[rng.randrange(len(data)) :]
        elif op < 0.7:  # insert random bytes (varints, lengths)
            at = rng.randrange(len(data) + 1)
            data[at:at] = bytes(
                rng.choice((0x0A, 0x12, 0x1A, 0xFF, 0x80, 0x01, rng.randrange(256))) for _ in range(rng.randint(1, 12))
            )
        elif op < 0.85:  # duplicate a slice
            a = rng.randrange(len(data))
            b = min(len(data), a + rng.randint(1, 64))
            data[a:a] = data[a:b]
        else:  # splice a tail of itself
            data += data[rng.randrange(len(data)) :]
    return bytes(data)


def absurd(rng: random.Random) -> tuple[str, bytes]:
    """A well-formed protobuf request with absurd values."""
    pick = rng.randrange(5)
    if pick == 0:
        req = ExportMetricsServiceRequest()
        m = req.resource_metrics.add().scope_metrics.add().metrics.add()
        m.name = rng.choice(("lat", "x" * rng.randint(200, 5000), "bad\x00\x07name", "ü" * 300, "ok.metric"))
        m.exponential_histogram.aggregation_temporality = rng.choice((0, 1, 2, 7))
        p = m.exponential_histogram.data_points.add()
        p.scale = rng.randint(-40, 40)
        p.positive.offset = rng.choice((0, -1, 2**31 - 1, -(2**31), rng.randint(-5000, 5000)))
        p.positive.bucket_counts.extend(rng.choice((0, 1, 2**63, rng.randint(0, 9))) for _ in range(rng.randint(0, 50)))
        p.count = rng.choice((0, 1, 2**64 - 1, sum(p.positive.bucket_counts) % 2**64))
        p.zero_count = rng.choice((0, 1, 2**64 - 1))
        p.sum = rng.choice((0.0, math.nan, math.inf, -math.inf, 1e308, rng.random()))
        p.time_unix_nano = rng.choice((0, 2**64 - 1, time.time_ns()))
        return "/v1/metrics", req.SerializeToString()
    if pick == 1:
        req = ExportMetricsServiceRequest()
        m = req.resource_metrics.add().scope_metrics.add().metrics.add()
        m.name = rng.choice(("h", "sum", "g"))
        kind = rng.randrange(3)
        if kind == 0:
            p = m.histogram.data_points.add()
            p.explicit_bounds.extend(rng.choice((math.nan, math.inf, 1.0, 0.5, -1.0)) for _ in range(rng.randint(0, 6)))
            p.bucket_counts.extend(rng.randint(0, 3) for _ in range(rng.randint(0, 8)))
            p.count, p.sum = rng.randint(0, 30), rng.choice((1.0, math.nan))
        else:
            data = m.sum if kind == 1 else m.gauge
            p = data.data_points.add()
            if rng.random() < 0.5:
                p.as_double = rng.choice((math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0))
            else:
                p.as_int = rng.choice((2**63 - 1, -(2**63), 0, 1))
        kv = p.attributes.add()
        kv.key = rng.choice(("http.route", "\x1b[2J", "k" * 1000, "app.feature"))
        kv.value.CopyFrom(nested_value(rng.randint(0, 60)))
        return "/v1/metrics", req.SerializeToString()
    if pick == 2:
        req = spans_request(rng.randint(1, 5), attrs={"http.route": rng.choice(("/a", "/\x00b", "/" + "c" * 900))})
        for s in req.resource_spans[0].scope_spans[0].spans:
            s.kind = rng.choice((0, 1, 2, 3, 99, -5))
            s.start_time_unix_nano, s.end_time_unix_nano = rng.choice(((0, 2**64 - 1), (10, 5), (1, 2)))
            if rng.random() < 0.3:
                s.trace_id = bytes(rng.randrange(256) for _ in range(rng.choice((0, 15, 16, 17))))
            kv = s.attributes.add()
            kv.key = "deep"
            kv.value.CopyFrom(nested_value(rng.randint(0, 80)))
            event = s.events.add()
            event.name = "exception"
            ekv = event.attributes.add()
            ekv.key, ekv.value.string_value = "exception.message", "x" * rng.randint(0, 100_000)
        return "/v1/traces", req.SerializeToString()
    if pick == 3:
        req = logs_request([("app", rng.choice((0, 9, 17, 24, 99, -1)), "m" * rng.randint(0, 10_000), {})])
        r = req.resource_logs[0].scope_logs[0].log_records[0]
        r.time_unix_nano = rng.choice((0, 2**64 - 1, time.time_ns()))
        r.body.CopyFrom(nested_value(rng.randint(0, 50)))
        return "/v1/logs", req.SerializeToString()
    path = rng.choice(PATHS)
    return path, bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))


def hostile_json(rng: random.Random, path: str, body: bytes) -> bytes:
    """JSON from a seed: wrong types, deep nesting, huge numbers, or plain garbage."""
    try:
        msg = REQUESTS[path].FromString(body)
        obj: object = json_format.MessageToDict(msg)
    except Exception:
        obj = {}
    op = rng.randrange(5)
    if op == 0:
        depth = rng.choice((50, 900, 3000))
        return ('{"resourceSpans":' + "[" * depth + "]" * depth + "}").encode()
    if op == 1:
        return json.dumps(
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {
                                "spans": [
                                    {
                                        "traceId": rng.choice(("zz", "00" * 16, "", 5)),
                                        "spanId": rng.choice(("11" * 8, None, [])),
                                        "name": rng.choice((1, "x", None)),
                                        "startTimeUnixNano": rng.choice(("-1", "1e99", 3.5, "18446744073709551616")),
                                    }
                                ]
                            }
                        ]
                    }
                ]
            }
        ).encode()
    if op == 2:
        return rng.choice((b"null", b"[]", b'"string"', b"{", b'{"resourceMetrics": {"a": 1}}', b"\xff\xfe{}"))
    if op == 3 and isinstance(obj, dict):
        text = json.dumps(obj)
        return text.replace('"asInt"', '"asDouble"').replace(":", ': 1e400, "x":', 1).encode()
    return json.dumps(obj).encode()


class Client:
    """A keep-alive connection that reconnects when the bridge closes one (after a refused body)."""

    def __init__(self, url: str) -> None:
        self.hostport = url.split("://", 1)[1]
        self.conn = http.client.HTTPConnection(self.hostport, timeout=30)

    def post(self, path: str, body: bytes, ctype: str) -> int:
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body=body, headers={"Content-Type": ctype})
                resp = self.conn.getresponse()
                resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.reconnect()
                return resp.status
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # a dropped connection is a failure, unless the previous answer closed it and this is the retry
                self.reconnect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def reconnect(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection(self.hostport, timeout=30)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_thousands_of_hostile_payloads_never_silence_or_crash_the_bridge(tmp_path: Path):
    rng = random.Random(SEED)
    seeds = corpus()
    bridge = start_bridge(
        {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(tmp_path),
            "WANDB_EXPORT_INTERVAL": "2",
            "WANDB_BRIDGE_READ_TIMEOUT_S": "5",
            "ALERTS_ENABLED": "false",
        }
    )
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    try:
        client = Client(bridge.url)
        rss_start = peak = rss_mib(bridge.pid)
        started = time.monotonic()
        for i in range(PAYLOADS):
            r = rng.random()
            if r < 0.45:
                path, body = rng.choice(seeds)
                body, ctype, kind = mutate(rng, body), "application/x-protobuf", "mutated"
            elif r < 0.75:
                (path, body), ctype, kind = absurd(rng), "application/x-protobuf", "absurd"
            else:
                path, body = rng.choice(seeds)
                body, ctype, kind = hostile_json(rng, path, body), JSON, "json"
            status = client.post(path, body, ctype)
            statuses[status] += 1
            kinds[kind] += 1
            assert status < 500, f"payload {i} (seed {SEED}, {kind}) -> {status}"
            if i % 250 == 0:
                peak = max(peak, rss_mib(bridge.pid))
        elapsed = time.monotonic() - started
        peak = max(peak, rss_mib(bridge.pid))
        # afterwards the run still counts valid data exactly
        assert client.post("/v1/traces", valid_spans("/after-fuzz", 37, start=10**6), "application/x-protobuf") == 200
        assert client.post("/v1/metrics", valid_metric("after.fuzz", 11), "application/x-protobuf") == 200
        client.conn.close()
    finally:
        code = bridge.stop()
    print(
        f"\nfuzz: {PAYLOADS} payloads (seed {SEED}) in {elapsed:.1f} s: {dict(kinds)}; statuses {dict(statuses)}; "
        f"bridge RSS {rss_start:.0f} -> peak {peak:.0f} MiB"
    )
    assert code == 0, bridge.output()
    assert peak - rss_start < RSS_GROWTH_LIMIT_MIB
    run = read_run(find_runs(tmp_path)[0])
    assert sum(run.series("http/requests@http.route=/after-fuzz")) == 37
    assert run.series("after.fuzz/total")[-1] == 11
    values = [v for row in run.history for v in row.values() if isinstance(v, float)]
    assert all(math.isfinite(v) for v in values), "a key holds NaN or inf"
    assert all(k.isprintable() for row in run.history for k in row), "a key holds a control character"


if __name__ == "__main__":  # python -m tests.exporter.bridge.test_fuzz: rewrite the corpus seeds
    write_corpus()
