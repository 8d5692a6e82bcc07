"""ai-diary: a JSON API for diary entries with AI summaries, reflections and mood.

``create_app(config=None)`` is the application factory (``gunicorn 'app:create_app()'``). ``config`` overrides
settings (keys named like the environment variables) and any other Flask config key (e.g. ``TESTING``), plus
``INSTANCE_PATH`` (absolute; holds the default SQLite file and the development pseudonym key) and two test seams:
``METER_PROVIDER`` and ``LOGGER_PROVIDER`` (default: the global OpenTelemetry providers). Bad settings, a database
URL SQLAlchemy cannot use or a database that cannot be opened raise :class:`app.config.ConfigError` naming the
variable.

The package itself imports nothing: ``create_app`` is loaded on first use (PEP 562), so a light module of it
(``app.telemetry.logjson``, which gunicorn's master uses for its JSON lines) can be imported without Flask,
SQLAlchemy, the
OpenTelemetry SDK or the app's import-time setup.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from app.factory import create_app  # lazy: gunicorn's master imports app/ without Flask or the SDK

        return create_app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
