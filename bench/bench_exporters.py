"""Benchmarks of the OTel -> W&B exporters: ``run() -> str`` returns a markdown section for BENCHMARKS.md.

1. Span path on one core: real SDK ``ReadableSpan``s -> ``convert.span_records`` -> ``Aggregator.add_spans``,
   in batches of 512 (the BatchSpanProcessor's), spans per CPU-second (``time.process_time``, robust to a
   loaded machine) and per wall-second; median of rounds.
2. ``wandb.log`` calls per export interval: a Pipeline (recorder sink) at a 0.1 s interval fed from two threads.
3. RSS growth from 10k to 1M spans through a Pipeline (fresh subprocess, VmRSS from psutil).
4. Percentile accuracy against the exact value: the span sketch, base2 exponential histograms from the real
   SDK, and (for contrast) the SDK's default explicit buckets.
5. The service side by side (fresh subprocess per round, rounds interleaved off/ours/naive, medians): the real
   app (create_app, SQLite, authenticated ``GET /api/entries/<id>`` through Flask's test client) with
   (off) ``OTEL_SDK_DISABLED=true``; (ours) app/telemetry.py with ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER=wandb``
   into an offline run; (naive) no OTel, ``bench/naive_middleware.py`` doing one ``wandb.log`` per request.

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
import tempfile
import threading
import time
from pathlib import Path

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
        with tr.start_as_current_span("GET x", kind=SpanKind.SERVER, attributes={
                "http.route": ROUTES[i % 4], "http.request.method": "GET",
                "http.response.status_code": 500 if i % 50 == 0 else 200}):
            with tr.start_as_current_span("SELECT diary", kind=SpanKind.CLIENT,
                                          attributes={"db.system.name": "sqlite"}):
                pass
            if i % 4 == 2:
                with tr.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
                        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20,
                        "app.feature": "mood"}):
                    pass
    return list(mem.get_finished_spans())


def bench_span_path(rounds: int = 5) -> dict:
    from exporters.convert import span_records
    from exporters.core import Aggregator

    spans = make_spans()
    cpu, wall = [], []
    for _ in range(rounds):
        agg = Aggregator()
        t0, c0 = time.perf_counter(), time.process_time()
        for _rep in range(8):
            for k in range(0, len(spans), 512):
                agg.add_spans(span_records(spans[k:k + 512]))
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
    from exporters.convert import span_records
    from exporters.pipeline import Pipeline
    from exporters.sink import WandbSink

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

    from exporters.convert import span_records
    from exporters.pipeline import Pipeline
    from exporters.sink import WandbSink

    spans = make_spans(2500)
    p = Pipeline(WandbSink(run=_Recorder()), interval_s=3600)
    proc = psutil.Process()
    fed, out = 0, {}
    while fed < 1_000_000:
        for k in range(0, len(spans), 512):
            batch = spans[k:k + 512]
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
    out = subprocess.run([sys.executable, "-m", "bench.bench_exporters", "--rss-child"], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def _exact(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def bench_accuracy() -> dict:
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

    from exporters.convert import metric_records
    from exporters.core import Aggregator
    from exporters.stats import LogSketch

    rng = random.Random(42)
    dists = {"lognormal(-3,1) s": lambda: rng.lognormvariate(-3, 1), "uniform(10ms,2s)": lambda: rng.uniform(.01, 2),
             "exponential(mean 80ms)": lambda: rng.expovariate(1 / .08) + 1e-4}
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
            views = [View(instrument_name="*", aggregation=ExponentialBucketHistogramAggregation())] \
                if kind == "exponential" else []
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


SERVICE_SETUP = """
import json, os, sys, time
variant, seconds, db, wdir = sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
from app import create_app
app = create_app({"DATABASE_URL": db, "PSEUDONYM_SECRET": "bench", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
run = None
if variant == "naive":
    import wandb
    from bench.naive_middleware import install
    run = wandb.init(project="bench-naive", mode="offline", dir=wdir,
                     settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))
    install(app, run)
c = app.test_client()
token = c.post("/api/users", json={"name": "bench"}).json["token"]
h = {"Authorization": "Bearer " + token}
eid = c.post("/api/entries", json={"text": "bench"}, headers=h).json["id"]
url = f"/api/entries/{eid}"
for _ in range(200):
    c.get(url, headers=h)
pipe = None
if variant == "ours":  # the one-off wandb import + init (first interval, flusher thread) before the timed window
    from exporters.pipeline import Pipeline
    pipe = Pipeline.shared()
    pipe.force_flush(60)
    a0, f0, i0 = pipe.cpu_export_s, pipe.cpu_flush_s, pipe.log_calls
n, t0, c0 = 0, time.perf_counter(), time.process_time()
while time.perf_counter() - t0 < seconds:
    for _ in range(50):
        assert c.get(url, headers=h).status_code == 200
    n += 50
el, cpu = time.perf_counter() - t0, time.process_time() - c0
exp_us = (pipe.cpu_export_s - a0) / n * 1e6 if pipe is not None else 0.0
if pipe is not None:
    pipe.force_flush(30)
flush_ms = (pipe.cpu_flush_s - f0) / max(1, pipe.log_calls - i0) * 1e3 if pipe is not None else 0.0
if run is not None:
    run.finish()
else:
    from app import telemetry
    telemetry.shutdown(30)
print(json.dumps({"rps": n / el, "cpu_us": cpu / n * 1e6, "exporter_us": exp_us, "flush_ms": flush_ms, "requests": n + 202}))
"""


def _service_round(variant: str, seconds: float, tmp: Path) -> dict:
    wdir = tmp / f"{variant}-{time.monotonic_ns()}"
    wdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WANDB_"))}
    env.update(WANDB_MODE="offline", WANDB_DIR=str(wdir), WANDB_EXPORT_INTERVAL="2", LOG_LEVEL="WARNING")
    if variant in ("ours", "otel"):
        exporter = "wandb" if variant == "ours" else "none"
        env.update(OTEL_TRACES_EXPORTER=exporter, OTEL_METRICS_EXPORTER=exporter, OTEL_LOGS_EXPORTER=exporter,
                   OTEL_METRIC_EXPORT_INTERVAL="2000")
    else:
        env["OTEL_SDK_DISABLED"] = "true"
    db = f"sqlite:///{wdir / 'bench.sqlite3'}"
    out = subprocess.run([sys.executable, "-c", SERVICE_SETUP, "x", variant, str(seconds), db, str(wdir)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"{variant} round failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    from exporters.runfile import find_runs, read_run, wait_complete

    rows = 0
    for run_dir in find_runs(wdir):
        wait_complete(run_dir, 20)
        rows += len(read_run(run_dir).history)
    res["history_rows"] = rows
    return res


def bench_service(seconds: float = 4.0, rounds: int = 3) -> dict:
    results: dict[str, list[dict]] = {"off": [], "otel": [], "ours": [], "naive": []}
    with tempfile.TemporaryDirectory(prefix="bench-exporters-") as d:
        for _ in range(rounds):
            for variant in results:
                results[variant].append(_service_round(variant, seconds, Path(d)))
    return {v: {"rps": statistics.median(r["rps"] for r in rs),
                "cpu_us": statistics.median(r["cpu_us"] for r in rs),
                "exporter_us": statistics.median(r["exporter_us"] for r in rs),
                "flush_ms": statistics.median(r["flush_ms"] for r in rs),
                "requests": statistics.median(r["requests"] for r in rs),
                "rows": statistics.median(r["history_rows"] for r in rs)} for v, rs in results.items()}


def run(seconds: float = 4.0, rounds: int = 3) -> str:
    span = bench_span_path()
    calls = bench_log_calls()
    rss = bench_rss()
    acc = bench_accuracy()
    svc = bench_service(seconds, rounds)
    load = os.getloadavg()[0]
    growth = (rss["rss_1m"] - rss["rss_10k"]) / 2**20
    off, ours, naive = svc["off"]["rps"], svc["ours"]["rps"], svc["naive"]["rps"]
    return "\n".join([
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
        *[f"| {label} | {svc[v]['rps']:,.0f} | {svc[v]['rps'] / off:.2f} | {svc[v]['cpu_us']:,.0f} us | "
          f"{svc[v]['rows']:.0f} |" for v, label in (
              ("off", "off (OTEL_SDK_DISABLED)"),
              ("otel", "app/telemetry.py instrumentation, exporters `none`"),
              ("ours", "same + our W&B exporters (traces+metrics+logs, 2 s interval)"),
              ("naive", "no OTel, wandb.log per request (original ticket)"))],
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
        f"less CPU** for ours.",
        "",
        f"ours / naive throughput: **{ours / naive:.2f}x** (naive records 4 fields per request and nothing else; "
        f"ours: traces, metrics, logs, errors, AI cost). W&B rows: ours one per interval, naive one per request "
        f"({svc['naive']['requests']:.0f} requests).",
        "",
    ])


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
