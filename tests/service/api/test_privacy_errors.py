"""A database failure while storing an entry (500) leaks neither the entry text nor the token: the engine hides
statement parameters, and the 500's span event, log line and stdout JSON carry only the exception and code
location. Real app, real telemetry pipeline (app/telemetry/) with in-memory doubles at the ends."""

from __future__ import annotations

import json
import secrets

import pytest
from sqlalchemy import text as sql

from tests.support.telemetry import flush

pytestmark = pytest.mark.telemetry  # apps use the telemetry_state providers (tests/conftest.py)


def test_database_error_on_insert_is_500_without_the_text(make_app, span_exporter, log_exporter, telemetry_stdout):
    canary = f"CANARY-{secrets.token_hex(6)}"
    app = make_app()
    client = app.test_client()
    token = client.post("/api/users", json={"name": "a"}).json["token"]
    with app.extensions["db_engine"].begin() as conn:
        conn.execute(
            sql(
                "CREATE TRIGGER reject_entries BEFORE INSERT ON entries "
                "BEGIN SELECT RAISE(ABORT, 'entries are read-only'); END"
            )
        )

    resp = client.post(
        "/api/entries",
        json={"text": f"dear diary\n{canary} " + "x" * 3000, "tags": [canary[:20]]},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert resp.status_code == 500 and resp.json["error"]["code"] == "internal_error"
    flush()
    server = [s for s in span_exporter.get_finished_spans() if s.attributes.get("http.route") == "/api/entries"]
    events = [ev for ev in server[0].events if ev.name == "exception"] if server else []
    assert events and events[0].attributes["exception.type"].endswith("IntegrityError")  # the failure is visible,
    # the driver's message names the failure; the statement and its parameters (later lines) are gone
    assert events[0].attributes["exception.message"] == "(sqlite3.IntegrityError) entries are read-only"
    # the handler's ERROR record carries the same content-free exception (one W&B error group with the span)
    logged = [
        r.log_record.attributes
        for r in log_exporter.get_finished_logs()
        if (r.log_record.attributes or {}).get("exception.type")
    ]
    assert [(a["exception.type"], a["exception.message"]) for a in logged] == [
        ("IntegrityError", "(sqlite3.IntegrityError) entries are read-only")
    ]
    texts = [telemetry_stdout.getvalue(), *(r.to_json() for r in log_exporter.get_finished_logs())]
    for s in span_exporter.get_finished_spans():
        texts += [s.status.description or "", json.dumps(dict(s.attributes or {}), default=str)]
        texts += [json.dumps(dict(ev.attributes or {}), default=str) for ev in s.events]
    for secret in (canary, canary[:20], token):  # and nothing that was sent reaches any sink
        assert not [t[:200] for t in texts if secret in t]
