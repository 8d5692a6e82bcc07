"""The privacy invariant: a random canary sent through every endpoint reaches no telemetry sink.

Sinks scanned: span names, attributes, event attributes and status descriptions; metric point attributes; log
record bodies and attributes; every JSON line on stdout. A positive control (GenAI content capture opted in)
proves the scan finds the canary when it is there.
"""
from __future__ import annotations

import secrets
from typing import Any

import pytest

from app.telemetry_testing import *  # noqa: F401,F403 - the telemetry fixtures
from app.telemetry_testing import flush, reset_globals, stdout_lines  # noqa: F401


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
    resp = client.post("/api/entries", json={"text": f"dear diary {canary} today", "tags": [f"t{canary}"[:30]]},
                       headers=headers)
    assert resp.status_code == 201, resp.json
    eid = resp.json["id"]
    assert client.get(f"/api/entries?cursor={canary}&limit=5", headers=headers).status_code == 400
    assert client.get("/api/entries?limit=5", headers=headers).status_code == 200
    assert client.get(f"/api/entries/{eid}", headers=headers).status_code == 200
    assert client.patch(f"/api/entries/{eid}", json={"text": f"edited {canary}", "tags": [canary[:30]]},
                        headers=headers).status_code == 200
    for feature in ("summarize", "reflect", "mood"):
        assert client.post(f"/api/entries/{eid}/ai/{feature}", headers=headers).status_code == 200
    # bad input that quotes the value back in validation errors
    assert client.post("/api/entries", json={"text": 12345, "tags": canary}, headers=headers).status_code == 400
    assert client.patch(f"/api/entries/{eid}", json={"text": {"x": canary}}, headers=headers).status_code == 400
    assert client.post("/api/users", json={"name": "", "extra": canary}).status_code == 400
    assert client.post("/api/entries", data=f"not json {canary}", headers={**headers, "Content-Type":
                       "application/json"}).status_code == 400
    # the canary as a credential, in the URL path and the query string
    assert client.get("/api/entries", headers={"Authorization": f"Bearer {canary}"}).status_code == 401
    assert client.get("/api/entries", headers={"Authorization": canary}).status_code == 401
    assert client.get(f"/api/{canary}?q={canary}", headers=headers).status_code == 404
    assert client.get(f"/api/entries/{eid}?token={canary}", headers=headers).status_code == 200
    assert client.get("/api/entries", headers={**headers, "Cookie": f"session={canary}",
                                               "X-Api-Key": canary}).status_code == 200
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
def test_scan_finds_the_canary_when_content_capture_is_opted_in(client, span_exporter, metric_reader,
                                                                 log_exporter, telemetry_stdout):
    canary = "cnry" + secrets.token_hex(8)
    headers = {"Authorization": f"Bearer {client.post('/api/users', json={'name': 'x'}).json['token']}"}
    eid = client.post("/api/entries", json={"text": f"dear diary {canary}"}, headers=headers).json["id"]
    assert client.post(f"/api/entries/{eid}/ai/summarize", headers=headers).status_code == 200
    found = leaks(canary, span_exporter, metric_reader, log_exporter, telemetry_stdout)
    assert found and all(f.startswith("span chat ") for f in found), found


def test_capture_variable_without_opt_in_is_ignored(monkeypatch, telemetry_env):
    from app import telemetry
    from app.telemetry_testing import reset_globals

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
