"""The service side of bench_exporters: the real app in a fresh subprocess per round (Flask test client,
authenticated ``GET /api/entries/<id>``), rounds interleaved across the variants, medians.

Variants: ``off`` (OTEL_SDK_DISABLED), ``otel`` (app/telemetry/ instrumentation, exporters ``none``), ``ours``
(the same + our W&B exporters), ``otel_naive`` (the same instrumentation, exporters ``none``, plus
``bench/naive_middleware.py``: one ``wandb.log`` per request -- like for like with ``ours``), ``naive`` (no OTel,
the middleware alone: the original ticket's approach).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


SERVICE_SETUP = """
import json, os, sys, time
variant, seconds, db, wdir = sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
from app import create_app
app = create_app({"DATABASE_URL": db, "PSEUDONYM_SECRET": "bench", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
run = None
if variant in ("naive", "otel_naive"):
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
    from otel_wandb.pipeline import Pipeline
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
    if variant in ("ours", "otel", "otel_naive"):
        exporter = "wandb" if variant == "ours" else "none"
        env.update(
            OTEL_TRACES_EXPORTER=exporter,
            OTEL_METRICS_EXPORTER=exporter,
            OTEL_LOGS_EXPORTER=exporter,
            OTEL_METRIC_EXPORT_INTERVAL="2000",
        )
    else:
        env["OTEL_SDK_DISABLED"] = "true"
    db = f"sqlite:///{wdir / 'bench.sqlite3'}"
    out = subprocess.run(
        [sys.executable, "-c", SERVICE_SETUP, "x", variant, str(seconds), db, str(wdir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{variant} round failed: {out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    from otel_wandb.runfile import find_runs, read_run, wait_complete

    rows = 0
    for run_dir in find_runs(wdir):
        wait_complete(run_dir, 20)
        rows += len(read_run(run_dir).history)
    res["history_rows"] = rows
    return res


def bench_service(seconds: float = 4.0, rounds: int = 3) -> dict:
    results: dict[str, list[dict]] = {"off": [], "otel": [], "ours": [], "otel_naive": [], "naive": []}
    with tempfile.TemporaryDirectory(prefix="bench-exporters-") as d:
        for _ in range(rounds):
            for variant in results:
                results[variant].append(_service_round(variant, seconds, Path(d)))
    return {
        v: {
            "rps": statistics.median(r["rps"] for r in rs),
            "cpu_us": statistics.median(r["cpu_us"] for r in rs),
            "exporter_us": statistics.median(r["exporter_us"] for r in rs),
            "flush_ms": statistics.median(r["flush_ms"] for r in rs),
            "requests": statistics.median(r["requests"] for r in rs),
            "rows": statistics.median(r["history_rows"] for r in rs),
        }
        for v, rs in results.items()
    }
