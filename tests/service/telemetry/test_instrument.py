"""Under ``opentelemetry-instrument`` the providers are not ours: the privacy filter must still sit in front of
every exporter (app/telemetry/_adopt.py), and the service's defaults must still apply (our distro and configurator,
app.telemetry.distro: resource, stable HTTP semantic conventions, base2 histograms). A real ``opentelemetry-instrument
python script.py`` subprocess with the console exporters (spans, metrics and logs printed on stdout), a canary in
client-controlled fields, and a positive control proving the spans and logs were exported at all."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.telemetry import _adopt as telemetry_adopt
from app.telemetry._privacy import Policy, PrivacyLogProcessor, PrivacySpanExporter
from tests.support import ROOT

BIN = Path(sys.executable).parent

SCRIPT = textwrap.dedent("""
    import logging, sys
    from opentelemetry import _logs, metrics, trace
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
    metrics.get_meter_provider().shutdown()
    print("SCRIPT-DONE", flush=True)
""")


def _run(tmp_path: Path, canary: str, **extra: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "drive.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AI_DIARY_"))}
    env = {k: v for k, v in env.items() if k not in ("APP_VERSION", "DEPLOYMENT_ENVIRONMENT")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_LOGS_EXPORTER": "console",
            "OTEL_METRICS_EXPORTER": "console",
            "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
            "APP_VERSION": "7.7.7",
            "DEPLOYMENT_ENVIRONMENT": "instrument-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BLRP_SCHEDULE_DELAY": "100",
            "LOG_LEVEL": "INFO",
            **extra,
        }
    )
    return subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(script), canary, str(tmp_path / "d.sqlite3")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.integration  # the app in a real `opentelemetry-instrument python` process
def test_opentelemetry_instrument_exports_through_the_privacy_filter(tmp_path):
    canary = "cnry" + secrets.token_hex(8)
    proc = _run(tmp_path, canary)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "SCRIPT-DONE" in out
    # positive control: the console exporters did print the spans (with their query attribute) and the log
    assert '"http.route": "/api/entries/<int:entry_id>"' in out, out[-3000:]
    assert "probe log with Bearer REDACTED" in out
    leaked = [line for line in (out + proc.stderr).splitlines() if canary in line]
    assert leaked == [], leaked[:5]
    # the service's defaults, set by our distro before the instrumentors and the configurator ran
    docs = json_documents(out)
    spans = [d for d in docs if "context" in d and "kind" in d]
    server = [d for d in spans if d["kind"] == "SpanKind.SERVER"]
    assert server and all(d["resource"]["attributes"] == spans[0]["resource"]["attributes"] for d in spans)
    res = spans[0]["resource"]["attributes"]
    assert res["service.name"] == "ai-diary" and res["service.version"] == "7.7.7"
    assert res["deployment.environment.name"] == res["deployment.environment"] == "instrument-test"
    routed = [d["attributes"] for d in server if d["attributes"].get("http.route") == "/api/entries/<int:entry_id>"]
    assert routed[0]["http.request.method"] == "GET" and routed[0]["url.query"] == "q=REDACTED"
    assert not [d for d in server if "http.method" in d["attributes"] or "http.target" in d["attributes"]]
    found = {
        m["name"]: m
        for d in docs
        for rm in d.get("resource_metrics", ())
        for sm in rm["scope_metrics"]
        for m in sm["metrics"]
    }
    duration = found["http.server.request.duration"]
    assert duration["unit"] == "s" and "http.server.duration" not in found
    assert all("scale" in p and "positive" in p for p in duration["data"]["data_points"])  # base2 exponential


def json_documents(text: str) -> list[dict[str, Any]]:
    """Every JSON object on stdout: the console exporters' (indented, several lines each) and our JSON lines."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while (i := text.find("{", i)) >= 0:
        try:
            doc, end = decoder.raw_decode(text, i)
        except ValueError:
            i += 1
            continue
        docs.append(doc)
        i = end
    return docs


def test_ours_are_the_only_distro_and_configurator():
    """opentelemetry-instrument takes the FIRST entry point of each group: with two installed, which one wins is
    up to the metadata order. opentelemetry-distro is not a dependency; ours must be the only ones."""
    found = {
        g: [(e.name, e.value) for e in entry_points(group=g)]
        for g in ("opentelemetry_distro", "opentelemetry_configurator")
    }
    assert found == {
        "opentelemetry_distro": [("ai_diary", "app.telemetry.distro:AiDiaryDistro")],
        "opentelemetry_configurator": [("ai_diary", "app.telemetry.distro:AiDiaryConfigurator")],
    }, f"{found}: reinstall (uv pip sync requirements.lock, then pip install --no-deps -e .)"


def test_resource_defaults_never_override_what_is_set(monkeypatch):
    from opentelemetry.sdk.resources import Resource

    from app.telemetry import distro as otel_defaults

    env = {
        "OTEL_RESOURCE_ATTRIBUTES": "service.version=9.9,team=a%2Cb",
        "APP_VERSION": "1.0",
        "OTEL_PYTHON_EXCLUDED_URLS": "/x",
    }
    otel_defaults.apply_env_defaults(env)
    assert "OTEL_PYTHON_FLASK_EXCLUDED_URLS" in env and env["OTEL_PYTHON_FLASK_EXCLUDED_URLS"] == "/x"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", env["OTEL_RESOURCE_ATTRIBUTES"])
    monkeypatch.setenv("OTEL_SERVICE_NAME", "diary-canary")
    attrs = Resource.create().attributes
    assert attrs["service.version"] == "9.9" and attrs["team"] == "a,b"  # set: kept
    assert attrs["deployment.environment.name"] == "development"  # unset: our default
    assert attrs["service.name"] == "diary-canary"  # OTEL_SERVICE_NAME beats the default in the attributes


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
