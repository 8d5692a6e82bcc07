"""The app's audit() appends to the hash chain: records carry audit.seq / audit.hash that match the database."""

from __future__ import annotations

from sqlalchemy import inspect, text

from app.audit import Link, main, verify
from tests.support import metric_points


def _audit_records(log_exporter) -> list:
    return [
        d.log_record
        for d in log_exporter.get_finished_logs()
        if d.instrumentation_scope is not None and d.instrumentation_scope.name == "audit"
    ]


def test_requests_append_to_the_chain_and_stamp_the_log_records(app, client, register, log_exporter, tmp_path, capsys):
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

    with engine.begin() as conn:  # tamper: drop the append-only guard, then rewrite who deleted the entry
        conn.execute(text("DROP TRIGGER audit_chain_no_update"))
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
    assert all(r.attributes["audit.chain_error"] == "OperationalError" for r in records)


def test_a_failed_append_is_logged_marked_counted_and_seen_by_verify(
    app, client, register, log_exporter, metric_reader, tmp_path, caplog, capsys
):
    from otel_wandb.logfiles._files import Entry, to_line

    engine = app.extensions["db_engine"]
    headers = register("carol")  # seq 1 is chained
    with engine.begin() as conn:  # from now on every append fails (as a full disk or a broken database would)
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON audit_chain BEGIN SELECT RAISE(ABORT, 'x'); END"))
    caplog.set_level("ERROR", logger="app.audit._events")
    assert client.post("/api/entries", json={"text": "dear diary"}, headers=headers).status_code == 201
    assert client.get("/api/entries", headers={"Authorization": "Bearer nope"}).status_code == 401

    records = _audit_records(log_exporter)
    assert [r.attributes["audit.action"] for r in records] == ["user.register", "entry.create", "auth.failed"]
    assert "audit.chain_error" not in records[0].attributes and records[0].attributes["audit.seq"] == 1
    for r in records[1:]:
        assert r.attributes["audit.chain_error"] == "IntegrityError" and "audit.seq" not in r.attributes
    errors = [x.getMessage() for x in caplog.records if x.name == "app.audit._events" and x.levelname == "ERROR"]
    assert [m.split(" (")[0] for m in errors] == [
        "audit chain append failed for entry.create",
        "audit chain append failed for auth.failed",
    ]
    points = {p.attributes["audit.action"]: p.value for p in metric_points(metric_reader, "app.audit.chain_failures")}
    assert points == {"entry.create": 1, "auth.failed": 1}

    log = tmp_path / "audit.log"  # the collector's audit log as it would hold these records
    log.write_text(
        to_line([Entry(r.timestamp, 9, "INFO", "audit", "audit", attributes=dict(r.attributes)) for r in records])
        + "\n"
    )
    assert main(["verify", "--database", str(engine.url)]) == 0  # the chain alone looks complete...
    capsys.readouterr()
    assert main(["verify", "--database", str(engine.url), "--audit-log", str(log)]) == 1  # ...the log shows the gap
    err = capsys.readouterr().err
    assert "INCOMPLETE" in err and "2 record(s) whose chain append failed" in err and "'entry.create'" in err
