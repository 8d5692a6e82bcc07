"""The app's audit() appends to the hash chain: records carry audit.seq / audit.hash that match the database."""

from __future__ import annotations

from sqlalchemy import inspect, text

from app.audit_chain import Link, main, verify


def _audit_records(log_exporter) -> list:
    return [d.log_record for d in log_exporter.get_finished_logs()
            if d.instrumentation_scope is not None and d.instrumentation_scope.name == "audit"]


def test_requests_append_to_the_chain_and_stamp_the_log_records(app, client, register, log_exporter, tmp_path,
                                                                capsys):
    engine = app.extensions["db_engine"]
    assert "audit_chain" in inspect(engine).get_table_names()  # created with the app's tables
    headers = register("alice")
    created = client.post("/api/entries", json={"text": "dear diary, canary-7c1e"}, headers=headers)
    assert created.status_code == 201, created.json
    assert client.delete(f"/api/entries/{created.json['id']}", headers=headers).status_code in (200, 204)
    assert client.get("/api/entries", headers={"Authorization": "Bearer wrong"}).status_code == 401

    records = _audit_records(log_exporter)
    actions = [r.attributes["audit.action"] for r in records]
    assert actions == ["user.register", "entry.create", "entry.delete", "auth.failed"]
    links = [Link(r.attributes["audit.seq"], r.attributes["audit.hash"]) for r in records]
    assert [lk.seq for lk in links] == [1, 2, 3, 4]
    verdict = verify(engine, expected=links)
    assert verdict.ok and verdict.count == 4 and verdict.head == links[-1]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, action, actor, details FROM audit_chain ORDER BY seq")).all()
    assert [r.action for r in rows] == actions
    assert rows[1].actor == records[1].attributes["audit.actor"] and rows[1].actor != "alice"  # pseudonymous
    assert all("canary-7c1e" not in r.details for r in rows)  # diary text never enters the audit trail

    with engine.begin() as conn:  # tamper: rewrite who deleted the entry
        conn.execute(text("UPDATE audit_chain SET actor='someone-else' WHERE seq=3"))
    assert main(["verify", "--database", str(engine.url)]) == 1
    assert "BROKEN at seq 3" in capsys.readouterr().err


def test_a_failing_chain_never_breaks_the_request(app, client, register, log_exporter):
    with app.extensions["db_engine"].begin() as conn:
        conn.execute(text("DROP TABLE audit_chain"))
    headers = register("bob")  # audit() runs; the chain append fails inside it
    assert client.post("/api/entries", json={"text": "x"}, headers=headers).status_code == 201
    records = _audit_records(log_exporter)
    assert [r.attributes["audit.action"] for r in records] == ["user.register", "entry.create"]
    assert all("audit.seq" not in r.attributes for r in records)  # still emitted, without chain fields
