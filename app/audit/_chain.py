"""Tamper-evident audit trail: an append-only table whose rows form a SHA-256 hash chain.

Each row stores ``seq`` (1, 2, 3, … no gaps), ``prev_hash`` (the previous row's hash; 64 zeros for seq 1) and
``hash = sha256(canonical JSON of seq, prev_hash, time_ns, action, actor, target, outcome, details)``. Editing,
deleting or reordering rows breaks a link that ``ai-diary-audit verify`` reports by seq. The audit log record
(app/audit/) carries ``audit.seq`` / ``audit.hash`` too, so ``verify --audit-log`` also catches a truncated tail
or a rewritten chain by comparing the database with the collector's audit log.

Append-only is enforced by the database, not only by convention: ``create_all`` (app.db.create_schema) also creates
triggers that refuse UPDATE and DELETE on ``audit_chain`` (SQLite ``RAISE(ABORT)``; PostgreSQL a trigger function,
TRUNCATE included). Someone with DDL rights can still drop them — the hash chain and the audit-log cross-check catch
what follows, and ``verify`` reports the missing triggers.

Appends are serialized across processes (several gunicorn workers): SQLite takes the write lock up front with
``BEGIN IMMEDIATE``, PostgreSQL takes ``pg_advisory_xact_lock`` before reading the head. Elsewhere (MySQL) appends
rely on ``seq`` being the primary key: only a conflict on it is retried, any other error raises at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Engine, Integer, String, Table, Text, event, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, mapped_column

from app.models import Base
from otel_wandb.logfiles import entries, read_file

logger = logging.getLogger(__name__)
GENESIS = "0" * 64
CORE_KEYS = ("audit.action", "audit.actor", "audit.target", "audit.outcome")


class AuditChainRecord(Base):
    __tablename__ = "audit_chain"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time_ns: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(20))
    details: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON of the other attributes
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


TABLE: Table = AuditChainRecord.__table__  # type: ignore[assignment]  # SQLAlchemy types it FromClause; mapped: a Table
ADVISORY_LOCK_KEY = 0x61756469745F63  # "audit_c": PostgreSQL advisory lock serializing appends (and the DDL)
GUARD_TRIGGERS = ("audit_chain_no_update", "audit_chain_no_delete")
_SQLITE_GUARD = [
    f"CREATE TRIGGER IF NOT EXISTS audit_chain_no_{op.lower()} BEFORE {op} ON audit_chain "
    f"BEGIN SELECT RAISE(ABORT, 'audit_chain is append-only: {op} refused'); END"
    for op in ("UPDATE", "DELETE")
]
_PG_GUARD = [
    f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})",  # two workers starting at once: one creates, one sees
    "CREATE OR REPLACE FUNCTION audit_chain_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION USING MESSAGE = 'audit_chain is append-only: ' || TG_OP || ' refused'; END $$",
    *[
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{name}' AND tgrelid = "
        f"'audit_chain'::regclass) THEN CREATE TRIGGER {name} BEFORE {op} ON audit_chain FOR EACH {each} EXECUTE "
        f"FUNCTION audit_chain_append_only(); END IF; END $$"
        for name, op, each in (
            ("audit_chain_no_update", "UPDATE", "ROW"),
            ("audit_chain_no_delete", "DELETE", "ROW"),
            ("audit_chain_no_truncate", "TRUNCATE", "STATEMENT"),
        )
    ],
]


@event.listens_for(Base.metadata, "after_create")
def _guard_after_create(_target: Any, connection: Any, **_kw: Any) -> None:
    """Runs after every ``create_all`` (also when the table already existed): databases created before the guard
    get it on the next start."""
    create_guard(connection)


def create_guard(connection: Any) -> None:
    """Create the append-only triggers if missing (SQLite, PostgreSQL; other dialects: none)."""
    statements = {"sqlite": _SQLITE_GUARD, "postgresql": _PG_GUARD}.get(connection.dialect.name, [])
    for statement in statements:
        connection.exec_driver_sql(statement)


def guarded(conn: Any) -> bool | None:
    """Whether the append-only triggers are in place (None: this dialect has none)."""
    if conn.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_chain'"
    elif conn.dialect.name == "postgresql":
        sql = "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass('audit_chain') AND NOT tgisinternal"
    else:
        return None
    wanted = set(GUARD_TRIGGERS) | ({"audit_chain_no_truncate"} if conn.dialect.name == "postgresql" else set())
    return wanted <= {row[0] for row in conn.exec_driver_sql(sql)}


@dataclass(frozen=True, slots=True)
class Link:
    seq: int
    hash: str


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(
    seq: int, prev_hash: str, time_ns: int, action: str, actor: str, target: str, outcome: str, details: str
) -> str:
    doc = {
        "seq": seq,
        "prev_hash": prev_hash,
        "time_ns": time_ns,
        "action": action,
        "actor": actor,
        "target": target,
        "outcome": outcome,
        "details": json.loads(details or "{}"),
    }
    return hashlib.sha256(canonical(doc).encode("utf-8")).hexdigest()


_HEAD = select(TABLE.c.seq, TABLE.c.hash).order_by(TABLE.c.seq.desc()).limit(1)  # built once: appends are hot
_INSERT = insert(TABLE)
_PG_LOCK = text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY})")


def _head(conn: Any) -> tuple[int, str]:
    row = conn.execute(_HEAD).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


def _transient(exc: Exception) -> bool:
    """A conflict with a concurrent writer: worth another attempt. Any other error (a refusing trigger, a missing
    table, a NOT NULL) is not."""
    message = str(getattr(exc, "orig", exc)).lower()
    if isinstance(exc, IntegrityError):  # only "another writer took this seq first"
        return (
            "audit_chain.seq" in message
            or "audit_chain_pkey" in message  # SQLite / PostgreSQL
            or ("duplicate entry" in message and "primary" in message)
        )  # MySQL / MariaDB
    return any(
        word in message for word in ("locked", "busy", "deadlock", "serializ", "could not obtain lock", "lock timeout")
    )


def append(
    engine: Engine,
    *,
    action: str,
    actor: str,
    target: str,
    outcome: str,
    time_ns: int | None = None,
    details: Mapping[str, Any] | None = None,
    deadline_s: float = 15.0,
) -> Link:
    """Append one record as the new head of the chain and return its (seq, hash). Conflicts with concurrent
    writers are retried for up to ``deadline_s`` seconds; other errors raise at once (app/audit/ never lets
    them reach a request)."""
    time_ns = time.time_ns() if time_ns is None else time_ns
    details_json = canonical(dict(details or {}))
    dialect = engine.dialect.name
    deadline = time.monotonic() + deadline_s
    attempt = 0
    while True:
        attempt += 1
        try:
            with engine.connect() as conn:
                if dialect == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before reading the head
                elif dialect == "postgresql":  # held until commit/rollback: appends queue here, no seq conflicts
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")  # a stuck holder: retry, never hang
                    conn.execute(_PG_LOCK)
                seq, prev = _head(conn)
                seq += 1
                digest = record_hash(seq, prev, time_ns, action, actor, target, outcome, details_json)
                conn.execute(
                    _INSERT,
                    {
                        "seq": seq,
                        "time_ns": time_ns,
                        "action": action,
                        "actor": actor,
                        "target": target,
                        "outcome": outcome,
                        "details": details_json,
                        "prev_hash": prev,
                        "hash": digest,
                    },
                )
                conn.commit()
                return Link(seq, digest)
        except (IntegrityError, OperationalError) as exc:
            if not _transient(exc) or time.monotonic() > deadline:
                raise
            logger.debug("audit chain append retry %d: %s", attempt, exc.__class__.__name__)
            time.sleep(random.uniform(0.001, min(0.05, 0.002 * attempt)))


def append_attributes(engine: Engine, time_ns: int, attributes: Mapping[str, Any]) -> Link:
    """Append from an audit log record's attributes (``audit.action`` etc.; the rest goes into ``details``)."""
    details = {k: v for k, v in attributes.items() if k not in CORE_KEYS and not k.startswith("audit.")}
    return append(
        engine,
        action=str(attributes.get("audit.action", "")),
        actor=str(attributes.get("audit.actor", "")),
        target=str(attributes.get("audit.target", "")),
        outcome=str(attributes.get("audit.outcome", "")),
        time_ns=time_ns,
        details=details,
    )


@dataclass(slots=True)
class Verdict:
    ok: bool
    count: int
    head: Link | None
    broken_seq: int | None = None
    message: str = ""
    guarded: bool | None = None  # the append-only triggers are in place (None: not checked / none for this dialect)


def verify(engine: Engine, expected: Iterable[Link] = ()) -> Verdict:
    """Walk the chain from seq 1; report the first broken link. ``expected`` (seq, hash) pairs, e.g. from the
    audit log file, must all be present unchanged (catches a truncated tail or a fully recomputed chain).
    ``guarded`` tells whether the append-only triggers are still there."""
    with engine.connect() as conn:
        guard = guarded(conn)
        verdict = _walk(conn, expected)
    verdict.guarded = guard
    return verdict


def _walk(conn: Any, expected: Iterable[Link]) -> Verdict:
    prev, want, count, head = GENESIS, 1, 0, None
    rows = conn.execution_options(yield_per=1000).execute(select(TABLE).order_by(TABLE.c.seq))
    for r in rows:
        if r.seq != want:
            what = "deleted" if r.seq > want else "duplicated or reordered"
            return Verdict(
                False, count, head, want, f"seq {want}: record missing (next stored seq is {r.seq}) - {what}"
            )
        if r.prev_hash != prev:
            return Verdict(
                False,
                count,
                head,
                r.seq,
                f"seq {r.seq}: prev_hash does not match the hash of seq {r.seq - 1} "
                "(a record was edited, deleted or reordered)",
            )
        if record_hash(r.seq, r.prev_hash, r.time_ns, r.action, r.actor, r.target, r.outcome, r.details) != r.hash:
            return Verdict(False, count, head, r.seq, f"seq {r.seq}: content does not match its hash (edited)")
        prev, want, count, head = r.hash, want + 1, count + 1, Link(r.seq, r.hash)
    stored = {row.seq: row.hash for row in conn.execute(select(TABLE.c.seq, TABLE.c.hash))} if expected else {}
    for link in sorted(set(expected), key=lambda lk: lk.seq):
        if stored.get(link.seq) != link.hash:
            state = "missing" if link.seq not in stored else "different from the audit log"
            return Verdict(
                False, count, head, link.seq, f"seq {link.seq}: {state} (audit log has hash {link.hash[:12]}…)"
            )
    return Verdict(
        True,
        count,
        head,
        None,
        f"OK: {count} records, chain intact" + (f", head seq {head.seq} hash {head.hash}" if head else ""),
    )


def read_audit_log(path: str) -> tuple[list[Link], list[Any]]:
    """From the collector's audit log (a directory or a file; backups included): the (audit.seq, audit.hash)
    pairs, and the records whose chain append failed (``audit.chain_error``, app/audit/)."""
    p = Path(path)
    items = list(entries(p, ["audit"]) if p.is_dir() else read_file(p))
    links = [
        Link(int(e.attributes["audit.seq"]), str(e.attributes["audit.hash"]))
        for e in items
        if "audit.seq" in e.attributes and "audit.hash" in e.attributes
    ]
    return links, [e for e in items if "audit.chain_error" in e.attributes]
