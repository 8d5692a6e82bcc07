"""``ai-diary-audit verify``: check the audit hash chain, and against the collector's audit log."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from app.audit._chain import read_audit_log, verify
from app.config import DATABASE_URL, env_value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ai-diary-audit", description="Tamper-evident audit trail tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check the hash chain; exit 1 naming the first broken seq")
    v.add_argument("--database", help=f"SQLAlchemy URL (default ${DATABASE_URL})")
    v.add_argument("--audit-log", help="also check against audit.seq/audit.hash in this audit log file or LOG_DIR")
    args = parser.parse_args(argv)
    url = args.database or env_value(DATABASE_URL)
    if not url:
        print(f"ai-diary-audit: no database: set {DATABASE_URL} or pass --database", file=sys.stderr)
        return 2
    engine = create_engine(url)
    try:
        expected, unchained = read_audit_log(args.audit_log) if args.audit_log else ([], [])
        verdict = verify(engine, expected)
    except OperationalError as exc:
        print(f"ai-diary-audit: cannot read the audit chain from {engine.url!r}: {exc.orig}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if verdict.guarded is False:
        print(
            "ai-diary-audit: WARNING: the append-only triggers on audit_chain are missing (dropped?); they are "
            "recreated at the next app start",
            file=sys.stderr,
        )
    if verdict.ok and unchained:
        first = unchained[0]
        print(
            f"INCOMPLETE: {verdict.message}, but the audit log holds {len(unchained)} record(s) whose chain append "
            f"failed (audit.chain_error), first {first.attributes.get('audit.action')!r} at {first.time_ns} ns",
            file=sys.stderr,
        )
        return 1
    if verdict.ok:
        print(verdict.message)
        return 0
    print(
        f"BROKEN at seq {verdict.broken_seq}: {verdict.message} ({verdict.count} records verified before it)",
        file=sys.stderr,
    )
    return 1
