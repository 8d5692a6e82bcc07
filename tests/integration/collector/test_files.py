"""The real collector binary with otel-collector.yaml: config validity, log routing to files, rotation."""

from __future__ import annotations

import os
import subprocess
from collections import Counter

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from app.demo.topology import COLLECTOR_CONFIG
from tests.support import wait_until
from tests.support.collector import file_set, logs_request, post, read_log_records


def _validate(collector_bin, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [str(collector_bin), "validate", f"--config=file:{COLLECTOR_CONFIG}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_validates_with_defaults_and_overrides(collector_bin):
    assert _validate(collector_bin, {}).returncode == 0
    compose_like = {
        "OTEL_COLLECTOR_HOST": "0.0.0.0",
        "LOG_DIR": "/var/log/ai-diary",
        "LOG_MAX_MEGABYTES": "50",
        "OTLP_BACKEND_EXPORTER": "otlp_http/backend",
        "OTLP_BACKEND_ENDPOINT": "http://jaeger:4318",
        "OTLP_BACKEND_HEADERS": '{"wandb-api-key": "k"}',
        "WANDB_BRIDGE_ENDPOINT": "http://bridge:4319",
    }
    assert _validate(collector_bin, compose_like).returncode == 0
    bad = _validate(collector_bin, {"LOG_MAX_MEGABYTES": "lots"})
    assert bad.returncode != 0 and "max_megabytes" in bad.stderr


@pytest.mark.timeout(1200)  # a changed manifest rebuilds the collector (up to 900 s)
def test_build_script_reuses_the_binary_while_the_manifest_is_unchanged(collector_bin):
    from app.demo.topology import BUILD_SCRIPT

    first = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr  # (re)builds only if the manifest changed since the last build
    before = collector_bin.stat().st_mtime_ns
    second = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "up to date" in second.stdout, second.stdout + second.stderr
    assert collector_bin.stat().st_mtime_ns == before
    version = subprocess.run([str(collector_bin), "--version"], capture_output=True, text=True, timeout=30).stdout
    assert "0.161.0" in version


def test_build_script_fails_loudly_without_go(collector_bin):
    from app.demo.topology import BUILD_SCRIPT

    before = collector_bin.stat().st_mtime_ns
    res = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        env={**os.environ, "GO": "/nonexistent/go", "FORCE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0 and "'/nonexistent/go' not found" in res.stderr
    assert collector_bin.stat().st_mtime_ns == before  # the previous binary is left alone


def _emit(n: int, endpoint: str) -> list[tuple[str, int, str, dict]]:
    """Mixed records: app INFO/WARN/ERROR/FATAL and audit INFO/ERROR, each body unique."""
    kinds = [("app", 9), ("app", 13), ("app", 17), ("app", 21), ("audit", 9), ("audit", 17), ("app.db", 5)]
    records = [(scope, sev, f"{scope}-{sev}-{i}", {"i": i}) for i in range(n) for scope, sev in kinds]
    status, _, body = post(endpoint, "/v1/logs", logs_request(records).SerializeToString())
    assert status == 200, body
    return records


def test_logs_are_routed_to_combined_error_and_audit(start_collector):
    col = start_collector({"DEPLOYMENT_ENVIRONMENT": "test-env"})
    sent = _emit(3, col.http_endpoint)
    # the OTel Python SDK over gRPC too
    provider = LoggerProvider(resource=Resource.create({"service.name": "sdk"}))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(GrpcLogExporter(endpoint=col.grpc_endpoint, insecure=True))
    )
    provider.get_logger("audit").emit(body="sdk-audit", severity_number=SeverityNumber.INFO)
    provider.get_logger("app").emit(body="sdk-error", severity_number=SeverityNumber.ERROR)
    provider.get_logger("app").emit(body="sdk-info", severity_number=SeverityNumber.INFO)
    provider.shutdown()
    # no severity number (0): the text decides, any case; a number, when set, wins over the text
    texts = {
        "text-error": (0, "ERROR"),
        "text-critical": (0, "critical"),
        "text-fatal": (0, "Fatal"),
        "text-info": (0, "INFO"),
        "number-wins": (9, "ERROR"),
    }
    by_text = logs_request([("app", sev, body, {}) for body, (sev, _) in texts.items()])
    for sl, (_, text) in zip(by_text.resource_logs[0].scope_logs, texts.values(), strict=True):
        sl.log_records[0].severity_text = text
    assert post(col.http_endpoint, "/v1/logs", by_text.SerializeToString())[0] == 200
    # last, a record every route takes: once it is in all three files, so is everything sent before it (each file
    # is written in the order its pipeline received the records), so exact counts below catch any extra record
    assert (
        post(col.http_endpoint, "/v1/logs", logs_request([("audit", 17, "the-end", {})]).SerializeToString())[0] == 200
    )
    bodies = [b for _, _, b, _ in sent] + ["sdk-audit", "sdk-error", "sdk-info"] + list(texts) + ["the-end"]
    expect = {
        "combined.log": Counter(bodies),
        "error.log": Counter(
            [b for _, sev, b, _ in sent if sev >= 17]
            + ["sdk-error", "text-error", "text-critical", "text-fatal", "the-end"]
        ),
        "audit.log": Counter([b for scope, _, b, _ in sent if scope == "audit"] + ["sdk-audit", "the-end"]),
    }
    log_dir = col.log_dir

    def settled() -> bool:
        return all(any(r["body"] == "the-end" for r in read_log_records(log_dir, f)) for f in expect)

    wait_until(settled, 20, "the last record in all three files", interval=0.2)
    for name, want in expect.items():
        got = read_log_records(log_dir, name)
        assert Counter(r["body"] for r in got) == want, name
    combined = read_log_records(log_dir, "combined.log")
    assert {r["resource"]["deployment.environment.name"]["stringValue"] for r in combined} == {"test-env"}
    assert all(r["severity"] >= 17 or r["body"].startswith("text-") for r in read_log_records(log_dir, "error.log"))
    assert {r["scope"] for r in read_log_records(log_dir, "audit.log")} == {"audit"}
    # the collector's own metrics (service.telemetry) on its Prometheus port
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{col.ports.metrics}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    accepted = [line for line in text.splitlines() if line.startswith("otelcol_receiver_accepted_log_records")]
    assert accepted and sum(float(line.rsplit(" ", 1)[1]) for line in accepted) == len(bodies)


def _load(endpoint: str, total: int, batch: int, pad: int) -> None:
    for start in range(0, total, batch):
        recs = [("app", 9, f"load-{i:07d}-" + "x" * pad, {"i": i}) for i in range(start, min(total, start + batch))]
        status, _, body = post(endpoint, "/v1/logs", logs_request(recs).SerializeToString())
        assert status == 200, body


def _backups_once_pruned(log_dir, keep: int) -> list:
    """The rotated backups of combined.log once no more than ``keep`` are left (lumberjack deletes the old ones on
    its own goroutine, a moment after the rotation), else [] (poll again)."""
    backups = [f for f in file_set(log_dir, "combined.log") if f.name != "combined.log"]
    return backups if len(backups) <= keep else []


ROTATION_ENV = {"LOG_MAX_MEGABYTES": "1", "OTEL_COLLECTOR_BATCH_SIZE": "200", "OTEL_COLLECTOR_BATCH_MAX_SIZE": "400"}


def test_rotation_under_load_loses_no_record(start_collector):
    col = start_collector({**ROTATION_ENV, "LOG_MAX_BACKUPS": "100"})
    total = 12_000  # ~5 MB of JSON in combined.log
    _load(col.http_endpoint, total, 500, 300)

    def all_there() -> list:
        recs = read_log_records(col.log_dir, "combined.log")
        return recs if len(recs) >= total else []

    recs = wait_until(all_there, 30, "every record in combined.log + backups", interval=0.2)
    files = file_set(col.log_dir, "combined.log")
    assert len(files) >= 4, [f.name for f in files]  # live file + >= 3 backups
    assert all(f.stat().st_size <= 1024 * 1024 for f in files)
    bodies = Counter(r["body"][:13] for r in recs)
    assert len(bodies) == total and set(bodies.values()) == {1}  # each record exactly once, none lost


def test_rotation_keeps_at_most_max_backups(start_collector):
    col = start_collector({**ROTATION_ENV, "LOG_MAX_BACKUPS": "2"})
    _load(col.http_endpoint, 12_000, 500, 300)
    live = col.log_dir / "combined.log"
    wait_until(
        lambda: any("load-0011999" in line for line in live.read_text().splitlines()[-3:]) if live.exists() else False,
        30,
        "the last record in the live file",
        interval=0.2,
    )
    backups = wait_until(lambda: _backups_once_pruned(col.log_dir, 2), 10, "lumberjack to prune to 2 backups")
    assert len(backups) == 2, [f.name for f in backups]
    # the newest records survive: the live file plus two backups hold the tail of the stream
    recs = read_log_records(col.log_dir, "combined.log")
    assert any(r["body"].startswith("load-0011999") for r in recs)
    assert len(recs) < 12_000


def test_the_demos_rotation_settings_cut_and_report_backups(start_collector, tmp_path):
    """make demo's collector (app/demo/_stack.py ROTATION_ENV: 1 MB files, 3 backups) rotates, and its summary line
    lists the backups; below 1 MB it says how many requests would cut the first one."""
    from app.demo._stack import ROTATE_BACKUPS, ROTATION_ENV, rotation_line

    col = start_collector(ROTATION_ENV)
    _load(col.http_endpoint, 12_000, 500, 300)  # ~5 MB in combined.log
    live = col.log_dir / "combined.log"
    wait_until(
        lambda: any("load-0011999" in line for line in live.read_text().splitlines()[-3:]) if live.exists() else False,
        30,
        "the last record in the live file",
        interval=0.2,
    )
    backups = wait_until(
        lambda: _backups_once_pruned(col.log_dir, ROTATE_BACKUPS),
        10,
        f"lumberjack to prune to {ROTATE_BACKUPS} backups",
    )
    assert len(backups) == ROTATE_BACKUPS, [f.name for f in backups]
    assert f"combined.log {ROTATE_BACKUPS} backup(s)" in rotation_line(col.log_dir, 12_000)
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    (quiet / "combined.log").write_bytes(b"x" * 256 * 1024)
    assert "no backup yet: combined.log holds 0.25 MB; about 2401 DEMO_REQUESTS" in rotation_line(quiet, 600)
