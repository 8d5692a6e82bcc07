"""The privacy invariant: a random canary sent through every endpoint reaches no telemetry sink.

Sinks scanned: span names, attributes, event attributes and status descriptions; metric point attributes; log
record bodies and attributes; every JSON line on stdout. A positive control (GenAI content capture opted in)
proves the scan finds the canary when it is there.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from typing import Any

import pytest

from tests.support.telemetry import flush, reset_globals, stdout_lines

pytestmark = pytest.mark.telemetry  # apps use the telemetry_state providers (tests/conftest.py)


@pytest.fixture
def telemetry_log_level() -> str:
    return "DEBUG"  # the most log lines that could carry the canary


def _strings(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    return [str(value)]


def leaks(canary: str, span_exporter, metric_reader, log_exporter, stdout) -> list[str]:
    flush()
    found = []
    for s in span_exporter.get_finished_spans():
        texts = [s.name, s.status.description or "", *_strings(dict(s.attributes or {}))]
        for ev in s.events:
            texts += [ev.name, *_strings(dict(ev.attributes or {}))]
        found += [f"span {s.name}: {t[:200]}" for t in texts if canary in t]
    data = metric_reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    found += [f"metric {m.name}: {t}" for t in _strings(dict(p.attributes or {})) if canary in t]
    for r in log_exporter.get_finished_logs():
        lr = r.log_record
        texts = [*_strings(lr.body), *_strings(dict(lr.attributes or {}))]
        found += [f"log {r.instrumentation_scope.name}: {t[:200]}" for t in texts if canary in t]
    found += [f"stdout: {line[:200]}" for line in stdout.getvalue().splitlines() if canary in line]
    return found


def exercise(client, canary: str) -> None:
    """Every endpoint, with the canary in every field a client controls."""
    resp = client.post("/api/users", json={"name": f"name-{canary}"})
    assert resp.status_code == 201, resp.json
    headers = {"Authorization": f"Bearer {resp.json['token']}"}
    resp = client.post(
        "/api/entries", json={"text": f"dear diary {canary} today", "tags": [f"t{canary}"[:30]]}, headers=headers
    )
    assert resp.status_code == 201, resp.json
    eid = resp.json["id"]
    assert client.get(f"/api/entries?cursor={canary}&limit=5", headers=headers).status_code == 400
    assert client.get("/api/entries?limit=5", headers=headers).status_code == 200
    assert client.get(f"/api/entries/{eid}", headers=headers).status_code == 200
    assert (
        client.patch(
            f"/api/entries/{eid}", json={"text": f"edited {canary}", "tags": [canary[:30]]}, headers=headers
        ).status_code
        == 200
    )
    for feature in ("summarize", "reflect", "mood"):
        assert client.post(f"/api/entries/{eid}/ai/{feature}", headers=headers).status_code == 200
    # bad input that quotes the value back in validation errors
    assert client.post("/api/entries", json={"text": 12345, "tags": canary}, headers=headers).status_code == 400
    assert client.patch(f"/api/entries/{eid}", json={"text": {"x": canary}}, headers=headers).status_code == 400
    assert client.post("/api/users", json={"name": "", "extra": canary}).status_code == 400
    assert (
        client.post(
            "/api/entries", data=f"not json {canary}", headers={**headers, "Content-Type": "application/json"}
        ).status_code
        == 400
    )
    # the canary as a credential, in the URL path and the query string
    assert client.get("/api/entries", headers={"Authorization": f"Bearer {canary}"}).status_code == 401
    assert client.get("/api/entries", headers={"Authorization": canary}).status_code == 401
    assert client.get(f"/api/{canary}?q={canary}", headers=headers).status_code == 404
    assert client.get(f"/api/entries/{eid}?token={canary}", headers=headers).status_code == 200
    assert (
        client.get("/api/entries", headers={**headers, "Cookie": f"session={canary}", "X-Api-Key": canary}).status_code
        == 200
    )
    assert client.delete(f"/api/entries/{eid}", headers=headers).status_code == 204


def test_canary_reaches_no_sink(client, span_exporter, metric_reader, log_exporter, telemetry_stdout):
    canary = "cnry" + secrets.token_hex(8)
    exercise(client, canary)
    flush()
    assert len(span_exporter.get_finished_spans()) > 20
    assert [r for r in log_exporter.get_finished_logs() if r.instrumentation_scope.name == "audit"]
    assert stdout_lines(telemetry_stdout)  # stdout JSON was produced and captured
    assert leaks(canary, span_exporter, metric_reader, log_exporter, telemetry_stdout) == []


@pytest.mark.parametrize("telemetry_overrides", [{"AI_DIARY_CAPTURE_GENAI_CONTENT": "true"}])
def test_scan_finds_the_canary_when_content_capture_is_opted_in(
    client, span_exporter, metric_reader, log_exporter, telemetry_stdout
):
    canary = "cnry" + secrets.token_hex(8)
    headers = {"Authorization": f"Bearer {client.post('/api/users', json={'name': 'x'}).json['token']}"}
    eid = client.post("/api/entries", json={"text": f"dear diary {canary}"}, headers=headers).json["id"]
    assert client.post(f"/api/entries/{eid}/ai/summarize", headers=headers).status_code == 200
    found = leaks(canary, span_exporter, metric_reader, log_exporter, telemetry_stdout)
    assert found and all(f.startswith("span chat ") for f in found), found


def test_capture_variable_without_opt_in_is_ignored(monkeypatch, telemetry_env):
    from app import telemetry

    telemetry.shutdown(1.0)
    reset_globals()
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_and_event")
    try:
        state = telemetry.configure()
        import os

        assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" not in os.environ
        assert state.policy.capture_content is False
    finally:
        telemetry.shutdown(1.0)
        reset_globals()


@pytest.mark.parametrize(
    "telemetry_overrides", [{}, {"AI_DIARY_CAPTURE_GENAI_CONTENT": "true"}], ids=["default", "genai-content-opted-in"]
)
def test_database_error_text_reaches_neither_the_recorded_exception_nor_the_db_span(
    make_app, telemetry_state, span_exporter, telemetry_overrides
):
    """A PostgreSQL-style error (``DETAIL: Failing row contains (...)``, unquoted) raised by the real database
    through the real SQLAlchemy instrumentation: the DB span's status description and the 500's exception event
    keep the error's kind, not the row. The exception event is checked as recorded (before the export filter).
    The GenAI content opt-in changes none of that (it keeps prompts and completions only)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    canary = "cnry" + secrets.token_hex(8)
    raw = InMemorySpanExporter()  # sees spans as recorded, without the privacy exporter
    telemetry_state.tracer_provider.add_span_processor(SimpleSpanProcessor(raw))
    app = make_app()
    client = app.test_client()
    token = client.post("/api/users", json={"name": "a"}).json["token"]
    # the error text as PostgreSQL words it (SQLite's RAISE takes a literal: written by a connection that is not
    # instrumented, so the DDL itself is no span)
    with contextlib.closing(sqlite3.connect(app.extensions["db_engine"].url.database)) as conn:
        conn.execute(
            "CREATE TRIGGER reject_entries BEFORE INSERT ON entries BEGIN SELECT RAISE(ABORT, "
            f"'new row violates check constraint\nDETAIL: Failing row contains (7, dear diary {canary})'); "
            "END"
        )
        conn.commit()
    resp = client.post(
        "/api/entries", json={"text": f"dear diary {canary}"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status_code == 500
    flush()
    recorded = [
        ev
        for s in raw.get_finished_spans()
        if s.attributes.get("http.route") == "/api/entries"
        for ev in s.events
        if ev.name == "exception"
    ]
    assert recorded and "violates check constraint" in recorded[0].attributes["exception.message"]
    assert canary not in recorded[0].attributes["exception.message"]
    assert canary not in recorded[0].attributes["exception.stacktrace"]
    assert 'File "' in recorded[0].attributes["exception.stacktrace"]  # the frames are kept
    db_spans = [
        s
        for s in span_exporter.get_finished_spans()
        if s.attributes.get("db.system.name", s.attributes.get("db.system")) == "sqlite" and s.status.description
    ]
    assert db_spans and all("violates check constraint" in s.status.description for s in db_spans)
    assert [s.status.description for s in db_spans if canary in s.status.description] == []
    exported = [ev for s in span_exporter.get_finished_spans() for ev in s.events]
    assert [ev for ev in exported if canary in str(dict(ev.attributes or {}))] == []
    assert telemetry_state.policy.capture_content is bool(telemetry_overrides)
