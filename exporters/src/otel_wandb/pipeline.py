"""``Pipeline``: a lock around the pure aggregator, a flusher thread (one ``flush`` and at most one ``sink.log`` per
interval), listeners (alerts) on every ``IntervalResult``, and a bounded ``shutdown``.

``Pipeline.shared()`` is the process-wide instance of the three SDK exporters (one W&B run per process); it is
rebuilt after ``os.fork`` (pid check) so each pre-forked worker gets its own run.

Records are aggregated on arrival under the lock (a few microseconds per span; exporters call from the SDK's batch
worker threads, never from request threads), so there is no pending buffer to bound: the aggregator's own state
is bounded by construction. Every ``sink`` call happens on the flusher thread, so ``wandb.init`` (about a second)
never runs on a caller's thread, and ``force_flush``/``shutdown`` honour their timeouts even if W&B hangs. The
first record wakes the flusher to start the sink right away (a failing ``wandb.init`` is known, and ``export``
returns FAILURE, within the init timeout -- not an interval later).

Nothing is logged while the lock is held: the aggregator's warnings are logged after it is released. A log
handler that exports synchronously into this pipeline (an OTel ``LoggingHandler`` with a
``SimpleLogRecordProcessor`` and our log exporter) would otherwise re-enter the lock and hang; records that
re-enter from the thread holding the lock (any library logging inside it) are dropped and counted
(``reentrant_dropped``) instead.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from otel_wandb import records as r
from otel_wandb.config import (
    ALERTS_ENABLED,
    WANDB_EXPORT_DASHBOARD_PORT,
    WANDB_EXPORT_PRICING,
    AlertSettings,
    ConfigError,
    ExportConfig,
)
from otel_wandb.core import Aggregator, CoreConfig, IntervalResult, Table, log_warnings
from otel_wandb.pricing import PriceList
from otel_wandb.sink import RunHistory, WandbSink

logger = logging.getLogger(__name__)

Listener = Callable[[IntervalResult], None]
_R = TypeVar("_R", r.SpanRecord, r.MetricPoint, r.LogRecord)


class Sink(Protocol):
    """Where intervals go: ``WandbSink`` (tests hand in recorders). An optional ``start()`` is called on the
    flusher thread when the first record arrives (False: exports fail from then on). A live dashboard
    (``WANDB_EXPORT_DASHBOARD_PORT``, the bridge's) reads it as a ``report.LiveRun``: ``remember()``, ``identity()``."""

    def log(self, row: Mapping[str, float], tables: Mapping[str, Table]) -> bool: ...

    def finish(self, timeout: float) -> bool: ...

    def remember(self) -> RunHistory: ...

    def identity(self) -> dict[str, Any]: ...


class Pipeline:
    def __init__(
        self,
        sink: Sink | None = None,
        interval_s: float = 60.0,
        *,
        core_config: CoreConfig | None = None,
        clock: Callable[[], int] = time.time_ns,
        start_thread: bool = True,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.sink = sink
        self.interval_s = float(interval_s)
        self._clock = clock
        now = clock()
        self._agg = Aggregator(core_config, start_ns=now, process_start_ns=now)
        self._lock = threading.Lock()  # guards the aggregator (cheap add_*)
        self._local = threading.local()  # .busy: this thread holds _lock (re-entry from logging is dropped)
        self._start_sink = threading.Event()  # the first record arrived: the flusher starts the sink
        self._sink_started = False
        self.reentrant_dropped = 0
        self._flush_lock = threading.Lock()  # serializes flush -> sink -> listeners
        self._listeners: list[Listener] = []
        self._exit_hooks: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._requested = self._completed = 0
        self._completed_ok = True
        self._closed = False
        self._refs = 0
        self._added = 0
        self._atexit_registered = False
        self.intervals = 0
        self.log_calls = 0
        self.last_export_ok = True
        self.cpu_export_s = 0.0  # CPU seconds in the SDK exporters' export(): conversion + aggregation
        self.cpu_flush_s = 0.0  # CPU seconds spent closing intervals and in sink.log (flusher thread)
        self.dashboard: Any = None  # the live dashboard this process serves (WANDB_EXPORT_DASHBOARD_PORT), if any
        self._thread: threading.Thread | None = None
        if start_thread:
            self._thread = threading.Thread(target=self._run, name="wandb-export-flusher", daemon=True)
            self._thread.start()

    # -- input (any thread) --------------------------------------------------------------------------------
    # Each add_* returns how many of the records were rejected as invalid (counted in the run by reason, the rest
    # kept: see otel_wandb.core._validate), or None when the pipeline is closed and took nothing.
    def add_spans(self, spans: Iterable[r.SpanRecord]) -> int | None:
        return self._add(Aggregator.add_spans, spans)

    def add_metrics(self, points: Iterable[r.MetricPoint]) -> int | None:
        return self._add(Aggregator.add_metrics, points)

    def add_logs(self, logs: Iterable[r.LogRecord]) -> int | None:
        return self._add(Aggregator.add_logs, logs)

    def add_rejected(self, signal: str, reason: str, n: int) -> None:
        """Count ``n`` records an adapter could not turn into records (the bridge's decoder, the SDK conversion)."""
        if n <= 0 or getattr(self._local, "busy", False):
            return
        with self._lock:
            if not self._closed:
                self._agg.reject(signal, reason, n)

    def _add(self, fn: Callable[[Aggregator, Iterable[_R]], int], items: Iterable[_R]) -> int | None:
        local = self._local
        if getattr(local, "busy", False):  # logging from inside our own locked section: never deadlock
            self.reentrant_dropped += 1
            return 0
        with self._lock:
            if self._closed:
                return None
            local.busy = True
            try:
                rejected = fn(self._agg, items)
            finally:
                local.busy = False
            self._added += 1
            warnings = self._agg.take_warnings() if self._agg.warnings else None
        if warnings:
            log_warnings(warnings)
        if not self._sink_started:
            self._start_sink.set()
            self._wake.set()
        return rejected

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_exit_hook(self, hook: Callable[[], None]) -> None:
        """Called at interpreter exit before the final flush (the SDK adapters flush the global providers)."""
        if hook not in self._exit_hooks:
            self._exit_hooks.append(hook)

    # -- exporter reference counting: the last detach shuts the pipeline down ------------------------------
    def attach(self) -> None:
        with self._lock:
            self._refs += 1

    def detach(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._refs -= 1
            last = self._refs <= 0
        if last:
            self.shutdown(timeout)

    # -- flushing: every sink call happens on the flusher thread (wandb.init never on a caller's thread) -----
    def _run(self) -> None:
        next_flush = time.monotonic() + self.interval_s
        while True:
            self._wake.wait(max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            if self._start_sink.is_set() and not self._sink_started:
                self._begin_sink()
            with self._cond:
                requested = self._requested
                pending = requested > self._completed
                if self._stop.is_set() and not pending:
                    return  # shut down: the last interval was flushed on request
            if not pending and time.monotonic() < next_flush:
                continue  # woken to start the sink only
            next_flush = time.monotonic() + self.interval_s
            try:
                ok = self.flush_once(tables=True if pending else None)  # asked for (force_flush, shutdown): all of it
            except Exception:  # the flusher must survive anything
                logger.exception("W&B export interval failed")
                ok = False
            with self._cond:
                self._completed, self._completed_ok = requested, ok
                self._cond.notify_all()
            if self._stop.is_set():
                return

    def _begin_sink(self) -> None:
        """Start the sink (``wandb.init``) now, on this flusher thread, rather than at the first interval."""
        self._sink_started = True
        start = getattr(self.sink, "start", None)
        if start is None:
            return
        try:
            if not start():
                self.last_export_ok = False  # export() returns FAILURE from now on
        except Exception:
            logger.exception("W&B sink start failed")
            self.last_export_ok = False

    def flush_once(self, tables: bool | None = True) -> bool:
        """Close the current interval: aggregate, at most one ``sink.log``, then the listeners. ``tables``: with
        the tables (True), or when they are due (None: ``CoreConfig.tables_interval_s``)."""
        with self._flush_lock:
            t0 = time.thread_time()
            with self._lock:
                had_data = self._added > 0
                self._added = 0
                self._local.busy = True
                try:
                    result = self._agg.flush(self._clock(), tables)
                finally:
                    self._local.busy = False
                warnings = self._agg.take_warnings()
            log_warnings(warnings)
            self.intervals += 1
            ok = True
            if self.sink is not None and (had_data or result.tables):  # tables held back from quieter intervals
                ok = bool(self.sink.log(result.row, result.tables))
                self.log_calls += 1
                self.last_export_ok = ok
                if ok and not self._atexit_registered:
                    # registered after wandb.init, so it runs before wandb's own atexit teardown
                    self._atexit_registered = True
                    atexit.register(self._atexit)
            self.cpu_flush_s += time.thread_time() - t0
            for listener in list(self._listeners):
                try:
                    listener(result)
                except Exception:
                    logger.exception("W&B export listener %r failed", listener)
            return ok

    def _flush_via_thread(self, timeout: float) -> bool:
        """Ask the flusher for an interval that starts after this call; wait at most ``timeout`` seconds."""
        thread = self._thread
        if thread is None or thread is threading.current_thread() or not thread.is_alive():
            return self.flush_once()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            self._requested += 1
            mine = self._requested
            self._wake.set()
            while self._completed < mine:
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning("W&B export flush did not complete within %.1f s", timeout)
                    return False
                self._cond.wait(left)
            return self._completed_ok

    def force_flush(self, timeout: float = 30.0) -> bool:
        if self._closed:
            return True
        return self._flush_via_thread(timeout)

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Idempotent: refuse input, flush the last interval, stop the flusher, finish the sink -- within
        ``timeout`` seconds in total (a stuck sink is left behind on its daemon thread)."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        deadline = time.monotonic() + timeout
        if self.dashboard is not None:
            self.dashboard.stop(min(1.0, timeout / 10))
        ok = self._flush_via_thread(timeout)  # input is refused already: this is the last interval
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self.sink is not None:
            ok = self.sink.finish(max(0.1, deadline - time.monotonic())) and ok
        return ok

    @property
    def closed(self) -> bool:
        return self._closed

    def _atexit(self) -> None:
        for hook in list(self._exit_hooks):
            try:
                hook()
            except Exception:
                logger.debug("exit hook failed", exc_info=True)
        self.shutdown()

    # -- process-wide instance -----------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, sink: Sink | None = None) -> Pipeline:
        """The pipeline the environment describes (``otel_wandb.config``): its W&B sink and, when the ``alerts``
        extra is installed and ``ALERTS_ENABLED`` is not false, its alerts."""
        cfg = ExportConfig.from_env(env)
        core = CoreConfig(
            max_series=cfg.max_series,
            max_keys=cfg.max_keys,
            pricing=PriceList.load(cfg.pricing_path, variable=WANDB_EXPORT_PRICING),
            request_source=cfg.request_source,
            tables_interval_s=cfg.tables_interval_s,
            max_error_rows=cfg.error_rows,
        )
        if sink is None:
            sink = WandbSink(
                finish_timeout=cfg.finish_timeout_s,
                env=env,
                config={"export_interval_s": cfg.interval_s, "pid": os.getpid()},
            )
        pipeline = cls(sink, cfg.interval_s, core_config=core)
        _install_alerts(pipeline, env)
        if cfg.dashboard_port is not None:
            _serve_dashboard(pipeline, sink, cfg, env)
        return pipeline

    @classmethod
    def shared(cls) -> Pipeline:
        global _shared, _shared_pid
        with _shared_lock:
            if _shared is None or _shared_pid != os.getpid() or _shared.closed:
                _shared = cls.from_env()
                _shared_pid = os.getpid()
            return _shared

    @classmethod
    def reset_shared(cls) -> None:
        """Tests: forget the process-wide pipeline (after shutting it down)."""
        global _shared
        with _shared_lock:
            _shared = None


_shared: Pipeline | None = None
_shared_pid = 0
_shared_lock = threading.Lock()


def _install_alerts(pipeline: Pipeline, env: Mapping[str, str] | None) -> None:
    """Alerts are the optional extra ``alerts`` (rules in YAML, webhooks): imported here, lazily, so that the core
    install works without them."""
    settings = AlertSettings.from_env(env)
    if not settings.enabled:
        return
    try:
        from otel_wandb.alerts import install  # lazy: the optional extra `alerts`
    except ImportError as exc:
        if settings.enabled_explicitly:
            raise ConfigError(
                f"{ALERTS_ENABLED} is true but the alerts extra is not installed "
                f"(pip install 'otel-wandb[alerts]'): {exc}"
            ) from None
        logger.info("alerts are off: the alerts extra is not installed (pip install 'otel-wandb[alerts]')")
        return
    install(pipeline, env=env)


def _serve_dashboard(pipeline: Pipeline, sink: Sink, cfg: ExportConfig, env: Mapping[str, str] | None) -> None:
    """The live dashboard of this process's run (opt-in, ``WANDB_EXPORT_DASHBOARD_PORT``). Never fatal: a port that
    is taken costs the page, not the telemetry. One process only: with several pre-forked workers each holds its own
    run, and a page of one of them would be read as the service's."""
    workers = AlertSettings.from_env(env).web_concurrency or 1  # the worker count the server hook exports
    if workers > 1:
        logger.warning(
            "%s is ignored with %d workers (each has its own run): serve the dashboard from the W&B bridge "
            "(collector topology) instead",
            WANDB_EXPORT_DASHBOARD_PORT,
            workers,
        )
        return
    try:
        from otel_wandb.report import DashboardServer  # lazy: the report's HTML is needed only when asked for

        pipeline.dashboard = DashboardServer(
            sink, cfg.dashboard_host, cfg.dashboard_port or 0, pipeline.interval_s
        ).start()
    except (OSError, ImportError) as exc:
        logger.warning(
            "the live dashboard is off: cannot serve it on %s:%s (%s): %s",
            cfg.dashboard_host,
            cfg.dashboard_port,
            WANDB_EXPORT_DASHBOARD_PORT,
            exc,
        )
        return
    logger.info("live dashboard at %s (read-only)", pipeline.dashboard.url)
