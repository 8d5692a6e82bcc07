"""Benchmarks of the OTel -> W&B exporters: ``run() -> str`` returns a markdown section for BENCHMARKS.md.

1. Span path on one core: real SDK ``ReadableSpan``s -> ``convert.span_records`` -> ``Aggregator.add_spans``,
   in batches of 512 (the BatchSpanProcessor's), spans per CPU-second (``time.process_time``, robust to a
   loaded machine) and per wall-second; median of rounds.
2. ``wandb.log`` calls per export interval: a Pipeline (recorder sink) at a 0.1 s interval fed from two threads.
3. RSS growth from 10k to 1M spans through a Pipeline (fresh subprocess, VmRSS from psutil).
4. Percentile accuracy against the exact value: the span sketch, base2 exponential histograms from the real
   SDK, and (for contrast) the SDK's default explicit buckets.
5. The service side by side (bench/exporters_service.py: fresh subprocess per round, rounds interleaved,
   medians): off, OTel instrumentation alone, ours (+ our W&B exporters), the same instrumentation + one
   ``wandb.log`` per request (like for like), and the original ticket's middleware without OTel.

    python -m bench.bench_exporters [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.exporters_service import bench_service

ROOT = Path(__file__).resolve().parents[1]
ROUTES = ["/api/entries", "/api/entries/<int:entry_id>", "/api/entries/<int:entry_id>/ai/<feature>", "/api/users"]


def make_spans(requests: int = 2500) -> list:
    """Realistic mix per request: a server span, a DB client span, every 4th request a GenAI client span."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    mem = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(mem))
    tr = tp.get_tracer("bench")
    for i in range(requests):
        with tr.start_as_current_span(
            "GET x",
            kind=SpanKind.SERVER,
            attributes={
                "http.route": ROUTES[i % 4],
                "http.request.method": "GET",
                "http.response.status_code": 500 if i % 50 == 0 else 200,
            },
        ):
            with tr.start_as_current_span(
                "SELECT diary", kind=SpanKind.CLIENT, attributes={"db.system.name": "sqlite"}
            ):
                pass
            if i % 4 == 2:
                with tr.start_as_current_span(
                    "chat gpt-4o-mini",
                    kind=SpanKind.CLIENT,
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.usage.input_tokens": 100,
                        "gen_ai.usage.output_tokens": 20,
                        "app.feature": "mood",
                    },
                ):
                    pass
    return list(mem.get_finished_spans())


def bench_span_path(rounds: int = 5) -> dict:
    from otel_wandb.core import Aggregator
    from otel_wandb.sdk._convert import span_records

    spans = make_spans()
    cpu, wall = [], []
    for _ in range(rounds):
        agg = Aggregator()
        t0, c0 = time.perf_counter(), time.process_time()
        for _rep in range(8):
            for k in range(0, len(spans), 512):
                agg.add_spans(span_records(spans[k : k + 512]))
        n = 8 * len(spans)
        cpu.append(n / (time.process_time() - c0))
        wall.append(n / (time.perf_counter() - t0))
        agg.flush(time.time_ns())
    return {"cpu": statistics.median(cpu), "wall": statistics.median(wall), "spans": len(spans)}


class _Recorder:
    def __init__(self) -> None:
        self.logged = 0

    def log(self, payload) -> None:
        self.logged += 1

    def define_metric(self, *a, **k) -> None:
        pass

    def finish(self) -> None:
        pass


def bench_log_calls(seconds: float = 2.0) -> dict:
    from otel_wandb.pipeline import Pipeline
    from otel_wandb.sdk._convert import span_records
    from otel_wandb.sink import WandbSink

    spans = make_spans(500)
    rec = _Recorder()
    p = Pipeline(WandbSink(run=rec), interval_s=0.1)
    stop = time.monotonic() + seconds
    fed = [0]

    def feed() -> None:
        while time.monotonic() < stop:
            p.add_spans(span_records(spans[:128]))
            fed[0] += 128

    threads = [threading.Thread(target=feed) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.shutdown(5)
    return {"intervals": p.intervals, "log_calls": rec.logged, "spans": fed[0]}


def _rss_child() -> None:
    import psutil

    from otel_wandb.pipeline import Pipeline
    from otel_wandb.sdk._convert import span_records
    from otel_wandb.sink import WandbSink

    spans = make_spans(2500)
    p = Pipeline(WandbSink(run=_Recorder()), interval_s=3600)
    proc = psutil.Process()
    fed, out = 0, {}
    while fed < 1_000_000:
        for k in range(0, len(spans), 512):
            batch = spans[k : k + 512]
            p.add_spans(span_records(batch))
            fed += len(batch)
            if fed >= 10_000 and "rss_10k" not in out:
                out["rss_10k"] = proc.memory_info().rss
        if fed % 200_000 < len(spans):
            p.flush_once()  # one export interval per ~200k spans
    out["rss_1m"] = proc.memory_info().rss
    out["spans"] = fed
    p.shutdown(5)
    print(json.dumps(out))


def bench_rss() -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_exporters", "--rss-child"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _exact(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def bench_accuracy() -> dict:
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

    from otel_wandb.core import Aggregator
    from otel_wandb.core._stats import LogSketch
    from otel_wandb.sdk._convert import metric_records

    rng = random.Random(42)
    dists = {
        "lognormal(-3,1) s": lambda: rng.lognormvariate(-3, 1),
        "uniform(10ms,2s)": lambda: rng.uniform(0.01, 2),
        "exponential(mean 80ms)": lambda: rng.expovariate(1 / 0.08) + 1e-4,
    }
    worst = {"sketch": 0.0, "exponential": 0.0, "explicit": 0.0}
    for gen in dists.values():
        values = [gen() for _ in range(50_000)]
        truth = _exact(values, 0.95)
        sk = LogSketch()
        for v in values:
            sk.add(v)
        worst["sketch"] = max(worst["sketch"], abs(sk.quantile(0.95) / truth - 1))
        for kind in ("exponential", "explicit"):
            reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
            views = (
                [View(instrument_name="*", aggregation=ExponentialBucketHistogramAggregation())]
                if kind == "exponential"
                else []
            )
            mp = MeterProvider(metric_readers=[reader], views=views)
            h = mp.get_meter("b").create_histogram("d")
            scale = 1.0 if kind == "exponential" else 1000.0  # explicit defaults are ms-scale boundaries
            for v in values:
                h.record(v * scale)
            agg = Aggregator(start_ns=0)
            agg.add_metrics(list(metric_records(reader.get_metrics_data())))
            est = agg.flush(10**9).row["d/p95"] / scale
            worst[kind] = max(worst[kind], abs(est / truth - 1))
            mp.shutdown()
    return worst


def run(seconds: float = 4.0, rounds: int = 3) -> str:
    span = bench_span_path()
    calls = bench_log_calls()
    rss = bench_rss()
    acc = bench_accuracy()
    svc = bench_service(seconds, rounds)
    load = os.getloadavg()[0]
    growth = (rss["rss_1m"] - rss["rss_10k"]) / 2**20
    off, ours, naive, otel_naive = (svc[v]["rps"] for v in ("off", "ours", "naive", "otel_naive"))
    return "\n".join(
        [
            "## OTel -> W&B exporters (bench/bench_exporters.py)",
            "",
            f"Machine: {os.cpu_count()} cores, load average {load:.1f} during the run. Medians of interleaved rounds.",
            "",
            "| measure | value | target |",
            "|---|---|---|",
            f"| span path (SDK ReadableSpan -> record -> aggregate), one core | {span['cpu']:,.0f} spans per CPU-s "
            f"({span['wall']:,.0f}/s wall) | >= 200k/s |",
            f"| wandb.log calls per export interval | {calls['log_calls']} calls / {calls['intervals']} intervals "
            f"({calls['spans']:,} spans) | <= 1 |",
            f"| RSS growth 10k -> {rss['spans']:,} spans | {growth:+.1f} MB | <= 20 MB |",
            f"| p95 error vs exact: span sketch | {acc['sketch']:.2%} (worst of 3 distributions) | <= 3 % |",
            f"| p95 error vs exact: base2 exponential histogram (SDK) | {acc['exponential']:.2%} | <= 3 % |",
            f"| p95 error vs exact: SDK default explicit buckets, values in ms (contrast) | {acc['explicit']:.2%} | - |",
            "",
            f"Service (real app, authenticated GET /api/entries/<id>, Flask test client, {rounds} interleaved rounds "
            f"of {seconds:g} s):",
            "",
            "| variant | requests/s | ratio to off | app CPU per request | W&B history rows |",
            "|---|---|---|---|---|",
            *[
                f"| {label} | {svc[v]['rps']:,.0f} | {svc[v]['rps'] / off:.2f} | {svc[v]['cpu_us']:,.0f} us | "
                f"{svc[v]['rows']:.0f} |"
                for v, label in (
                    ("off", "off (OTEL_SDK_DISABLED)"),
                    ("otel", "app/telemetry/ instrumentation, exporters `none`"),
                    ("ours", "same + our W&B exporters (traces+metrics+logs, 2 s interval)"),
                    ("otel_naive", "same instrumentation, exporters `none`, + wandb.log per request"),
                    ("naive", "no OTel, wandb.log per request (original ticket)"),
                )
            ],
            "",
            f"Our exporters' own CPU: {svc['ours']['exporter_us']:,.1f} us per request in export() (SDK -> record "
            f"conversion + aggregation, on the batch processors' threads) and {svc['ours']['flush_ms']:,.1f} ms per "
            f"export interval on the flusher thread (closing the interval + one sink.log with its tables), "
            f"measured with thread_time. The ours - otel difference ({svc['ours']['cpu_us'] - svc['otel']['cpu_us']:+,.0f}"
            f" us per request at this 2 s interval) also holds the SDK's batch processors, the privacy filter and the "
            f"metric reader that the `none` variant does not run. Throughput ratios on this shared machine move by "
            f"+-30 % between runs; CPU per request is the steadier figure.",
            "",
            f"Per request, W&B export itself: ours {svc['ours']['exporter_us']:,.1f} us vs naive "
            f"{svc['naive']['cpu_us'] - svc['off']['cpu_us']:,.0f} us (naive - off, the wandb.log on the request "
            f"thread): **{(svc['naive']['cpu_us'] - svc['off']['cpu_us']) / max(svc['ours']['exporter_us'], 1e-9):.0f}x "
            f"less CPU** for ours in the W&B step itself. Whole-process CPU per request, like for like: ours "
            f"{svc['ours']['cpu_us']:,.0f} us vs instrumentation + wandb.log per request "
            f"{svc['otel_naive']['cpu_us']:,.0f} us (naive / ours: {svc['otel_naive']['cpu_us'] / svc['ours']['cpu_us']:.2f}x): the "
            f"SDK's batch processors, metric reader and privacy filter that ours adds cost about what the naive "
            f"per-request wandb.log costs, and ours keeps W&B off the request thread.",
            "",
            f"Like for like (the same OTel instrumentation in both): ours / (instrumentation + wandb.log per request) "
            f"throughput: **{ours / otel_naive:.2f}x**. Against the original ticket's middleware alone (no OTel at all): "
            f"**{ours / naive:.2f}x** (naive records 4 fields per request and nothing else; ours: traces, metrics, logs, "
            f"errors, AI cost). W&B rows: ours one per interval, naive one per request "
            f"({svc['naive']['requests']:.0f} requests).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_exporters")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        _rss_child()
        return 0
    sys.stdout.write(run(args.seconds, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
