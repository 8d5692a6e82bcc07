"""The audit trail: events as OpenTelemetry log records (instrumentation scope ``audit``) and a tamper-evident hash
chain in the database (``app.audit._chain``; importing this package registers its table on the app's metadata).

``audit(action, actor=..., target=..., outcome=...)`` is the single entry point: registration, failed
authentication, entry create/update/delete and AI feature use. Actors are pseudonymous ids, targets are resource
ids (``entry:42``) — never diary text. The collector routes scope ``audit`` to the audit log file.

A failed append to the hash chain (app/audit/_chain.py) never fails the request, but it is never silent either: an
ERROR log naming the action, ``audit.chain_error`` (the exception type) on the audit record instead of
``audit.seq``/``audit.hash`` — so ``ai-diary-audit verify --audit-log`` reports the gap — and one more on the
``app.audit.chain_failures`` counter.
"""

from __future__ import annotations

from app.audit._chain import GENESIS, Link, Verdict, append, read_audit_log, record_hash, verify
from app.audit._cli import main
from app.audit._events import CHAIN_FAILURES, FAILURE, SCOPE, SUCCESS, audit

__all__ = [
    "CHAIN_FAILURES",
    "FAILURE",
    "GENESIS",
    "SCOPE",
    "SUCCESS",
    "Link",
    "Verdict",
    "append",
    "audit",
    "main",
    "read_audit_log",
    "record_hash",
    "verify",
]
