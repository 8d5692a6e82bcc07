"""Throughput cost of the service's telemetry: gunicorn (1 sync worker, gunicorn.conf.py) + wrk on loopback.

Variants, interleaved round by round (A, B, C, A, B, C, ...), medians quoted:
  A. off    — OTEL_SDK_DISABLED=true.
  B. ours   — app/telemetry/, 100 % sampling, traces + metrics + logs over OTLP/HTTP protobuf to a local sink
              (bench/otlp_sink.py, a separate process), base2 histograms, metric export every 10 s.
  C. stock  — ``opentelemetry-instrument gunicorn ...`` with the same OTLP/HTTP sink (the distro's defaults:
              every installed instrumentation, its own providers; app/telemetry/ only instruments what is left).
  D. ours_sw — B with ``AI_DIARY_GIL_SWITCH_INTERVAL_MS=0.5`` (opt-in knob; see NOTES).
Load: ``wrk -t1 -c4`` on an authenticated ``GET /api/entries/<id>`` (SQLite, one user, one entry).

``python -m bench.bench_telemetry [--seconds 6] [--rounds 3] [--profile]`` prints the markdown section;
``--profile`` also prints a cProfile of the request path in process (WSGI calls, no server) for A and B.
wrk is installed with apt-get when missing (``apt-get update`` first).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from app.demo.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
VARIANTS = ("off", "ours", "stock", "ours_sw")
SETUP = """
import json, sys
from app import create_app
app = create_app({"DATABASE_URL": sys.argv[1], "PSEUDONYM_SECRET": "bench", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
c = app.test_client()
token = c.post("/api/users", json={"name": "bench"}).json["token"]
h = {"Authorization": "Bearer " + token}
eid = c.post("/api/entries", json={"text": "A calm day with a long walk.", "tags": ["walk"]}, headers=h).json["id"]
print(json.dumps({"token": token, "id": eid}))
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, capture_output=True)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk could not be installed with apt-get")
    return found


def base_env(tmp: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WANDB_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=db_url,
        PSEUDONYM_SECRET="bench",
        LOG_LEVEL="WARNING",
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        WEB_CONCURRENCY="1",
        GUNICORN_BIND_HOST="127.0.0.1",
        GUNICORN_LOG_LEVEL="warning",
    )
    return env


def variant_env(name: str, env: dict[str, str], sink_port: int) -> dict[str, str]:
    env = dict(env)
    if name == "off":
        env["OTEL_SDK_DISABLED"] = "true"
        return env
    env.update(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{sink_port}",
        OTEL_METRIC_EXPORT_INTERVAL="10000",
        OTEL_TRACES_SAMPLER="parentbased_always_on",
        OTEL_SERVICE_NAME="ai-diary",
    )
    if name == "stock":
        env["OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED"] = "true"
    if name == "ours_sw":
        env["AI_DIARY_GIL_SWITCH_INTERVAL_MS"] = "0.5"
    return env


def start_server(name: str, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    env = dict(env, PORT=str(port))
    cmd = [str(VENV_BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "app:create_app()"]
    if name == "stock":
        cmd = [str(VENV_BIN / "opentelemetry-instrument"), *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name}: gunicorn exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{name}: gunicorn did not become ready")


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def worker_cpu_s(master_pid: int) -> float:
    """utime + stime of the gunicorn worker(s): children of the master, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    except OSError:
        return 0.0
    for pid in children:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def run_wrk(wrk: str, url: str, token: str, seconds: float) -> tuple[float, int]:
    out = subprocess.run(
        [wrk, "-t1", "-c4", f"-d{max(1, round(seconds))}s", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    if not m or not n:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{out}")
    return float(m.group(1)), int(n.group(1))


def prepare(tmp: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The server environment on a SQLite file in ``tmp`` and that database with one user and one entry: (env, ids
    with the entry's ``id`` and the user's ``token``)."""
    db_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    env = base_env(tmp, db_url)
    setup = subprocess.run(
        [sys.executable, "-c", SETUP, db_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(env, OTEL_SDK_DISABLED="true"),
        check=True,
    )
    return env, json.loads(setup.stdout.strip().splitlines()[-1])


def measure(seconds: float = 6.0, rounds: int = 3) -> dict[str, Any]:
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-telemetry-") as d:
        tmp = Path(d)
        env, ids = prepare(tmp)
        sink = subprocess.Popen(
            [sys.executable, "-m", "bench.otlp_sink"], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            sink_port = json.loads(sink.stdout.readline())["port"]
            results: dict[str, list[float]] = {v: [] for v in VARIANTS}
            cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(rounds):
                for name in VARIANTS:
                    port = free_port()
                    proc = start_server(name, variant_env(name, env, sink_port), port)
                    try:
                        url = f"http://127.0.0.1:{port}/api/entries/{ids['id']}"
                        run_wrk(wrk, url, ids["token"], 2)  # warm-up
                        c0 = worker_cpu_s(proc.pid)
                        rps, n = run_wrk(wrk, url, ids["token"], seconds)
                        results[name].append(rps)
                        cpu[name].append((worker_cpu_s(proc.pid) - c0) / max(1, n) * 1e6)
                    finally:
                        stop(proc)
            with urllib.request.urlopen(f"http://127.0.0.1:{sink_port}/stats") as r:
                sink_stats = json.load(r)
        finally:
            sink.terminate()
            sink.wait(timeout=10)
    return {"results": results, "cpu_us": cpu, "sink": sink_stats, "seconds": seconds, "rounds": rounds}


def profile(n: int = 3000) -> str:
    """cProfile of n in-process WSGI requests (GET /api/entries/<id>) for telemetry off and ours."""
    code = r"""
import cProfile, io, json, os, pstats, sys, tempfile, time
from werkzeug.test import EnvironBuilder
from app import create_app
d = tempfile.mkdtemp()
app = create_app({"DATABASE_URL": "sqlite:///" + d + "/p.sqlite3", "PSEUDONYM_SECRET": "p",
                  "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
c = app.test_client()
tok = c.post("/api/users", json={"name": "p"}).json["token"]
eid = c.post("/api/entries", json={"text": "x"}, headers={"Authorization": "Bearer " + tok}).json["id"]
env = EnvironBuilder(path="/api/entries/%d" % eid, headers={"Authorization": "Bearer " + tok}).get_environ()
def call():
    e = dict(env); out = []
    body = app(e, lambda s, h, exc=None: out.append(s))
    b"".join(body); getattr(body, "close", lambda: None)()
for _ in range(300): call()
n = int(sys.argv[1]); t0 = time.perf_counter()
for _ in range(n): call()
per = (time.perf_counter() - t0) / n * 1e6
pr = cProfile.Profile(); pr.enable()
for _ in range(n): call()
pr.disable(); s = io.StringIO()
pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(14)
print(json.dumps({"us_per_request": per}))
print(s.getvalue())
"""
    out = []
    for name in ("off", "ours"):
        with tempfile.TemporaryDirectory() as d:
            env = variant_env(name, base_env(Path(d), ""), 9)
            if name == "ours":
                env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
            r = subprocess.run(
                [sys.executable, "-c", code, str(n)], cwd=ROOT, env=env, capture_output=True, text=True, check=True
            )
            out.append(f"### {name}\n\n```\n{r.stdout.strip()[:6000]}\n```\n")
    return "\n".join(out)


def section(m: dict[str, Any]) -> str:
    med = {k: statistics.median(v) for k, v in m["results"].items()}
    per_round = {k: statistics.median(x / o for x, o in zip(m["results"][k], m["results"]["off"])) for k in VARIANTS}
    lines = [
        "## Issue 2 — telemetry overhead on the request path",
        "",
        f"gunicorn (gunicorn.conf.py, 1 sync worker) + `wrk -t1 -c4` on loopback, authenticated "
        f"`GET /api/entries/<id>` (SQLite). {m['rounds']} interleaved rounds × {m['seconds']:g} s per variant "
        "(after a 2 s warm-up); medians. Full telemetry = 100 % sampling, traces + metrics + logs over "
        "OTLP/HTTP protobuf to a local sink process (bench/otlp_sink.py), base2 histograms, metric export every "
        "10 s. Stock = `opentelemetry-instrument gunicorn ...` with the same exporters.",
        "",
        "| variant | median req/s | ratio of medians | median of per-round ratios | worker CPU µs/request | "
        "CPU ratio off/variant | rounds (req/s) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    labels = {
        "off": "A. telemetry off (OTEL_SDK_DISABLED=true)",
        "ours": "B. full telemetry (app/telemetry/)",
        "stock": "C. stock opentelemetry-instrument",
        "ours_sw": "D. B + AI_DIARY_GIL_SWITCH_INTERVAL_MS=0.5",
    }
    cpu = {k: statistics.median(v) if v else float("nan") for k, v in m["cpu_us"].items()}
    for k in VARIANTS:
        lines.append(
            f"| {labels[k]} | {med[k]:.0f} | {med[k] / med['off']:.2f}× | {per_round[k]:.2f}× | {cpu[k]:.0f} | "
            f"{cpu['off'] / cpu[k]:.2f}× | "
            f"{', '.join(f'{x:.0f}' for x in m['results'][k])} |"
        )
    head = per_round["ours"]
    verdict = "met" if head >= 0.60 else "missed"
    lines += [
        "",
        f"**Headline: full telemetry = {head:.2f}× telemetry-off** (median of the per-round ratios B/A: "
        f"each round pairs the variants back to back, so machine drift cancels) — target ≥ 0.60×: "
        f"**{verdict}**; the CPU-per-request ratio gives {cpu['off'] / cpu['ours']:.2f}×. Ours vs stock "
        f"`opentelemetry-instrument`: {med['ours'] / med['stock']:.2f}× the throughput. The sink received "
        f"{m['sink']['requests']} OTLP requests ({m['sink']['bytes'] / 1e6:.1f} MB).",
        "",
        "FACTS.md quotes stock Flask instrumentation at 0.35–0.45× with a null exporter; stock here is higher "
        "because the baseline differs: this request does real work (token lookup and entry fetch in "
        "SQLite, pydantic serialization), which dilutes a fixed per-request telemetry cost, and `wrk -c4` "
        "keeps the worker busy between requests.",
        "",
    ]
    return "\n".join(lines)


def run(seconds: float | None = None, rounds: int | None = None) -> str:
    seconds = seconds or float(os.environ.get("BENCH_TELEMETRY_SECONDS", "4"))
    rounds = rounds or int(os.environ.get("BENCH_TELEMETRY_ROUNDS", "5"))
    return section(measure(seconds, rounds)) + NOTES


NOTES = """
What profiling showed (cProfile of the gunicorn worker's request thread via a post_fork hook, cProfile of
in-process WSGI loops — `python -m bench.bench_telemetry --profile` — and micro-benchmarks of the export path),
and what was changed:

- Request thread: OTel adds roughly a third to a half of the telemetry-off CPU per request here. Spread over
  the SDK span machinery (start_span, attribute cleaning, sampler, context attach/detach), the Flask/WSGI
  instrumentation (~60 `_semconv` helper calls per request, propagator extract, ~12 attributes), two SQLAlchemy
  spans per request (auth lookup + entry), and metric instruments. The same upstream code runs in the stock
  variant (profiled: stock ≈ ours on this thread). Not rewritten: the brief asks for the upstream instrumentations.
- The SQLAlchemy instrumentation's `db.client.connections.usage` counter costs 4 counter adds per request
  (pool checkout/checkin) and says nothing useful for SQLite: not recorded for SQLite engines.
- Export path (BatchSpanProcessor thread, same process): the SDK's OTLP encoder (`encode_spans`, one upb message
  per span/attribute/value) measured 96–140 µs per span here, i.e. more CPU than the span took to record.
  `app/telemetry/_otlp.py` writes the protobuf wire format directly with cached resource/scope/attribute pieces:
  27–46 µs per span (≈3.5×), messages equal to the SDK's (tests/service/telemetry/test_otlp.py).
- The privacy filter ran three regexes per attribute: 34 µs per span → 6 µs with a per-key decision cache.
- GIL convoy: while the exporter thread encodes a 512-span batch it holds the GIL, and the request thread,
  back from each socket/SQLite call, waits up to the 5 ms switch interval to get it back. Lowering the interval
  to 0.5 ms (`AI_DIARY_GIL_SWITCH_INTERVAL_MS`, applied when app/telemetry/ owns the providers) raised full
  telemetry from 407 to 539 req/s on a loaded machine (load 3–6; 5 interleaved rounds), but made no difference
  (−3 %, within noise) on a quiet one. Left opt-in; variant D keeps measuring it.
- Where the rest goes (in-process WSGI loop, quiet machine, CPU µs per request, medians of 5): off 550;
  instrumentation with no span processor 930 (+380: the upstream Flask/SQLAlchemy/SDK request path, the same
  code stock runs); + BatchSpanProcessor and privacy wrapper with a null exporter 1020 (+90); + OTLP/HTTP with
  our encoder 1120 (+100) vs the SDK encoder 1210 (+190). GC (disable/freeze) moves these by ≤ 5 %.
  Most of what remains between full telemetry and off is that upstream request-path instrumentation; the next
  step would be a leaner server-span middleware instead of opentelemetry-instrumentation-flask (not done: the
  issue asks for the upstream instrumentations, and the target is met without it).
- Base2 exponential histograms cost ~4 µs more per `record` than explicit buckets (micro-benchmark): kept, for
  the percentile accuracy (FACTS).

Noise: on a shared machine single rounds swing by up to ±40 % (load average 3–6 in earlier sessions); the
worker-CPU column (utime+stime of the gunicorn worker from /proc per request served) is steadier than req/s.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_telemetry")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    a = p.parse_args(argv)
    if a.profile:
        sys.stdout.write(profile() + "\n")
        return 0
    sys.stdout.write(run(a.seconds, a.rounds) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
