"""The bridge's CPU per span_metrics point (docs/scaling.md: "~450 µs per span_metrics point"): ``run() -> str``.

The load is what the agents' ``span_metrics/http`` connector sends (collector/agent.yaml): per export, 30 series
(route x method x status class) of ``span_metrics.http.server.duration``, a CUMULATIVE base2 exponential histogram
(max_size 320, seconds) that grows with every export (~60-300 populated buckets), plus the matching
``span_metrics.http.server.calls`` cumulative sum. One export per agent flush (5 s); the bridge closes an interval
every ``EXPORTS_PER_INTERVAL`` exports (10 s, as in bench_scale). The bodies are built once (seeded), written to a
file, and every run decodes the same bytes.

Measured per round, in a fresh subprocess per tree: CPU (``time.process_time``) of ``decode`` + ``Aggregator
.add_metrics`` + ``Aggregator.flush`` over all exports, divided by the points sent (histogram and sum points).
Trees are compared in ONE run, interleaved A/B (alternating order per round), medians:

    .venv/bin/python -m bench.bench_points                                  # this tree only
    BENCH_POINTS_BASE=/tmp/points-base .venv/bin/python -m bench.bench_points  # baseline tree vs this tree
    .venv/bin/python -m bench.bench_points --profile                          # cProfile of this tree

``BENCH_POINTS_BASE`` is a checkout of the baseline (``git worktree add /tmp/points-base redesign``); this file
runs as a script in each subprocess with only that tree's ``exporters/src`` on PYTHONPATH (checked: the otel_wandb
imported must be that tree's).
The rows written are compared between trees (same keys, values equal within 1e-9 relative): a speed-up that
changed an output would fail the bench.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ROUTES = ("/api/entries", "/api/entries/<int:entry_id>", "/api/users", "/api/mood", "/api/stats")
METHODS = ("GET", "POST", "DELETE")
STATUS = (200, 404, 500)  # 2xx, 4xx, 5xx
SERIES = 30  # route x method x status
EXPORTS = 24  # agent flushes (5 s each): 2 minutes of traffic
EXPORTS_PER_INTERVAL = 2  # bridge interval 10 s
# new requests per series and export (the histograms fill up over the exports); BENCH_POINTS_REQS=40 is closer to
# bench_scale's fleet (~35 per stream and flush): fewer buckets change per export
REQS_PER_EXPORT = int(os.environ.get("BENCH_POINTS_REQS", "400"))
MAX_SIZE = 320
START_SCALE = 8
ROUNDS = 7
T0 = 1_700_000_000_000_000_000


class _Series:
    """One cumulative exponential histogram as the collector's connector keeps it (downscales to fit max_size)."""

    def __init__(self, rng: random.Random, mu: float, sigma: float) -> None:
        self.rng, self.mu, self.sigma = rng, mu, sigma
        self.scale = START_SCALE
        self.buckets: dict[int, int] = {}
        self.count, self.sum = 0, 0.0
        self.min, self.max = math.inf, -math.inf

    def add(self, n: int) -> None:
        for _ in range(n):
            v = self.rng.lognormvariate(self.mu, self.sigma)
            self.count += 1
            self.sum += v
            self.min, self.max = min(self.min, v), max(self.max, v)
            while True:
                i = math.ceil(math.log2(v) * 2**self.scale) - 1  # bucket (base^i, base^(i+1)]
                lo, hi = min(self.buckets, default=i), max(self.buckets, default=i)
                if max(hi, i) - min(lo, i) < MAX_SIZE:
                    break
                self.scale -= 1
                old, self.buckets = self.buckets, {}
                for j, c in old.items():
                    self.buckets[j >> 1] = self.buckets.get(j >> 1, 0) + c
            self.buckets[i] = self.buckets.get(i, 0) + 1

    def dense(self) -> tuple[int, list[int]]:
        lo, hi = min(self.buckets), max(self.buckets)
        return lo, [self.buckets.get(i, 0) for i in range(lo, hi + 1)]


def build_bodies(seed: int = 1) -> list[bytes]:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    rng = random.Random(seed)
    combos = [(r, m, s) for r in ROUTES for m in METHODS for s in STATUS][:SERIES]
    hists = [_Series(rng, math.log(rng.uniform(0.005, 0.2)), rng.uniform(0.6, 1.4)) for _ in combos]
    start = T0
    bodies = []
    for e in range(EXPORTS):
        t = T0 + (e + 1) * 5_000_000_000
        req = ExportMetricsServiceRequest()
        rm = req.resource_metrics.add()
        for k, v in (("service.name", "journal"), ("service.instance.id", "host-1:4242"), ("app.worker.id", "0")):
            kv = rm.resource.attributes.add()
            kv.key, kv.value.string_value = k, v
        sm = rm.scope_metrics.add()
        sm.scope.name = "spanmetricsconnector"
        calls = sm.metrics.add()
        calls.name = "span_metrics.http.server.calls"
        calls.sum.aggregation_temporality, calls.sum.is_monotonic = 2, True
        dur = sm.metrics.add()
        dur.name, dur.unit = "span_metrics.http.server.duration", "s"
        dur.exponential_histogram.aggregation_temporality = 2
        for (route, method, status), h in zip(combos, hists, strict=True):
            h.add(rng.randint(REQS_PER_EXPORT // 2, REQS_PER_EXPORT * 3 // 2))
            attrs = {
                "service.name": "journal",
                "span.name": f"{method} {route}",
                "span.kind": "SPAN_KIND_SERVER",
                "status.code": "STATUS_CODE_ERROR" if status == 500 else "STATUS_CODE_UNSET",
                "http.route": route,
                "http.request.method": method,
                "http.response.status_code": status,
            }
            for metric_point in (calls.sum.data_points.add(), dur.exponential_histogram.data_points.add()):
                metric_point.start_time_unix_nano, metric_point.time_unix_nano = start, t
                for k, v in attrs.items():
                    kv = metric_point.attributes.add()
                    kv.key = k
                    if isinstance(v, int):
                        kv.value.int_value = v
                    else:
                        kv.value.string_value = v
            cp = calls.sum.data_points[-1]
            cp.as_int = h.count
            p = dur.exponential_histogram.data_points[-1]
            p.count, p.sum, p.min, p.max, p.scale = h.count, h.sum, h.min, h.max, h.scale
            p.positive.offset, counts = h.dense()
            p.positive.bucket_counts.extend(counts)
        bodies.append(req.SerializeToString())
    return bodies


def measure(bodies: list[bytes], profile: bool = False) -> dict[str, Any]:
    """One pass over ``bodies`` in this process: CPU µs per point, the rows written."""
    import time

    from otel_wandb.bridge._decode import decode
    from otel_wandb.core import Aggregator, CoreConfig

    agg = Aggregator(CoreConfig(request_source="span_metrics"), start_ns=T0, process_start_ns=T0 - 10**9)
    rows = []
    points = 0
    decode_s = add_s = flush_s = 0.0
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    for i, body in enumerate(bodies):
        t0 = time.process_time()
        decoded = decode("metrics", body)
        t1 = time.process_time()
        agg.add_metrics(decoded.records)
        t2 = time.process_time()
        points += len(decoded.records)
        decode_s += t1 - t0
        add_s += t2 - t1
        if (i + 1) % EXPORTS_PER_INTERVAL == 0:
            res = agg.flush(T0 + (i + 1) * 5_000_000_000)
            flush_s += time.process_time() - t2
            rows.append(res.row)
            rows.append({"latency_ms": list(res.signals.latency_ms)})
    if prof is not None:
        import io
        import pstats

        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    us = 1e6 / points
    return {
        "points": points,
        "total_us": (decode_s + add_s + flush_s) * us,
        "decode_us": decode_s * us,
        "add_us": add_s * us,
        "flush_us": flush_s * us,
        "rows": rows,
    }


def _child(bodies_file: str, repeats: int) -> None:
    import otel_wandb

    data = json.loads(Path(bodies_file).read_text())
    bodies = [bytes.fromhex(b) for b in data]
    results = [measure(bodies) for _ in range(repeats)]  # the first warms the caches (KeyValue cache, imports)
    best = results[-1]
    best["file"] = otel_wandb.__file__
    print(json.dumps(best))


def _run_tree(tree: Path, bodies_file: str) -> dict[str, Any]:
    # this file runs as a script (the baseline tree need not have it); only otel_wandb comes from ``tree``
    env = dict(os.environ, PYTHONPATH=str(tree / "exporters" / "src"))
    out = subprocess.run(
        [sys.executable, __file__, "--child", bodies_file],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    res: dict[str, Any] = json.loads(out)
    if not str(res["file"]).startswith(str(tree / "exporters" / "src")):
        raise RuntimeError(f"{tree}: imported {res['file']}, not this tree's otel_wandb")
    return res


def _same_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    """'' when the rows are the same (keys, values within 1e-9 relative), else the first difference."""
    for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
        if ra.keys() != rb.keys():
            return f"row {i}: keys differ: {sorted(ra.keys() ^ rb.keys())[:5]}"
        for k, va in ra.items():
            vb = rb[k]
            pairs = zip(va, vb, strict=True) if isinstance(va, list) else [(va, vb)]
            for x, y in pairs:
                if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
                    return f"row {i}: {k}: {va} != {vb}"
    return ""


def run() -> str:
    base = os.environ.get("BENCH_POINTS_BASE")
    trees = {"base": Path(base).resolve()} if base else {}
    trees["this tree"] = ROOT
    bodies = build_bodies()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([b.hex() for b in bodies], f)
    try:
        names = list(trees)
        for rnd in range(ROUNDS):
            for name in names if rnd % 2 == 0 else names[::-1]:
                results[name].append(_run_tree(trees[name], f.name))
    finally:
        os.unlink(f.name)
    points = results[names[-1]][0]["points"]
    sizes = _bucket_sizes(bodies)
    lines = [
        "## span_metrics points: bridge CPU per point",
        "",
        f"{EXPORTS} exports of {SERIES} cumulative exponential histograms (max_size {MAX_SIZE}; ~{REQS_PER_EXPORT} "
        "new values per histogram and export; "
        f"{sizes[0]}-{sizes[1]} buckets, median {sizes[2]}) + {SERIES} cumulative sums = {points} points; an "
        f"interval every {EXPORTS_PER_INTERVAL} exports. CPU µs per point, median of {ROUNDS} interleaved rounds "
        "(fresh subprocess each).",
        "",
        "| tree | total µs/point | decode | add_metrics | flush |",
        "|---|---|---|---|---|",
    ]
    med: dict[str, float] = {}
    for name in names:
        rs = results[name]
        m = {k: statistics.median(x[k] for x in rs) for k in ("total_us", "decode_us", "add_us", "flush_us")}
        med[name] = m["total_us"]
        lines.append(
            f"| {name} | {m['total_us']:.1f} | {m['decode_us']:.1f} | {m['add_us']:.1f} | {m['flush_us']:.1f} |"
        )
    if base:
        diff = _same_rows(results["base"][0]["rows"], results["this tree"][0]["rows"])
        lines += [
            "",
            f"Ratio base / this tree: **{med['base'] / med['this tree']:.2f}x**. Rows: "
            + (f"DIFFERENT ({diff})" if diff else "identical (keys and values)."),
        ]
    return "\n".join(lines) + "\n"


def _bucket_sizes(bodies: list[bytes]) -> tuple[int, int, int]:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    sizes = []
    for body in bodies:
        req = ExportMetricsServiceRequest.FromString(body)
        for m in req.resource_metrics[0].scope_metrics[0].metrics:
            if m.WhichOneof("data") == "exponential_histogram":
                sizes += [sum(1 for c in p.positive.bucket_counts if c) for p in m.exponential_histogram.data_points]
    return min(sizes), max(sizes), int(statistics.median(sizes))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], 2)
    elif "--profile" in sys.argv:
        bodies = build_bodies()
        measure(bodies)
        res = measure(bodies, profile=True)
        print({k: v for k, v in res.items() if k != "rows"})
    else:
        print(run())
