"""``WandbSink``: the only module that imports ``wandb`` (lazily). Owns init/define_metric/log/alert/finish.

Settings: arguments, else :class:`otel_wandb.config.RunConfig` (``WANDB_PROJECT`` -- default ``ai-diary`` --,
``WANDB_ENTITY``, ``WANDB_MODE``, ``WANDB_DIR``, ``WANDB_RUN_GROUP``, ``WANDB_NAME``, ``WANDB_JOB_TYPE``,
``WANDB_INIT_TIMEOUT``: 15 s, not wandb's 90); without ``WANDB_API_KEY`` and ``WANDB_MODE`` the run is offline and
the ``wandb sync <dir>`` command is logged once. ``start`` (``wandb.init``) runs on the pipeline's flusher thread as
soon as the first record arrives, never on a request thread, and never holds the sink's lock:
``finish`` stays bounded by its timeout while an init hangs (the run is then finished by the init's thread when
it returns). If init fails the sink warns once and stays disabled: ``log`` returns False.

Summaries (wandb 0.31 has min/max/mean/first/last/none, no sum; see ``summary_for``): ``max`` for p95/p99 and
error rates, ``last`` for running totals (``*_total``, ``<metric>/total``: sums over the run are those totals)
and gauges, ``mean`` for per-interval quantities (counts, deltas, rates, costs, p50, means) -- their last value
means nothing for a run. Keys are defined one by one (``define_metric`` globs are prefixes only) with every
``.`` escaped as ``\\.``: W&B reads an unescaped dot in a ``define_metric`` name as a nested path, so the
summary of ``http.server.request.duration/p95`` or ``http/p95_ms@http.route=/v1.2`` was silently the default.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from otel_wandb.config import WANDB_DIR, ConfigError, RunConfig
from otel_wandb.runfile import wait_complete

logger = logging.getLogger(__name__)

STEP_METRIC = "interval/time"
LEVELS = ("INFO", "WARN", "ERROR")
_PER_INTERVAL_MEAN = (
    "/count",
    "/rate",
    "/delta",
    "/mean",
    "/p50",
    "/p50_ms",
    "/requests",
    "/errors",
    "/calls",
    "/input_tokens",
    "/output_tokens",
    "/cached_tokens",
    "/cost_usd",
    "/occurrences",
    "/new_groups",
    "/seconds",
)


def _import_wandb() -> ModuleType:
    try:
        import wandb
    except ImportError as exc:  # pragma: no cover - wandb is a hard dependency of the project
        raise ImportError("the W&B exporters need the `wandb` package: pip install 'wandb>=0.31,<0.32'") from exc
    return wandb


def summary_for(key: str) -> str | None:
    """The run-summary aggregation of a row key (None: W&B's default, the last value)."""
    stat = key.split("@", 1)[0]
    if stat == STEP_METRIC:
        return None
    if "/p95" in stat or "/p99" in stat or stat.endswith("/error_rate"):
        return "max"
    if stat.endswith(("_total", "/total", "/last")) or stat == "errors/groups":
        return "last"
    if stat.endswith(_PER_INTERVAL_MEAN) or stat.startswith("logs/count"):
        return "mean"
    return None


def escape_key(key: str) -> str:
    """A row key as a ``define_metric`` name: dots escaped (W&B splits unescaped dots into a nested path)."""
    return key.replace(".", "\\.")


class RunHistory:
    """What the sink has handed to the run, kept in memory for the live dashboard (``otel_wandb.report``): the last
    ``max_rows`` rows, the latest snapshot of each table and the alerts (bounded). Read-only views of what was
    written: no second aggregation."""

    def __init__(self, max_rows: int = 1440, max_alerts: int = 500) -> None:
        self._lock = threading.Lock()
        self._rows: deque[dict[str, Any]] = deque(maxlen=max_rows)
        self._tables: dict[str, list[dict[str, Any]]] = {}
        self._alerts: deque[dict[str, Any]] = deque(maxlen=max_alerts)
        self.version = 0  # grows with every change: the dashboard refreshes when it moves

    def add_row(self, row: Mapping[str, Any], tables: Mapping[str, Any] | None) -> None:
        with self._lock:
            self._rows.append(dict(row))
            for name, table in (tables or {}).items():
                self._tables[f"tables/{name}"] = [dict(zip(table.columns, r, strict=False)) for r in table.rows]
            self.version += 1

    def add_alert(self, title: str, text: str, level: str, at: float) -> None:
        with self._lock:
            self._alerts.append({"time": at, "title": title, "level": level, "text": text})
            self.version += 1

    def snapshot(self) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], list[dict[str, Any]], int]:
        """(rows, tables, alerts, version), copies."""
        with self._lock:
            return list(self._rows), {k: list(v) for k, v in self._tables.items()}, list(self._alerts), self.version


class WandbSink:
    """``run=``: an already created run. ``init_fn=``: called instead of ``wandb.init`` with the same keyword
    arguments (tests: a hanging or failing init). The sink treats whatever run it gets the same way: it always logs
    ``wandb.Table`` objects and alerts with ``wandb.AlertLevel`` levels (tests hand in a recorder that accepts
    exactly what a real run accepts: tests/support/wandb_run.py)."""

    def __init__(
        self,
        run: Any = None,
        *,
        project: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        dir: str | None = None,
        group: str | None = None,
        name: str | None = None,
        job_type: str | None = None,
        config: Mapping[str, Any] | None = None,
        finish_timeout: float = 10.0,
        init_timeout: float | None = None,
        init_fn: Callable[..., Any] | None = None,
        env: Mapping[str, str] | None = None,
        settings: RunConfig | None = None,
    ) -> None:
        settings = settings or RunConfig.from_env(env)
        args = {
            "project": project,
            "entity": entity,
            "mode": mode,
            "dir": dir,
            "group": group,
            "name": name,
            "job_type": job_type,
        }
        self.init_kwargs = {k: (v if v is not None else getattr(settings, k)) for k, v in args.items()}
        if self.init_kwargs["dir"]:
            try:
                os.makedirs(self.init_kwargs["dir"], exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"{WANDB_DIR} cannot be created ({exc.strerror or exc})") from None
        self.init_timeout = float(settings.init_timeout_s if init_timeout is None else init_timeout)
        self.config = dict(config or {})
        self.finish_timeout = finish_timeout
        self.run = run
        self._init_fn = init_fn
        self.disabled = False
        self.finished = False
        self.history: RunHistory | None = None  # what was handed to the run, kept once a dashboard asks for it
        self._defined: set[str] = set()
        self._lock = threading.Lock()  # guards the state flags below; never held across a wandb call
        self._initializing = False
        self._init_started = 0.0
        self._finish_waiting = False  # finish() waits for a running init (and then finishes the run itself)
        self._init_done = threading.Event()
        if run is not None:
            self._init_done.set()
            self._define_axis()

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> bool:
        """Create the run if needed (the pipeline's flusher thread; another caller waits for a running init, at
        most its timeout). False when disabled or finished."""
        with self._lock:
            waiting = self._initializing
            if not waiting and (self.run is not None or self.disabled or self.finished):
                return self.run is not None and not self.finished
            if not waiting:
                self._initializing = True
                self._init_started = time.monotonic()
        if waiting:
            self._init_done.wait(self.init_timeout + 5.0)
            with self._lock:
                return self.run is not None and not self.finished
        run, error = None, None
        try:
            run = self._create()
        except Exception as exc:  # bad key, no network, init timeout, broken install: never take the app down
            error = exc
        with self._lock:
            self._initializing = False
            if error is not None or run is None:
                self.disabled = True
            else:
                self.run = run
            orphan = run is not None and self.finished and not self._finish_waiting
        self._init_done.set()
        if error is not None:
            logger.warning("W&B export disabled: wandb.init failed (%s: %s)", type(error).__name__, error)
            return False
        if orphan:  # finish() gave up waiting for this init: close the run here, on this background thread
            self._finish_run(run, self.finish_timeout)
            return False
        if self.finished:
            return False  # finish() is waiting for us and takes the run over
        if (self.init_kwargs.get("mode") or "").lower() == "offline":
            logger.info(
                "W&B run is offline; upload it later with: wandb sync %s",
                getattr(getattr(run, "settings", None), "sync_dir", None) or getattr(run, "dir", ""),
            )
        self._define_axis()
        return True

    def _create(self) -> Any:
        kwargs = {k: v for k, v in self.init_kwargs.items() if v}
        if self._init_fn is not None:
            return self._init_fn(config=self.config or None, **kwargs)
        wandb = _import_wandb()
        settings = wandb.Settings(
            finish_timeout=self.finish_timeout,
            init_timeout=self.init_timeout,
            silent=True,
            console="off",
            x_disable_stats=True,
        )
        return wandb.init(config=self.config or None, settings=settings, reinit="create_new", **kwargs)

    def _define_axis(self) -> None:
        try:
            self.run.define_metric(STEP_METRIC)
            self.run.define_metric("*", step_metric=STEP_METRIC)
        except Exception as exc:
            logger.warning("W&B define_metric failed: %s", exc)

    def _define_new(self, row: Mapping[str, Any]) -> None:
        for key in row:
            if key in self._defined:
                continue
            self._defined.add(key)
            summary = summary_for(key)
            if summary:
                self.run.define_metric(escape_key(key), step_metric=STEP_METRIC, summary=summary)

    def remember(self, max_rows: int = 1440) -> RunHistory:
        """Keep what is handed to the run from now on (the live dashboard reads it); idempotent."""
        with self._lock:
            if self.history is None:
                self.history = RunHistory(max_rows)
            return self.history

    def identity(self) -> dict[str, Any]:
        """Which run this is, for people: mode, project, entity, name, the run's URL when online, and where an
        offline run waits for ``wandb sync``."""
        run = self.run
        mode = (self.init_kwargs.get("mode") or "online").lower()
        sync_dir = getattr(getattr(run, "settings", None), "sync_dir", None) if run is not None else None
        url = getattr(run, "url", None) if run is not None and mode == "online" else None
        state = (
            "finished"
            if self.finished
            else "disabled (wandb.init failed)"
            if self.disabled
            else "running"
            if run is not None
            else "starting"
        )
        return {
            "mode": mode,
            "project": self.init_kwargs.get("project"),
            "entity": self.init_kwargs.get("entity"),
            "name": getattr(run, "name", None) if run is not None else None,
            "url": url,
            "sync_dir": str(sync_dir) if sync_dir else None,
            "state": state,
        }

    # -- data ----------------------------------------------------------------------------------------------
    def log(self, row: Mapping[str, Any], tables: Mapping[str, Any] | None = None) -> bool:
        """One ``run.log`` call with the row and its tables. Returns False if the sink is disabled or failed."""
        if self.history is not None:
            self.history.add_row(row, tables)
        if not self.start():
            return False
        try:
            payload = dict(row)
            if tables:
                payload.update({f"tables/{name}": self._table(t) for name, t in tables.items()})
            self._define_new(row)
            self.run.log(payload)
            return True
        except Exception as exc:
            logger.warning("W&B log failed: %s: %s", type(exc).__name__, exc)
            return False

    def _table(self, table: Any) -> Any:
        wandb = _import_wandb()
        return wandb.Table(columns=list(table.columns), data=[list(r) for r in table.rows])

    def alert(self, title: str, text: str, level: str = "WARN", wait_duration: float = 60.0) -> bool:
        level = str(level).upper()
        level = "WARN" if level == "WARNING" else level
        if level not in LEVELS:
            level = "WARN"
        if self.history is not None:
            self.history.add_alert(title[:63], text, level, time.time())
        if not self.start():
            return False
        try:
            wandb = _import_wandb()
            self.run.alert(title=title[:63], text=text, level=wandb.AlertLevel(level), wait_duration=wait_duration)
            return True
        except Exception as exc:
            logger.warning("W&B alert failed: %s: %s", type(exc).__name__, exc)
            return False

    def finish(self, timeout: float | None = None) -> bool:
        """Finish the run within ``timeout`` seconds (default ``finish_timeout``), including the wait for a
        ``wandb.init`` still running; False when that time was not enough (the files stay on disk) or
        ``run.finish`` failed."""
        timeout = self.finish_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(0.1, timeout)
        with self._lock:
            if self.finished:
                return True
            self.finished = True
            pending = self._initializing
            self._finish_waiting = pending
        if pending:
            self._init_done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._finish_waiting = False
            run = self.run
            still_starting = self._initializing
        if still_starting:
            logger.warning(
                "W&B run not finished: wandb.init still running after %.1f s (init timeout %.0f s); "
                "the run is finished as soon as the init returns",
                time.monotonic() - self._init_started,
                self.init_timeout,
            )
            return False
        if run is None:
            return True
        return self._finish_run(run, max(0.1, deadline - time.monotonic()))

    def _finish_run(self, run: Any, timeout: float) -> bool:
        done = threading.Event()
        failed: list[Exception] = []
        sync_dir = getattr(getattr(run, "settings", None), "sync_dir", None)
        offline = (self.init_kwargs.get("mode") or "").lower() == "offline"

        def _finish() -> None:
            try:
                run.finish()
                if offline and sync_dir:  # wandb writes the offline file asynchronously after finish()
                    wait_complete(sync_dir, timeout)
            except Exception as exc:
                failed.append(exc)
                logger.warning("W&B finish failed: %s: %s", type(exc).__name__, exc)
            finally:
                done.set()

        t = threading.Thread(target=_finish, name="wandb-sink-finish", daemon=True)
        t.start()
        if not done.wait(timeout):
            logger.warning("W&B run did not finish within %.1f s; the offline files stay on disk", timeout)
            return False
        return not failed
