"""End to end: the real collector -> `python -m otel_wandb.bridge` (real Pipeline, offline W&B run) -> read back."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from app.demo.topology import start_bridge
from otel_wandb.runfile import find_runs, read_run, wait_complete
from tests.support import wait_until
from tests.support.collector import logs_request, metrics_request, post, spans_request

pytestmark = pytest.mark.integration  # the real collector and a bridge subprocess

TOKEN = "bridge-test-token"


def test_bridge_run_holds_the_collectors_spans_and_points(start_collector, tmp_path):
    wandb_dir = tmp_path / "wandb"
    bridge = start_bridge(
        {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(wandb_dir),
            "WANDB_PROJECT": "bridge-test",
            "WANDB_EXPORT_INTERVAL": "1",
            "WANDB_BRIDGE_TOKEN": TOKEN,
            "WANDB_SILENT": "true",
        }
    )
    try:
        col = start_collector(
            {
                "WANDB_BRIDGE_EXPORTER": "otlp_http/wandb_bridge",
                "WANDB_BRIDGE_ENDPOINT": bridge.url,
                "WANDB_BRIDGE_TOKEN": TOKEN,
                "OTEL_COLLECTOR_BATCH_TIMEOUT": "100ms",
                "WANDB_BRIDGE_LOGS_EXPORTER": "otlp_http/wandb_bridge",
            }
        )
        for start in (0, 150):
            body = spans_request(150, start=start, error_every=10).SerializeToString()
            assert post(col.http_endpoint, "/v1/traces", body)[0] == 200
        assert post(col.http_endpoint, "/v1/metrics", metrics_request(points=5, value=1).SerializeToString())[0] == 200
        logs = [("app", 17, "boom", {}), ("app", 9, "ok", {}), ("audit", 9, "login", {})]
        assert post(col.http_endpoint, "/v1/logs", logs_request(logs).SerializeToString())[0] == 200
        stats = wait_until(
            lambda: (s := bridge.stats())["spans"] >= 300 and s["metric_points"] >= 5 and s["log_records"] >= 3 and s,
            20,
            "300 spans, 5 points and 3 logs at the bridge",
        )
        assert (stats["spans"], stats["metric_points"], stats["log_records"], stats["rejected"], stats["errors"]) == (
            300,
            5,
            3,
            0,
            0,
        )
        col.stop()
    finally:
        rc = bridge.stop(60)  # SIGTERM: the bridge flushes the last interval and finishes the run
    assert rc == 0, bridge.output()
    (run_dir,) = find_runs(wandb_dir)
    assert wait_complete(run_dir, 30)
    run = read_run(run_dir)
    assert run.project == "bridge-test" and run.exit_code == 0
    assert run.series("http/requests_total")[-1] == 300 and run.summary["http/requests_total"] in (300, {"last": 300})
    assert run.series("http/errors_total")[-1] == 30  # every 10th span: status ERROR + HTTP 500
    assert sum(run.series("http/requests")) == 300
    assert sum(run.series("test.requests/delta")) == 5
    assert any("http/p95_ms" in row for row in run.history)
    assert sum(run.series("logs/count@severity=ERROR")) == 1 and sum(run.series("logs/count@severity=INFO")) == 2


def _at_least(read: Callable[[], int], n: int) -> bool:
    return read() >= n


def test_sigusr1_closes_the_interval_at_once(tmp_path: Path) -> None:
    """SIGUSR1: one row per signal with exactly what arrived before it, whatever WANDB_EXPORT_INTERVAL says."""
    wandb_dir = tmp_path / "wandb"
    bridge = start_bridge(
        {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(wandb_dir),
            "WANDB_PROJECT": "bridge-test",
            "WANDB_EXPORT_INTERVAL": "3600",
            "WANDB_SILENT": "true",
        }
    )

    def flushed() -> int:
        return bridge.output(200).count("SIGUSR1: interval flushed (ok=True)")

    try:
        for start, n in ((0, 40), (40, 25)):
            assert post(bridge.url, "/v1/traces", spans_request(n, start=start).SerializeToString())[0] == 200
            want = flushed() + 1
            os.kill(bridge.pid, signal.SIGUSR1)
            wait_until(partial(_at_least, flushed, want), 30, "the interval flushed")
    finally:
        rc = bridge.stop(60)
    assert rc == 0, bridge.output()
    (run_dir,) = find_runs(wandb_dir)
    assert wait_complete(run_dir, 30)
    assert read_run(run_dir).series("http/requests") == [40, 25]
