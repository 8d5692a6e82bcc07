"""The tamper-evident audit chain: append, verify, detect edits/deletions/reordering, concurrent writers."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.audit import GENESIS, Link, append, main, record_hash, verify
from app.audit import _chain as audit_chain
from app.db import create_schema, make_engine
from tests.support import ROOT


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.sqlite3'}"


@pytest.fixture
def engine(db_url: str):
    eng = make_engine(db_url)
    create_schema(eng)
    yield eng
    eng.dispose()


def fill(engine, n: int) -> list[Link]:
    return [
        append(
            engine,
            action="entry.create",
            actor=f"u_{i % 3}",
            target=f"entry:{i}",
            outcome="success",
            time_ns=1_700_000_000_000_000_000 + i,
            details={"client.address": "127.0.0.1"},
        )
        for i in range(n)
    ]


def unguard(engine) -> None:
    """Drop the append-only triggers, as someone with DDL rights could, so a test can tamper."""
    with engine.begin() as conn:
        for name in audit_chain.GUARD_TRIGGERS:
            conn.execute(text(f"DROP TRIGGER {name}"))


def tamper(engine, sql: str, params: dict | None = None) -> None:
    unguard(engine)
    with engine.begin() as conn:
        conn.execute(text(sql), params or {})


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.audit", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_chain_links_and_hashes(engine):
    links = fill(engine, 5)
    assert [lk.seq for lk in links] == [1, 2, 3, 4, 5]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, prev_hash, hash, details FROM audit_chain ORDER BY seq")).all()
    assert rows[0].prev_hash == GENESIS
    assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, 5))
    assert rows[2].hash == record_hash(
        3,
        rows[1].hash,
        1_700_000_000_000_000_002,
        "entry.create",
        "u_2",
        "entry:2",
        "success",
        '{"client.address":"127.0.0.1"}',
    )
    verdict = verify(engine)
    assert verdict.ok and verdict.count == 5 and verdict.head == links[-1]


@pytest.mark.parametrize(
    "tamper_sql, seq, words",
    [
        ("UPDATE audit_chain SET outcome='failure' WHERE seq=3", 3, "edited"),
        ('UPDATE audit_chain SET details=\'{"client.address":"10.0.0.1"}\' WHERE seq=4', 4, "edited"),
        ("DELETE FROM audit_chain WHERE seq=2", 2, "missing"),
        ("DELETE FROM audit_chain WHERE seq=1", 1, "missing"),
        # swap two records' contents (reordering) keeping seq, prev_hash and hash in place
        (
            "UPDATE audit_chain SET actor = CASE seq WHEN 2 THEN 'u_2' WHEN 3 THEN 'u_1' END, "
            "target = CASE seq WHEN 2 THEN 'entry:2' WHEN 3 THEN 'entry:1' END, "
            "time_ns = CASE seq WHEN 2 THEN 1700000000000000002 WHEN 3 THEN 1700000000000000001 END "
            "WHERE seq IN (2, 3)",
            2,
            "edited",
        ),
        # renumber: move seq 5 to 9 (a gap) - reported at the first missing seq
        ("UPDATE audit_chain SET seq=9 WHERE seq=5", 5, "missing"),
    ],
)
def test_verify_names_first_broken_seq(engine, db_url, tamper_sql, seq, words, capsys):
    fill(engine, 6)
    # the triggers refuse it...
    with pytest.raises(IntegrityError, match="audit_chain is append-only"), engine.begin() as conn:
        conn.execute(text(tamper_sql))
    assert verify(engine).ok and verify(engine).guarded is True
    tamper(engine, tamper_sql)  # ...so drop them first, as someone with DDL rights could
    verdict = verify(engine)
    assert not verdict.ok and verdict.broken_seq == seq and words in verdict.message and verdict.guarded is False
    assert main(["verify", "--database", db_url]) == 1
    err = capsys.readouterr().err
    assert f"BROKEN at seq {seq}" in err and "append-only triggers on audit_chain are missing" in err


def test_edit_with_recomputed_hash_breaks_the_next_link(engine):
    fill(engine, 4)
    with engine.connect() as conn:
        prev = conn.execute(text("SELECT hash FROM audit_chain WHERE seq=1")).scalar_one()
    forged = record_hash(
        2,
        prev,
        1_700_000_000_000_000_001,
        "entry.create",
        "someone_else",
        "entry:1",
        "success",
        '{"client.address":"127.0.0.1"}',
    )
    tamper(engine, "UPDATE audit_chain SET actor='someone_else', hash=:h WHERE seq=2", {"h": forged})
    verdict = verify(engine)
    assert verdict.broken_seq == 3 and "prev_hash" in verdict.message


def test_truncated_tail_is_caught_against_the_audit_log(engine):
    links = fill(engine, 4)
    tamper(engine, "DELETE FROM audit_chain WHERE seq=4")
    assert verify(engine).ok  # the chain alone cannot see a cut tail...
    verdict = verify(engine, expected=links)  # ...the audit log's seq/hash can
    assert not verdict.ok and verdict.broken_seq == 4 and "missing" in verdict.message


@pytest.mark.integration  # the command line in its own process
def test_cli_ok(engine, db_url):
    fill(engine, 3)
    res = cli("verify", env={"DATABASE_URL": db_url})  # the real command line, once
    assert res.returncode == 0 and res.stdout.startswith("OK: 3 records") and "head seq 3" in res.stdout


def test_cli_config_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["verify"]) == 2
    assert "DATABASE_URL" in capsys.readouterr().err
    assert main(["verify", "--database", f"sqlite:///{tmp_path / 'empty.sqlite3'}"]) == 2
    assert "cannot read the audit chain" in capsys.readouterr().err


def _writer(url: str, worker: int, n: int, barrier) -> None:
    eng = make_engine(url)
    barrier.wait(60)  # bounded: a sibling that died must not hang this one
    for i in range(n):
        append(eng, action="entry.update", actor=f"w{worker}", target=f"entry:{i}", outcome="success")
    eng.dispose()


def test_concurrent_processes_keep_one_unbroken_chain(engine, db_url):
    workers, per_worker = 4, 40
    ctx = mp.get_context("fork")  # real separate processes, each with its own engine
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(db_url, w, per_worker, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * workers
    verdict = verify(engine)
    assert verdict.ok, verdict.message
    assert verdict.count == workers * per_worker
    with engine.connect() as conn:
        per_actor = dict(conn.execute(text("SELECT actor, count(*) FROM audit_chain GROUP BY actor")).all())
        interleaved = conn.execute(
            text("SELECT count(*) FROM audit_chain a JOIN audit_chain b ON b.seq = a.seq + 1 WHERE a.actor != b.actor")
        ).scalar_one()
    assert per_actor == {f"w{w}": per_worker for w in range(workers)}
    assert interleaved > 0  # the writers really ran at the same time


def test_table_is_on_the_app_metadata():
    from app.models import Base

    assert Base.metadata.tables["audit_chain"] is audit_chain.TABLE


def test_cli_checks_against_the_collectors_audit_log(engine, db_url, tmp_path, capsys):
    from otel_wandb.logfiles._files import Entry, to_line

    links = fill(engine, 5)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    recs = [
        Entry(
            1,
            9,
            "INFO",
            "audit entry.create",
            "audit",
            attributes={"audit.action": "entry.create", "audit.seq": lk.seq, "audit.hash": lk.hash},
        )
        for lk in links
    ]
    (log_dir / "audit-2026-11-29T10-00-00.000-size.log").write_text(to_line(recs[:3]) + "\n")
    (log_dir / "audit.log").write_text(to_line(recs[3:]) + "\n")
    assert main(["verify", "--database", db_url, "--audit-log", str(log_dir)]) == 0
    assert capsys.readouterr().out.startswith("OK: 5 records")
    tamper(engine, "DELETE FROM audit_chain WHERE seq >= 4")  # cut the tail: the chain alone still looks intact
    assert main(["verify", "--database", db_url]) == 0
    capsys.readouterr()
    assert main(["verify", "--database", db_url, "--audit-log", str(log_dir / "audit.log")]) == 1
    assert "BROKEN at seq 4: seq 4: missing" in capsys.readouterr().err


def test_non_transient_errors_raise_at_once(tmp_path):
    import time

    from sqlalchemy.exc import OperationalError

    eng = make_engine(f"sqlite:///{tmp_path / 'no-table.sqlite3'}")  # schema never created
    t0 = time.monotonic()
    with pytest.raises(OperationalError, match="no such table"):
        append(eng, action="a", actor="b", target="c", outcome="success")
    assert time.monotonic() - t0 < 2  # not retried until the deadline
    eng.dispose()


def test_append_only_triggers_refuse_update_delete_and_come_back_at_start(engine, db_url, capsys):
    fill(engine, 3)
    for sql in (
        "UPDATE audit_chain SET actor='x' WHERE seq=2",
        "DELETE FROM audit_chain WHERE seq=3",
        "DELETE FROM audit_chain",
    ):
        with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    assert verify(engine).count == 3
    unguard(engine)
    assert main(["verify", "--database", db_url]) == 0  # intact, but the guard is gone: said so
    captured = capsys.readouterr()
    assert captured.out.startswith("OK: 3 records") and "triggers on audit_chain are missing" in captured.err
    create_schema(engine)  # the next app start puts them back on an existing database
    assert verify(engine).guarded is True
    with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_chain WHERE seq=1"))
    assert [lk.seq for lk in fill(engine, 1)] == [4]  # appending still works


def test_only_a_seq_conflict_is_retried(engine):
    import time

    with engine.begin() as conn:  # an append that always fails with an IntegrityError that is not a seq conflict
        conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON audit_chain BEGIN SELECT RAISE(ABORT, 'no'); END"))
    t0 = time.monotonic()
    with pytest.raises(IntegrityError, match="no"):
        append(engine, action="a", actor="b", target="c", outcome="success")
    assert time.monotonic() - t0 < 2  # raised at once, not retried until the 15 s deadline
    pk = IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: audit_chain.seq"))
    pg = IntegrityError("INSERT", {}, Exception('duplicate key value violates unique constraint "audit_chain_pkey"'))
    my = IntegrityError("INSERT", {}, Exception("(1062, \"Duplicate entry '7' for key 'audit_chain.PRIMARY'\")"))
    other = IntegrityError("INSERT", {}, Exception("NOT NULL constraint failed: audit_chain.actor"))
    assert [audit_chain._transient(e) for e in (pk, pg, my, other)] == [True, True, True, False]
