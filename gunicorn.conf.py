"""Gunicorn settings for the ai-diary API (``gunicorn -c gunicorn.conf.py "app:create_app()"``).

Telemetry is pre-fork safe: nothing OpenTelemetry-related runs in the master. Each worker gets a small, stable
slot number (0..workers-1, reused when a worker is replaced) in ``pre_fork`` and initialises its own providers
in ``post_fork`` through ``app.telemetry.init_worker(slot)``, which puts the worker id into the resource — so
every worker's metric series are distinct and W&B keys stay bounded (no pid in keys).

Every value comes from the environment (see .env.example), parsed with the repository's one configuration parser
(``otel_wandb.config``, standard library only): a bad value stops the start with a line naming the variable.
Nothing here is a secret.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

from gunicorn import glogging

from otel_wandb.config import ConfigError, env_number, env_str, environ

if TYPE_CHECKING:  # gunicorn ships no type information: these are Any to mypy, names for readers
    from gunicorn.arbiter import Arbiter
    from gunicorn.config import Config
    from gunicorn.workers.base import Worker

_log = logging.getLogger("gunicorn.error")
_env = environ()

try:
    # Cloud platforms (ECS, Cloud Run, Heroku-style hosts) hand the port in PORT.
    bind = [
        f"{env_str(_env, 'GUNICORN_BIND_HOST', '0.0.0.0')}:{env_number(_env, 'PORT', 8000, lo=0, hi=65535, kind=int)}"
    ]
    # gunicorn's own default already honours WEB_CONCURRENCY; restated so the default here is 2, not 1.
    workers = env_number(_env, "WEB_CONCURRENCY", 2, lo=1, hi=256, kind=int)
    threads = env_number(_env, "GUNICORN_THREADS", 1, lo=1, hi=256, kind=int)
    timeout = env_number(_env, "GUNICORN_TIMEOUT", 120, lo=1, kind=int)
    graceful_timeout = env_number(_env, "GUNICORN_GRACEFUL_TIMEOUT", 20, lo=1, kind=int)
except ConfigError as _exc:
    sys.exit(f"gunicorn.conf.py: {_exc}")
keepalive = 5
# Providers must be created after the fork, so the app is imported in each worker, never in the master.
preload_app = False
# The control socket (gunicorn >= 25.1) defaults to one path per $HOME: two servers on one machine would collide,
# and a read-only container home cannot hold it.
control_socket_disable = True
# /dev/shm avoids heartbeat stalls on container overlay filesystems.
worker_tmp_dir = env_str(_env, "GUNICORN_WORKER_TMP_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
accesslog = None  # request telemetry comes from OpenTelemetry, not from access lines
errorlog = "-"
loglevel = env_str(_env, "GUNICORN_LOG_LEVEL", "info")
forwarded_allow_ips = env_str(_env, "FORWARDED_ALLOW_IPS", "127.0.0.1")


class JsonLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn ships no type information
    """gunicorn's own lines (master and workers) on stderr as the app's JSON lines -- service, version,
    environment; query values and tokens redacted, no traceback (app/telemetry/logjson.py, which imports neither the app
    nor the OpenTelemetry SDK: the master stays light). No access lines: request telemetry is OpenTelemetry's,
    and gunicorn then skips building them."""

    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        self._access_log_enabled = bool(cfg.accesslog)
        try:
            from app.telemetry.logjson import RedactingFilter, env_formatter
        except ImportError:  # not the ai-diary app: gunicorn's own format
            return
        formatter, redact = env_formatter(), RedactingFilter()
        for handler in self.error_log.handlers:
            handler.setFormatter(formatter)
            handler.addFilter(redact)


logger_class = JsonLogger

_SLOT = "ai_diary_worker_slot"


def pre_fork(server: Arbiter, worker: Worker) -> None:
    """In the master: give the new worker the lowest slot no live worker holds."""
    used = {getattr(w, _SLOT, None) for w in server.WORKERS.values()}
    slot = 0
    while slot in used:
        slot += 1
    setattr(worker, _SLOT, slot)


def post_fork(server: Arbiter, worker: Worker) -> None:
    """In the worker: one set of providers per process, tagged with the worker slot."""
    worker_id = getattr(worker, _SLOT, 0)
    os.environ["AI_DIARY_WORKER_ID"] = str(worker_id)
    # the real worker count (a --workers flag included): in-process alerting turns itself off with several
    os.environ["WEB_CONCURRENCY"] = str(server.cfg.workers)
    try:
        from app.telemetry import init_worker

        init_worker(worker_id)
    except Exception:  # telemetry must never keep the API from serving
        _log.exception("telemetry init failed in worker %s (pid %s)", worker_id, worker.pid)
    else:
        _log.info("telemetry initialised in worker %s (pid %s)", worker_id, worker.pid)


def worker_exit(server: Arbiter, worker: Worker) -> None:
    """Flush and stop this worker's telemetry with a bounded wait."""
    try:
        from app import telemetry
    except Exception:
        return
    shutdown = getattr(telemetry, "shutdown", None)
    if shutdown is None:
        return
    try:
        shutdown()
    except Exception:
        _log.exception("telemetry shutdown failed in worker pid %s", worker.pid)
