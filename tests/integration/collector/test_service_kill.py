"""The collector killed and restarted under load, against the real service: the compose topology as local processes
(tests/support/compose.py: gunicorn with 2 workers exporting over OTLP/gRPC to the real collector, the bridge, the
OTLP backend), concurrent API requests, SIGKILL + restart of the collector mid-load. Every request must succeed, and
telemetry produced after the restart must reach the collector's log files and the W&B bridge."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.support import ClientThreads, wait_until
from tests.support.collector import read_log_records
from tests.support.compose import COLLECTOR_BIN, compose_topology

CLIENTS = 6


class Load(ClientThreads):
    """CLIENTS threads doing create / read / list against the API until stopped; every status is kept (and the
    slowest request's latency, reported, never asserted)."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.headers = base, {"Authorization": f"Bearer {token}"}
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.created = 0
        self.max_latency_s = 0.0
        self.lock = threading.Lock()
        super().__init__(CLIENTS)

    def _record(self, response: httpx.Response, started: float) -> httpx.Response:
        with self.lock:
            self.statuses[response.status_code] += 1
            self.max_latency_s = max(self.max_latency_s, time.monotonic() - started)
        return response

    def client(self, i: int) -> None:
        with httpx.Client(base_url=self.base, timeout=30, headers=self.headers) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    t = time.monotonic()
                    created = self._record(client.post("/api/entries", json={"text": f"client {i} entry {n}"}), t)
                    if created.status_code == 201:
                        with self.lock:
                            self.created += 1
                        t = time.monotonic()
                        self._record(client.get(f"/api/entries/{created.json()['id']}"), t)
                    t = time.monotonic()
                    self._record(client.get("/api/entries", params={"limit": 5}), t)
                except httpx.HTTPError as exc:  # a transport failure is a failed request too
                    with self.lock:
                        self.errors.append(f"{type(exc).__name__}: {exc}")

    @property
    def served(self) -> int:
        with self.lock:
            return sum(self.statuses.values())


def _audit_creates_since(log_dir: Path, since_ns: int) -> int:
    return sum(
        1
        for r in read_log_records(log_dir, "audit.log")
        if (r["body"] or "").endswith("entry.create") and int(r.get("time_ns") or 0) >= since_ns
    )


def test_collector_killed_mid_load_no_service_request_fails(tmp_path: Path) -> None:
    assert COLLECTOR_BIN.exists(), "build the collector first: collector/build.sh (make test does)"
    topo = compose_topology(
        tmp_path,
        COMPOSE_PROFILES="",
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="4",
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_METRIC_EXPORT_INTERVAL="1000",
        DEPLOYMENT_ENVIRONMENT="kill-test",
    )
    try:
        topo.up()
        base, bridge = topo.url("app", 8000), topo.url("wandb-bridge", 4319)
        user = httpx.post(f"{base}/api/users", json={"name": "load"}, timeout=30)
        assert user.status_code == 201, user.text
        with Load(base, user.json()["token"]) as load:
            wait_until(lambda: load.served >= 150, 60, "load before the kill", interval=0.2)
            topo.kill("otel-collector")  # SIGKILL: a crash
            killed = load.served
            wait_until(lambda: load.served >= killed + 300, 60, "load while the collector is down", interval=0.2)
            during = load.served - killed
            topo.relaunch("otel-collector")  # compose's restart policy: the same command again
            restarted_ns = time.time_ns()
            restarted = load.served
            wait_until(lambda: load.served >= restarted + 300, 90, "load after the restart", interval=0.2)
            created_before_stop = load.created
        served, created = load.served, load.created
        print(
            f"\n{served} requests ({created} entries), {during} of them while the collector was down; "
            f"max latency {load.max_latency_s * 1000:.0f} ms; statuses {dict(load.statuses)}"
        )
        assert load.errors == [], load.errors[:5]
        assert set(load.statuses) <= {200, 201}, load.statuses

        # telemetry after the restart: the service keeps exporting to the new collector process
        stats = wait_until(
            lambda: (s := httpx.get(f"{bridge}/healthz").json())["spans"] >= served and s,
            60,
            f">= {served} spans (one server span per request) at the bridge",
            interval=0.5,
        )
        assert stats["rejected"] == 0 and stats["errors"] == 0, (stats["last_error"], stats)
        logs = topo.volumes["logs"]
        after = wait_until(
            lambda: _audit_creates_since(logs, restarted_ns),
            60,
            "audit records of entries created after the restart in audit.log",
            interval=0.5,
        )
        assert 0 < after <= created_before_stop
        assert "exited" not in topo.tail("app")
    finally:
        topo.down()
