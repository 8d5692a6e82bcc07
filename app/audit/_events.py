"""``audit()``: one audit event as an OpenTelemetry log record (see the package docstring)."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import current_app, has_app_context, has_request_context, request
from opentelemetry import context as otel_context
from opentelemetry import metrics
from opentelemetry._logs import Logger, SeverityNumber, get_logger

from app.audit import _chain as audit_chain

logger = logging.getLogger(__name__)
SCOPE = "audit"
SUCCESS, FAILURE = "success", "failure"
CHAIN_FAILURES = "app.audit.chain_failures"


def _otel_logger() -> Logger:
    if has_app_context():
        cached: Logger | None = current_app.extensions.get("audit_logger")
        if cached is not None:
            return cached
        provider = current_app.config.get("LOGGER_PROVIDER")  # test seam; default: the global provider
        cached = get_logger(SCOPE, logger_provider=provider)
        current_app.extensions["audit_logger"] = cached
        return cached
    return get_logger(SCOPE)


def _chain_failures() -> Any:
    """The ``app.audit.chain_failures`` counter, on the app's meter (``METER_PROVIDER`` seam, as app/llm.py)."""
    counter = current_app.extensions.get("audit_chain_failures")
    if counter is None:
        meter = metrics.get_meter("ai-diary", meter_provider=current_app.config.get("METER_PROVIDER"))
        counter = meter.create_counter(
            CHAIN_FAILURES, unit="{record}", description="Audit records whose append to the hash chain failed"
        )
        current_app.extensions["audit_chain_failures"] = counter
    return counter


def audit(action: str, *, actor: str, target: str, outcome: str = SUCCESS) -> None:
    """Emit one audit record. Never raises into request code."""
    try:
        attributes: dict[str, Any] = {
            "audit.action": action,
            "audit.actor": actor,
            "audit.target": target,
            "audit.outcome": outcome,
        }
        if has_request_context():
            attributes["client.address"] = request.remote_addr or ""
            attributes["user_agent.original"] = request.user_agent.string or ""
        ok = outcome == SUCCESS
        now = time.time_ns()
        _chain_append(now, attributes)  # stamps audit.seq / audit.hash (tamper-evident chain) first
        _otel_logger().emit(
            timestamp=now,
            context=otel_context.get_current(),  # trace_id/span_id of the request span
            severity_number=SeverityNumber.INFO if ok else SeverityNumber.WARN,
            severity_text="INFO" if ok else "WARN",
            body=f"audit {action}",
            attributes=attributes,
            event_name=f"audit.{action}",
        )
    except Exception:  # noqa: BLE001 - auditing must never break a request
        logger.exception("audit record for %s could not be emitted", action)


def _chain_append(timestamp_ns: int, attributes: dict[str, Any]) -> None:
    """Append to the hash chain (app/audit/_chain.py) and add ``audit.seq`` / ``audit.hash`` to ``attributes``;
    on failure add ``audit.chain_error``, log at ERROR and count it (never raises)."""
    try:
        engine = current_app.extensions.get("db_engine") if has_app_context() else None
        if engine is None:
            return
        link = audit_chain.append_attributes(engine, timestamp_ns, attributes)
        attributes["audit.seq"], attributes["audit.hash"] = link.seq, link.hash
    except Exception as exc:  # noqa: BLE001 - the log record is still emitted, marked as not chained
        action = attributes.get("audit.action")
        attributes["audit.chain_error"] = type(exc).__name__
        logger.error(
            "audit chain append failed for %s (%s): the audit record goes out without audit.seq",
            action,
            type(exc).__name__,
            exc_info=True,
        )
        try:
            _chain_failures().add(1, {"audit.action": str(action)})
        except Exception:  # noqa: BLE001 - metrics must not break auditing either
            logger.debug("could not count the chain failure", exc_info=True)
