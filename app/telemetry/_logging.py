"""Python logging for the service: JSON lines on stdout, and the bridge into OTel logs (see app/telemetry/).

Every stdout line is one JSON object with ``ts``, ``level``, ``logger``, ``message``, ``service``, ``version``,
``environment`` and, inside a span, ``trace_id`` / ``span_id``; exceptions add ``exception.type`` and a
content-free ``exception.message`` (app/telemetry_privacy.redact_error; no stack trace on stdout: it lives on the
span's exception event; the formatter is app/telemetry/logjson.py's, which gunicorn's own loggers use too).
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

from opentelemetry import trace

from app.telemetry.logjson import JsonFormatter, RedactingFilter

_MARK = "_ai_diary_handler"


def _trace_ids() -> dict[str, str]:
    ctx = trace.get_current_span().get_span_context()
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")} if ctx.is_valid else {}


def install_stdout(level: str, service: str, version: str, environment: str, stream: IO[str] | None = None) -> None:
    """(Re)installs the one JSON stdout handler on the root logger; idempotent."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _MARK, None) == "stdout":
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stdout)
    setattr(handler, _MARK, "stdout")
    handler.setFormatter(JsonFormatter(service, version, environment, context=_trace_ids))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # chatty third-party loggers that would otherwise print request lines or payload sizes
    for name in ("werkzeug", "httpx", "httpx2", "httpcore", "httpcore2", "openai", "urllib3", "sqlalchemy.engine"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def install_otel_bridge(logger_provider: Any) -> logging.Handler | None:
    """Adds a LoggingHandler (Python logging -> OTel logs, with trace/span ids) unless one is already there."""
    root = logging.getLogger()
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
    except ImportError:  # pragma: no cover - older instrumentation: the SDK's (deprecated) handler
        from opentelemetry.sdk._logs import LoggingHandler  # type: ignore[assignment]  # the same role, another class
    for h in root.handlers:
        if type(h).__name__ == "LoggingHandler":
            return None  # e.g. opentelemetry-instrument with logging auto-instrumentation
    handler = LoggingHandler(level=logging.NOTSET, logger_provider=logger_provider)
    setattr(handler, _MARK, "otel")
    handler.addFilter(RedactingFilter())
    handler.addFilter(lambda r: not r.name.startswith("opentelemetry"))
    root.addHandler(handler)
    return handler


def remove_otel_bridge() -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _MARK, None) == "otel":
            root.removeHandler(h)
