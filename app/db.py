"""Engine and per-request sessions (flaskr's ``db.init_app(app)`` shape, SQLAlchemy 2).

The engine is ``app.extensions["db_engine"]`` (telemetry instruments it). SQLite gets WAL, a busy timeout and
foreign keys so several gunicorn workers can share one file. Statement parameters are hidden from error messages
(they carry diary text).
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import ConfigError
from app.models import Base

logger = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT_MS = 10_000


def default_url(app: Flask) -> str:
    os.makedirs(app.instance_path, exist_ok=True)
    return "sqlite:///" + os.path.join(app.instance_path, "ai-diary.sqlite3")


def make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _ENGINES.add(engine)
    return engine


def _dispose_after_fork() -> None:
    """A forked worker (gunicorn --preload) must not reuse the parent's pooled connections."""
    for engine in list(_ENGINES):
        engine.dispose(close=False)


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_dispose_after_fork)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not _is_memory(dbapi_conn):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _is_memory(dbapi_conn: Any) -> bool:
    row = dbapi_conn.execute("PRAGMA database_list").fetchone()
    return not row or not row[2]


def create_schema(engine: Engine, attempts: int = 5) -> None:
    """create_all, tolerating another worker creating the same tables at the same moment."""
    for attempt in range(attempts):
        try:
            Base.metadata.create_all(engine)
            return
        except OperationalError as exc:
            msg = str(exc.orig)
            if attempt == attempts - 1 or ("already exists" not in msg and "locked" not in msg):
                raise
            time.sleep(0.05 * (attempt + 1))


def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = current_app.extensions["db_sessionmaker"]()
    session: Session = g.db_session
    return session


def close_session(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def ping() -> bool:
    try:
        with current_app.extensions["db_engine"].connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - readiness reports any failure as "not ready"
        logger.warning("database not reachable", exc_info=False)
        return False


def init_app(app: Flask, url: str | None) -> Engine:
    """Engine, schema and per-request sessions. A URL SQLAlchemy cannot use, or a database that cannot be opened at
    start-up, is a :class:`ConfigError` naming DATABASE_URL (the URL itself is never echoed: it may hold a
    password)."""
    try:
        engine = make_engine(url or default_url(app))
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:  # these name the dialect or driver module
        raise ConfigError(f"DATABASE_URL: not a usable SQLAlchemy URL ({_first_line(exc)})") from None
    except ValueError:  # e.g. a non-numeric port; its message quotes a piece of the URL
        raise ConfigError("DATABASE_URL: not a usable SQLAlchemy URL (malformed host or port)") from None
    try:
        create_schema(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise ConfigError(
            f"DATABASE_URL: the database cannot be opened ({type(exc.orig).__name__}: {_first_line(exc.orig)})"
        ) from None
    app.extensions["db_engine"] = engine
    app.extensions["db_sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(close_session)
    return engine


def _first_line(exc: BaseException | None, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]
