"""JSON log lines and their redaction, with the standard library only (plus the pure redaction functions): the
app's stdout handler uses them (app/telemetry/_logging.py adds trace ids), and so does the gunicorn master
(gunicorn.conf.py's logger class), which must import neither the app nor the OpenTelemetry SDK.

A line is one JSON object: ``ts``, ``level``, ``logger``, ``message``, ``service``, ``version``, ``environment``,
whatever the ``context`` callable adds (trace and span ids), and for an exception ``exception.type`` with a
content-free ``exception.message`` (app/telemetry_redact.redact_error) -- never a stack trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from app.telemetry._redact import redact_error, redact_message
from app.telemetry.defaults import resource_defaults
from otel_wandb.config import env_str, environ


class JsonFormatter(logging.Formatter):
    def __init__(
        self, service: str, version: str, environment: str, context: Callable[[], Mapping[str, str]] | None = None
    ) -> None:
        super().__init__()
        self.static = {"service": service, "version": version, "environment": environment}
        self.context = context

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        if self.context is not None:
            line.update(self.context())
        if record.exc_info and record.exc_info[0] is not None:
            line["exception.type"] = record.exc_info[0].__name__
            line["exception.message"] = redact_error(str(record.exc_info[1]))
        return json.dumps(line, default=str, ensure_ascii=False)


class RedactingFilter(logging.Filter):
    """For Python logging handlers (stdout JSON, OTel bridge, gunicorn): query values and tokens out of messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
            clean = redact_message(msg)
            if clean != msg:
                record.msg, record.args = clean, None
        except Exception:  # noqa: BLE001
            pass
        return True


def env_formatter(env: Mapping[str, str] | None = None) -> JsonFormatter:
    """Service, version and environment from the environment, as app/telemetry/ puts them on the app's lines."""
    env = environ() if env is None else env
    res = resource_defaults(env)
    return JsonFormatter(
        env_str(env, "OTEL_SERVICE_NAME") or res["service.name"],
        res["service.version"],
        res["deployment.environment.name"],
    )
