"""Metrics and logs of the real app through app/telemetry/: names, units, histogram kind, trace ids, audit."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics.export import ExponentialHistogramDataPoint

from tests.support.telemetry import flush, stdout_lines

pytestmark = pytest.mark.telemetry  # apps use the telemetry_state providers (tests/conftest.py)


def metrics_by_name(reader):
    out = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).append(m)
    return out


def test_metric_names_units_and_base2_histograms(client, register, metric_reader):
    headers = register("fay")
    eid = client.post("/api/entries", json={"text": "sunny"}, headers=headers).json["id"]
    assert client.post(f"/api/entries/{eid}/ai/summarize", headers=headers).status_code == 200
    ms = metrics_by_name(metric_reader)
    (dur,) = ms["http.server.request.duration"]
    assert dur.unit == "s"
    pts = dur.data.data_points
    assert all(isinstance(p, ExponentialHistogramDataPoint) for p in pts)
    routes = {p.attributes.get("http.route") for p in pts}
    assert "/api/entries/<int:entry_id>/ai/<feature>" in routes
    assert all("http.request.method" in p.attributes for p in pts)
    (tokens,) = ms["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    kinds = {p.attributes["gen_ai.token.type"] for p in tokens.data.data_points}
    assert {"input", "output"} <= kinds
    (op,) = ms["gen_ai.client.operation.duration"]
    assert op.unit == "s"
    (cost,) = ms["app.ai.cost"]
    assert cost.unit == "USD"
    (cp,) = [p for p in cost.data.data_points if p.attributes.get("app.feature") == "summarize"]
    assert cp.value > 0
    # no high-cardinality or personal attributes on metrics
    for name, group in ms.items():
        for m in group:
            for p in m.data.data_points:
                assert "enduser.pseudo.id" not in p.attributes and "url.full" not in p.attributes, name


def test_logs_carry_trace_ids_and_stdout_is_json(client, register, log_exporter, span_exporter, telemetry_stdout):
    import logging

    from flask import Flask

    app: Flask = client.application

    @app.get("/api/_log_probe")
    def probe():
        logging.getLogger("app.probe").warning("probe for %s", "request")
        return {"ok": True}

    assert client.get("/api/_log_probe").status_code == 200
    flush()
    (server,) = [s for s in span_exporter.get_finished_spans() if s.name.endswith("_log_probe")]
    recs = [r.log_record for r in log_exporter.get_finished_logs() if r.log_record.body == "probe for request"]
    assert recs and recs[0].trace_id == server.context.trace_id and recs[0].span_id == server.context.span_id
    lines = [line for line in stdout_lines(telemetry_stdout) if line["message"] == "probe for request"]
    assert lines, telemetry_stdout.getvalue()[-2000:]
    line = lines[0]
    assert line["trace_id"] == format(server.context.trace_id, "032x")
    assert line["span_id"] == format(server.context.span_id, "016x")
    assert line["service"] == "ai-diary" and line["version"] and line["level"] == "WARNING"
    assert all(
        {"ts", "level", "logger", "message", "service", "version"} <= set(x) for x in stdout_lines(telemetry_stdout)
    )


def test_audit_record_per_action(client, register, log_exporter):
    headers = register("gus")
    eid = client.post("/api/entries", json={"text": "hello"}, headers=headers).json["id"]
    client.patch(f"/api/entries/{eid}", json={"tags": ["x"]}, headers=headers)
    client.post(f"/api/entries/{eid}/ai/mood", headers=headers)
    client.delete(f"/api/entries/{eid}", headers=headers)
    client.get("/api/entries", headers={"Authorization": "Bearer wrong"})
    flush()
    audit = [r for r in log_exporter.get_finished_logs() if r.instrumentation_scope.name == "audit"]
    actions = [r.log_record.attributes["audit.action"] for r in audit]
    for action in ("user.register", "entry.create", "entry.update", "ai.mood", "entry.delete"):
        assert action in actions, actions
    assert any(a.startswith("auth") for a in actions), actions
    for r in audit:
        a = r.log_record.attributes
        assert {"audit.actor", "audit.target", "audit.outcome"} <= set(a)
        assert r.log_record.trace_id  # emitted inside the request span
        assert r.resource.attributes["service.name"] == "ai-diary"
