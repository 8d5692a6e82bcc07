"""Privacy and audit invariants of the service: diary text and tokens never reach logs, metrics or audit records;
user ids appear only pseudonymized."""

from __future__ import annotations

import hashlib
import hmac
import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import privacy
from app.audit import audit
from app.auth import bind_user
from tests.support import TEST_SECRET

CANARY = "CANARY-7f3a9e-diary-secret"


def test_canary_text_and_tokens_never_reach_logs_metrics_or_audit(make_app, metric_reader, log_exporter, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    app = make_app(AI_MODEL_REFLECT="unpriced-model")  # exercises the unknown-model warning too
    client = app.test_client()
    token = client.post("/api/users", json={"name": f"name-{CANARY}"}).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    eid = client.post("/api/entries", json={"text": f"I feel {CANARY}", "tags": [CANARY[:30]]}, headers=headers).json[
        "id"
    ]
    client.patch(f"/api/entries/{eid}", json={"text": f"updated {CANARY}"}, headers=headers)
    for feature in ("summarize", "reflect", "mood"):
        assert client.post(f"/api/entries/{eid}/ai/{feature}", headers=headers).status_code == 200
    client.post("/api/entries", json={"text": 12345, "note": CANARY}, headers=headers)  # 400 path
    client.get("/api/entries", headers={"Authorization": f"Bearer {CANARY}"})  # 401 path
    client.delete(f"/api/entries/{eid}", headers=headers)

    metric_reader.collect()
    sinks = {
        "logs": caplog.text,
        "stdout+stderr": "".join(capfd.readouterr()),
        "metrics": metric_reader.get_metrics_data().to_json(),
        "otel log records": "\n".join(r.to_json() for r in log_exporter.get_finished_logs()),
    }
    assert sinks["otel log records"] and sinks["metrics"]
    for name, text in sinks.items():
        assert CANARY not in text, name
        assert token not in text, name
        assert CANARY[:30] not in text, name


def test_audit_records_carry_pseudonymous_actor_and_the_trace_context(app, client, log_exporter):
    provider = TracerProvider()
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("test")
    user_id = client.post("/api/users", json={"name": "a"}).json["id"]
    with (
        app.test_request_context("/api/entries", headers={"User-Agent": "pytest-agent"}),
        tracer.start_as_current_span("request") as span,
    ):
        pseudo = bind_user(user_id)
        audit("entry.create", actor=pseudo, target="entry:1")
    (finished,) = spans.get_finished_spans()
    assert finished.attributes["enduser.pseudo.id"] == pseudo
    expected = "u_" + hmac.new(TEST_SECRET.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()[:16]
    assert pseudo == expected
    rec = next(
        r.log_record
        for r in log_exporter.get_finished_logs()
        if r.log_record.attributes["audit.action"] == "entry.create"
    )
    assert rec.trace_id == span.get_span_context().trace_id and rec.span_id == span.get_span_context().span_id
    assert rec.attributes["user_agent.original"] == "pytest-agent"
    assert rec.attributes["audit.actor"] == pseudo and rec.attributes["audit.target"] == "entry:1"


def test_pseudonyms_are_keyed_and_stable():
    privacy.configure(TEST_SECRET)
    a = privacy.pseudonymize(42)
    assert a == privacy.pseudonymize("42") and a != privacy.pseudonymize(43)
    privacy.configure("another-secret")
    assert privacy.pseudonymize(42) != a
    privacy.configure(TEST_SECRET)


def test_development_secret_is_shared_through_the_instance_file(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="app.privacy")
    path = str(tmp_path / "pseudonym.secret")
    first = privacy.instance_secret(path)
    assert privacy.instance_secret(path) == first and len(first) == 64
    assert (tmp_path / "pseudonym.secret").stat().st_mode & 0o777 == 0o600
    created = [r for r in caplog.records if r.name == "app.privacy" and "generated" in r.getMessage()]
    assert len(created) == 1 and first not in caplog.text  # created once; the key itself is never logged


def test_no_current_span_is_harmless(app):
    with app.test_request_context("/"):
        assert not trace.get_current_span().is_recording()
        assert bind_user(1).startswith("u_")
