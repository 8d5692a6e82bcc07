"""docker-compose.yml run without a Docker engine (tests/support/compose.py: every service as a local process with
the compose file's own command, environment, config files and volumes). Requests are driven and telemetry is checked
end to end: rotated log files, the OTLP backend, and ONE W&B run (written by the bridge, read back from disk) with
gunicorn at 2 workers whose series stay distinct.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import wait_until
from tests.support.compose import COLLECTOR_BIN, compose_topology, interpolate, jsonl, resource_spans, run_summary

CANARY = f"compose-canary-{uuid.uuid4().hex[:12]}"


def test_interpolation_follows_the_compose_spec() -> None:
    env = {"A": "1", "E": ""}
    assert interpolate("${A:-x} ${E:-x} ${E-x} ${U-x} ${A:+y} ${E:+y} ${E+y} $$A $A", env) == "1 x  x y  y $A 1"
    assert interpolate("${U:-[]} ${U:-http://h:${A}}", env) == "[] http://h:1"
    with pytest.raises(ValueError, match="E is missing a value: set E"):
        interpolate("${E:?set E}", env)


def _requests_per_worker(backend: Path) -> dict[str, int]:
    """Requests counted by each worker's own http.server.request.duration streams (cumulative: the last point of
    each stream; delta: the sum), from the backend's OTLP/JSON metric file."""
    last: dict[tuple[str, str], int] = {}
    delta: dict[str, int] = {}
    for doc in jsonl(backend / "metrics.jsonl"):
        for rm in doc.get("resourceMetrics", []):
            res = {a["key"]: next(iter(a["value"].values()), None) for a in rm["resource"].get("attributes", [])}
            worker = str(res.get("app.worker.id"))
            for sm in rm.get("scopeMetrics", []):
                for metric in sm.get("metrics", []):
                    if metric["name"] != "http.server.request.duration":
                        continue
                    data = metric.get("exponentialHistogram") or metric.get("histogram") or {}
                    cumulative = data.get("aggregationTemporality") in (2, "AGGREGATION_TEMPORALITY_CUMULATIVE")
                    for point in data.get("dataPoints", []):
                        if cumulative:
                            stream = (worker, json.dumps(point.get("attributes", []), sort_keys=True))
                            last[stream] = max(last.get(stream, 0), int(point.get("count", 0)))
                        else:
                            delta[worker] = delta.get(worker, 0) + int(point.get("count", 0))
    for (worker, _), count in last.items():
        delta[worker] = delta.get(worker, 0) + count
    return delta


def _app_metric_points(backend: Path) -> int:
    """Data points the backend got through the collector's ``metrics`` pipeline (the app's own metrics: the bridge
    gets exactly these too), leaving out what the span_metrics connector adds for the backend only."""
    n = 0
    for doc in jsonl(backend / "metrics.jsonl"):
        for rm in doc.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                if "spanmetrics" in sm.get("scope", {}).get("name", ""):
                    continue
                for metric in sm.get("metrics", []):
                    data = next((v for k, v in metric.items() if isinstance(v, dict) and "dataPoints" in v), {})
                    n += len(data.get("dataPoints", []))
    return n


def _drive(base: str, n_entries: int, pause_s: float) -> int:
    """Register, write entries (with the canary), one 400, then AI features concurrently in two rounds separated by
    more than one export interval (so the run gets several rows). Returns the number of requests served."""
    with httpx.Client(base_url=base, timeout=30, headers={"Connection": "close"}) as client:
        user = client.post("/api/users", json={"name": "compose-user"})
        assert user.status_code == 201, user.text
        auth = {"Authorization": f"Bearer {user.json()['token']}", "Connection": "close"}
        ids = []
        for i in range(n_entries):
            r = client.post("/api/entries", json={"text": f"day {i}: {CANARY} walked by the river"}, headers=auth)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        bad = client.post("/api/entries", json={"text": ""}, headers=auth)
        assert bad.status_code == 400 and "text" in bad.text

    def ai(entry_id: int) -> int:
        with httpx.Client(base_url=base, timeout=30, headers=auth) as c:
            return c.post(f"/api/entries/{entry_id}/ai/summarize").status_code

    with ThreadPoolExecutor(max_workers=6) as pool:  # sync workers: concurrency spreads over both
        for round_ids in (ids[: n_entries // 2], ids[n_entries // 2 :]):
            assert list(pool.map(ai, round_ids)) == [200] * len(round_ids)
            # pacing, the scenario itself: the rounds fall into different bridge export intervals (no event marks an
            # interval's end from outside the bridge), so the run gets several rows to add up
            time.sleep(pause_s)
    return 1 + n_entries + 1 + n_entries


def test_compose_topology_end_to_end(tmp_path: Path) -> None:
    from otel_wandb.runfile import find_runs, read_run

    assert COLLECTOR_BIN.exists(), "build the collector first: collector/build.sh (make test does)"
    topo = compose_topology(
        tmp_path,
        WANDB_EXPORT_INTERVAL="2",
        OTEL_METRIC_EXPORT_INTERVAL="1000",
        OTEL_BSP_SCHEDULE_DELAY="200",
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="1",
        LOCAL_LLM_LATENCY_MS="150",
        DEPLOYMENT_ENVIRONMENT="compose-test",
        COMPOSE_PROFILES="local-llm",
        OTLP_BACKEND_METRICS_EXPORTER="otlp_http/backend",
    )  # the backend sees each worker's own streams
    assert set(topo.services) >= {"app", "otel-collector", "wandb-bridge", "jaeger", "local-llm", "init-volumes"}
    try:
        outputs = topo.up()
        backend = outputs["jaeger"]
        bridge = topo.url("wandb-bridge", 4319)
        n_requests = _drive(topo.url("app", 8000), n_entries=8, pause_s=3.0)

        # SIGTERM to gunicorn: each worker flushes its providers (worker_exit -> telemetry.shutdown)
        assert topo.stop("app") == 0, topo.tail("app")
        stats = wait_until(
            lambda: (
                (s := httpx.get(f"{bridge}/healthz").json())["spans"] >= n_requests and s["metric_points"] > 0 and s
            ),
            60,
            f"the bridge to receive >= {n_requests} spans",
            interval=0.5,
        )
        assert stats["rejected"] == 0 and stats["errors"] == 0, (stats["last_error"], stats)
        assert stats["log_records"] > 0, stats  # compose sends the logs to the bridge too (WANDB_BRIDGE_LOGS_EXPORTER)

        def server_spans() -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
            found = [p for p in resource_spans(backend) if p[1].get("kind") == 2]  # SPAN_KIND_SERVER
            return found if len(found) >= n_requests else None

        spans = wait_until(server_spans, 30, "every request as a server span in the OTLP backend", interval=0.5)

        def metrics_complete() -> bool:
            """The workers' last metric points (sent as they stopped) are at the backend, and the bridge has every
            point the backend got from the same pipeline: the run (flushed as the bridge stops) holds them all."""
            if sum(_requests_per_worker(backend).values()) != n_requests:
                return False
            return httpx.get(f"{bridge}/healthz").json()["metric_points"] >= _app_metric_points(backend) > 0

        wait_until(metrics_complete, 60, "every metric point at the bridge", interval=0.5)
        for name in ("otel-collector", "wandb-bridge"):
            assert topo.stop(name) == 0, topo.tail(name)
    finally:
        topo.down()

    # OTLP backend (jaeger's place): every request as a server span, from BOTH gunicorn workers
    workers = {str(res.get("app.worker.id")) for res, _ in spans}
    assert workers == {"0", "1"}, workers
    assert {res["deployment.environment.name"] for res, _ in spans} == {"compose-test"}
    assert len({res["service.instance.id"] for res, _ in spans}) == 2

    # rotated log files on the logs volume, written by the collector; init-volumes gave the volumes to uid 10001
    # (as root, or through passwordless sudo; without either it cannot run: the volumes must be writable by us)
    logs = topo.volumes["logs"]
    handed = ("logs", "wandb-data", "collector-queue")
    if "init-volumes" in topo.skipped:
        assert all(os.access(topo.volumes[v], os.W_OK) for v in handed)
    else:
        assert {topo.owners[v] for v in handed} == {10001}, topo.owners
    combined, audit = jsonl(logs / "combined.log"), jsonl(logs / "audit.log")
    assert combined and audit
    audit_text = json.dumps(audit)
    assert "user.register" in audit_text and audit_text.count("entry.create") >= 8
    # error.log takes severity >= ERROR only: nothing here failed on the server side (the 400 is the client's)
    assert jsonl(logs / "error.log") == [], jsonl(logs / "error.log")[:3]
    assert any(r.get("resourceLogs") for r in combined)

    # exactly ONE W&B run, from the bridge, on its volume
    runs = find_runs(topo.volumes["wandb-data"])
    assert len(runs) == 1, runs
    run = read_run(runs[0])
    assert run.exit_code == 0
    assert any(k.startswith("logs/count@severity=") for row in run.history for k in row)  # the log panel has data
    assert run_summary(run, "http/requests_total") == n_requests  # from the server spans
    # several rows whose per-interval counts add up to exactly the requests served; one source of truth: the
    # workers' http.server.request.duration streams (the same requests, at the backend below) are not written too
    per_row = run.series("http/requests")
    assert len([v for v in per_row if v]) >= 2, per_row
    assert sum(per_row) == n_requests
    assert not [k for row in run.history for k in row if k.startswith("http.server.request.duration")]
    # ...and at the source each worker counted only its own share
    per_worker = _requests_per_worker(backend)
    assert set(per_worker) == {"0", "1"} and all(per_worker.values()), per_worker
    assert sum(per_worker.values()) == n_requests, per_worker
    # the ONE run keeps the workers apart in the server-span section too: distinct per-worker keys (from the
    # resource's app.worker.id) whose sum is the total, each equal to what that worker itself counted
    worker_keys = {k for row in run.history for k in row if k.startswith("http/requests@worker=")}
    assert worker_keys == {"http/requests@worker=0", "http/requests@worker=1"}, worker_keys
    in_run = {k.rsplit("=", 1)[1]: sum(run.series(k)) for k in worker_keys}
    assert sum(in_run.values()) == sum(run.series("http/requests")) == n_requests, in_run
    assert in_run == per_worker, (in_run, per_worker)

    # privacy: diary text never reached a sink
    for root in (logs, topo.volumes["wandb-data"], backend):
        for path in root.rglob("*"):
            if path.is_file():
                assert CANARY.encode() not in path.read_bytes(), path
