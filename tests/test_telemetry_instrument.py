"""Under ``opentelemetry-instrument`` the providers are not ours: the privacy filter must still sit in front of
every exporter (app/telemetry_adopt.py). A real ``opentelemetry-instrument python script.py`` subprocess with the
console exporters (spans and logs printed on stdout), a canary in client-controlled fields, and a positive control
proving the spans and logs were exported at all."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import telemetry_adopt
from app.telemetry_privacy import Policy, PrivacyLogProcessor, PrivacySpanExporter

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SCRIPT = textwrap.dedent("""
    import logging, sys
    from opentelemetry import _logs, trace
    from app import create_app

    canary, db = sys.argv[1], sys.argv[2]
    app = create_app({"TESTING": True, "DATABASE_URL": "sqlite:///" + db, "PSEUDONYM_SECRET": "s",
                      "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "k"})
    c = app.test_client()
    token = c.post("/api/users", json={"name": "n-" + canary}).json["token"]
    h = {"Authorization": "Bearer " + token}
    eid = c.post("/api/entries", json={"text": "dear diary " + canary}, headers=h).json["id"]
    assert c.get(f"/api/entries/{eid}?q={canary}", headers=h).status_code == 200
    assert c.get(f"/api/{canary}?q={canary}", headers=h).status_code == 404
    assert c.get("/api/entries", headers={"Authorization": "Bearer " + canary}).status_code == 401
    logging.getLogger("probe").warning("probe log with Bearer %s and ?q=%s", canary, canary)
    trace.get_tracer_provider().shutdown()
    _logs.get_logger_provider().shutdown()
    print("SCRIPT-DONE", flush=True)
""")


def _run(tmp_path: Path, canary: str, **extra: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "drive.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AI_DIARY_"))}
    env.update({"PYTHONPATH": str(ROOT), "OTEL_TRACES_EXPORTER": "console", "OTEL_LOGS_EXPORTER": "console",
                "OTEL_METRICS_EXPORTER": "none", "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
                "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100", "LOG_LEVEL": "INFO", **extra})
    return subprocess.run([str(BIN / "opentelemetry-instrument"), sys.executable, str(script), canary,
                           str(tmp_path / "d.sqlite3")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_opentelemetry_instrument_exports_through_the_privacy_filter(tmp_path):
    canary = "cnry" + secrets.token_hex(8)
    proc = _run(tmp_path, canary)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "SCRIPT-DONE" in out
    # positive control: the console exporters did print the spans (with their query attribute) and the log
    assert '"http.route": "/api/entries/<int:entry_id>"' in out, out[-3000:]
    # old semconv under opentelemetry-instrument (the distro instruments Flask before app/telemetry.py's opt-in)
    assert '"url.query": "q=REDACTED"' in out or '?q=REDACTED"' in out
    assert "probe log with Bearer REDACTED" in out
    leaked = [line for line in (out + proc.stderr).splitlines() if canary in line]
    assert leaked == [], leaked[:5]


class _OpaqueExporting(SpanProcessor):
    def on_end(self, span):  # pragma: no cover - removed before any span ends
        raise AssertionError("an unfiltered processor saw a span")


def test_secure_wraps_known_processors_removes_opaque_ones_and_puts_the_log_filter_first(caplog):
    tp, lp = TracerProvider(), LoggerProvider()
    batch, simple = BatchSpanProcessor(InMemorySpanExporter()), SimpleSpanProcessor(InMemorySpanExporter())
    for p in (batch, simple, _OpaqueExporting()):
        tp.add_span_processor(p)
    lp.add_log_record_processor(BatchLogRecordProcessor(InMemoryLogRecordExporter()))
    with caplog.at_level("ERROR"):
        assert telemetry_adopt.secure(tp, lp, Policy())
        assert telemetry_adopt.secure(tp, lp, Policy())  # idempotent
    procs = tp._active_span_processor._span_processors
    assert procs == (batch, simple)
    assert isinstance(batch._batch_processor._exporter, PrivacySpanExporter)
    assert not isinstance(batch._batch_processor._exporter.exporter, PrivacySpanExporter)
    assert isinstance(simple.span_exporter, PrivacySpanExporter)
    logs = lp._multi_log_record_processor._log_record_processors
    assert isinstance(logs[0], PrivacyLogProcessor) and len(logs) == 2
    assert "_OpaqueExporting removed" in caplog.text
    with tp.get_tracer("t").start_as_current_span("s"):
        pass
    tp.shutdown()
    lp.shutdown()


def test_secure_reports_failure_when_the_sdk_shape_is_unknown(caplog):
    with caplog.at_level("ERROR"):
        assert telemetry_adopt.secure(object(), None, Policy()) is False
    assert "cannot reach the span processors" in caplog.text
