"""``WandbSink``: the only module that imports ``wandb`` (lazily). Owns init/define_metric/log/alert/finish.

Settings, environment first: ``WANDB_PROJECT`` (default ``ai-diary``), ``WANDB_ENTITY``, ``WANDB_MODE``, ``WANDB_DIR``,
``WANDB_RUN_GROUP``, ``WANDB_NAME``, ``WANDB_JOB_TYPE``; without ``WANDB_API_KEY`` and ``WANDB_MODE`` the run is
offline and the ``wandb sync <dir>`` command is logged once. ``wandb.init`` is deferred to the first ``log`` (the
pipeline's flusher thread), never on a request thread. If init fails the sink warns once and stays disabled:
``log`` returns False. Summaries (wandb 0.31 has min/max/mean/first/last, no sum): ``max`` for p95/p99 keys,
``last`` for running totals (``*_total``, ``<metric>/total``) -- sums over the run are those totals.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Mapping

from .config import ConfigError

logger = logging.getLogger(__name__)

STEP_METRIC = "interval/time"
DEFAULT_PROJECT = "ai-diary"
ENV_KEYS = {"project": "WANDB_PROJECT", "entity": "WANDB_ENTITY", "mode": "WANDB_MODE", "dir": "WANDB_DIR",
            "group": "WANDB_RUN_GROUP", "name": "WANDB_NAME", "job_type": "WANDB_JOB_TYPE"}
LEVELS = ("INFO", "WARN", "ERROR")


def _import_wandb():
    try:
        import wandb
    except ImportError as exc:  # pragma: no cover - wandb is a hard dependency of the project
        raise ImportError("the W&B exporters need the `wandb` package: pip install 'wandb>=0.31,<0.32'") from exc
    return wandb


def _summary_for(key: str) -> str | None:
    stat = key.split("@", 1)[0]
    if "/p95" in stat or "/p99" in stat:
        return "max"
    if stat.endswith("_total") or stat.endswith("/total"):
        return "last"
    return None


class WandbSink:
    def __init__(self, run: Any = None, *, project: str | None = None, entity: str | None = None,
                 mode: str | None = None, dir: str | None = None, group: str | None = None,
                 name: str | None = None, job_type: str | None = None, config: Mapping | None = None,
                 finish_timeout: float = 10.0, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        args = {"project": project, "entity": entity, "mode": mode, "dir": dir, "group": group, "name": name,
                "job_type": job_type}
        self.init_kwargs = {k: (v if v is not None else env.get(ENV_KEYS[k]) or None) for k, v in args.items()}
        self.init_kwargs["project"] = self.init_kwargs["project"] or DEFAULT_PROJECT
        if not self.init_kwargs["mode"] and not env.get("WANDB_API_KEY"):
            self.init_kwargs["mode"] = "offline"
        if self.init_kwargs["dir"]:
            try:
                os.makedirs(self.init_kwargs["dir"], exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"WANDB_DIR={self.init_kwargs['dir']!r} cannot be created: {exc}") from None
        self.config = dict(config or {})
        self.finish_timeout = finish_timeout
        self.run = run
        self._injected = run is not None
        self.disabled = False
        self.finished = False
        self._defined: set[str] = set()
        self._lock = threading.Lock()
        if run is not None:
            self._define_axis()

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> bool:
        """Create the run if needed (called lazily from the flusher thread). False when disabled."""
        with self._lock:
            if self.run is not None or self.disabled or self.finished:
                return self.run is not None and not self.finished
            try:
                wandb = _import_wandb()
                settings = wandb.Settings(finish_timeout=self.finish_timeout, silent=True, console="off",
                                          x_disable_stats=True)
                kwargs = {k: v for k, v in self.init_kwargs.items() if v}
                self.run = wandb.init(config=self.config or None, settings=settings, reinit="create_new",
                                      **kwargs)
            except Exception as exc:  # bad key, no network, broken install: never take the app down
                self.disabled = True
                logger.warning("W&B export disabled: wandb.init failed (%s: %s)", type(exc).__name__, exc)
                return False
            if (self.init_kwargs.get("mode") or "").lower() == "offline":
                logger.info("W&B run is offline; upload it later with: wandb sync %s",
                            getattr(self.run.settings, "sync_dir", None) or self.run.dir)
            self._define_axis()
            return True

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
            summary = _summary_for(key)
            if summary:
                self.run.define_metric(key, step_metric=STEP_METRIC, summary=summary)

    # -- data ----------------------------------------------------------------------------------------------
    def log(self, row: Mapping[str, Any], tables: Mapping[str, Any] | None = None) -> bool:
        """One ``run.log`` call with the row and its tables. Returns False if the sink is disabled or failed."""
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
        if self._injected:
            return table  # recorder seam: hand the plain Table through
        wandb = _import_wandb()
        return wandb.Table(columns=list(table.columns), data=[list(r) for r in table.rows])

    def alert(self, title: str, text: str, level: str = "WARN", wait_duration: float = 60.0) -> bool:
        if not self.start():
            return False
        level = str(level).upper()
        level = "WARN" if level == "WARNING" else level
        if level not in LEVELS:
            level = "WARN"
        try:
            if self._injected:
                self.run.alert(title=title[:63], text=text, level=level, wait_duration=wait_duration)
            else:
                wandb = _import_wandb()
                self.run.alert(title=title[:63], text=text, level=wandb.AlertLevel(level),
                               wait_duration=wait_duration)
            return True
        except Exception as exc:
            logger.warning("W&B alert failed: %s: %s", type(exc).__name__, exc)
            return False

    def finish(self, timeout: float | None = None) -> bool:
        """Finish the run within ``timeout`` seconds (wandb's ``finish_timeout`` plus a joined thread)."""
        with self._lock:
            if self.finished:
                return True
            self.finished = True
            run = self.run
        if run is None:
            return True
        timeout = self.finish_timeout if timeout is None else timeout
        done = threading.Event()

        sync_dir = None if self._injected else getattr(getattr(run, "settings", None), "sync_dir", None)
        offline = (self.init_kwargs.get("mode") or "").lower() == "offline"

        def _finish() -> None:
            try:
                run.finish()
                if offline and sync_dir:  # wandb writes the offline file asynchronously after finish()
                    from .runfile import wait_complete

                    wait_complete(sync_dir, timeout)
            except Exception as exc:
                logger.warning("W&B finish failed: %s", exc)
            finally:
                done.set()

        t = threading.Thread(target=_finish, name="wandb-sink-finish", daemon=True)
        t.start()
        if not done.wait(max(0.1, timeout)):
            logger.warning("W&B run did not finish within %.1f s; the offline files stay on disk", timeout)
            return False
        return True
