"""Alerts: rules from ``alerts.yaml`` -> pure evaluator over each interval's Signals -> W&B + Slack/email/SMS.

``install(pipeline, sink=None)`` reads the rules and channel env vars (errors name the file/rule/field or the
variable), adds a listener to the pipeline and returns the :class:`AlertManager`. The listener runs on the pipeline's
flusher thread, evaluates in microseconds, saves the small state file and hands events to the dispatcher's channel
workers; it never blocks on the network and never raises. Alerts need every request in one place: inside one of
several gunicorn workers (see :func:`sibling_workers`) each worker would see only its share, so ``install`` turns
alerting off there with one warning pointing at the bridge, unless ``ALERTS_ENABLED=true``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from otel_wandb.alerts._channels import WandbChannel, channels_from_settings
from otel_wandb.alerts._dispatcher import Dispatcher
from otel_wandb.alerts._evaluator import AlertEvent, Evaluator
from otel_wandb.alerts._rules import AlertsConfig, AlertsConfigError, load_config
from otel_wandb.alerts._state import StateStore
from otel_wandb.config import ALERTS_ENABLED, AlertSettings, ChannelSettings, ConfigError

__all__ = [
    "AlertEvent",
    "AlertManager",
    "AlertsConfig",
    "AlertsConfigError",
    "ConfigError",
    "Evaluator",
    "build",
    "install",
    "load_config",
    "sibling_workers",
]

logger = logging.getLogger(__name__)

GUNICORN_CONF_DEFAULT_WORKERS = 2  # the ai-diary service's gunicorn.conf.py default


class AlertManager:
    """Listener for ``IntervalResult`` (or bare ``Signals``): evaluate, persist state, dispatch."""

    def __init__(
        self,
        config: AlertsConfig,
        dispatcher: Dispatcher,
        *,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.store = store or StateStore(None)
        self.clock = clock
        self.evaluator = Evaluator(config, self.store.load())
        self._lock = threading.Lock()
        self.events: list[AlertEvent] = []  # the most recent events (bounded), for the demo and tests

    def __call__(self, result: Any) -> list[AlertEvent]:
        return self.on_interval(result)

    def on_interval(self, result: Any) -> list[AlertEvent]:
        signals = getattr(result, "signals", result)
        if signals is None:
            return []
        try:
            with self._lock:
                events = self.evaluator.evaluate(signals, self.clock())
                self.store.save(self.evaluator.snapshot())
                self.events = (self.events + events)[-100:]
        except Exception:  # telemetry must never hurt the app
            logger.exception("alert evaluation failed; interval skipped")
            return []
        for event in events:
            logger.info("alert %s: %s", event.kind, event.text)
            targets = (("wandb",) if self.config.wandb else ()) + tuple(event.channels)
            self.dispatcher.submit(event, targets)
        return events

    def shutdown(self, timeout: float = 5.0) -> bool:
        return self.dispatcher.shutdown(timeout)


def build(
    sink: Any = None,
    *,
    config: AlertsConfig | None = None,
    config_path: str | None = None,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
    state_path: str | os.PathLike[str] | bool | None = True,
    backoff: float | None = None,
) -> AlertManager:
    """An :class:`AlertManager` from the rules file and env vars (``state_path=True``: ``ALERTS_STATE_FILE``)."""
    settings = AlertSettings.from_env(env)
    config = config or load_config(config_path, env)
    channels: dict[str, Any] = dict(channels_from_settings(ChannelSettings.from_env(env)))
    if config.wandb and sink is not None:
        channels["wandb"] = WandbChannel(sink)
    used = {c for r in config.enabled_rules for c in r.channels}
    unconfigured = (used | ({"wandb"} if config.wandb else set())) - set(channels)
    dispatcher = Dispatcher(
        {k: v for k, v in channels.items() if k in used or k == "wandb"},
        retries=settings.retries,
        backoff=backoff if backoff is not None else settings.backoff_s,
        queue_size=settings.queue_size,
        unconfigured=unconfigured,
    )
    path = settings.state_file if state_path is True else (state_path or None)
    manager = AlertManager(config, dispatcher, store=StateStore(path), clock=clock)
    logger.info(
        "alerts: %d rule(s) (%s), time zone %s, state file %s",
        len(config.enabled_rules),
        ", ".join(r.name for r in config.enabled_rules),
        config.timezone,
        path or "none (set ALERTS_STATE_FILE or WANDB_DIR to keep the day's AI cost across restarts)",
    )
    return manager


def sibling_workers(settings: AlertSettings) -> int:
    """How many gunicorn workers serve this app when this process is one of them, else 0.

    The signal: ``AI_DIARY_WORKER_ID``, which only gunicorn.conf.py's ``post_fork`` sets (the W&B bridge, the
    demo's tools and tests never have it), with the count from ``WEB_CONCURRENCY``, which ``post_fork`` sets to
    the server's real worker count (a ``--workers`` flag included); unset, gunicorn.conf.py's default of 2.
    """
    if not settings.worker_id:
        return 0
    return settings.web_concurrency or GUNICORN_CONF_DEFAULT_WORKERS


def install(pipeline: Any, sink: Any = None, **kwargs: Any) -> AlertManager | None:
    """Attach alerting to ``pipeline`` (``add_listener``); ``ALERTS_ENABLED=false`` turns it off (returns None).

    In one of several gunicorn workers (:func:`sibling_workers` > 1) alerting is off unless ``ALERTS_ENABLED`` is
    explicitly true (then on, with a warning): each worker would evaluate only its share of the traffic (up to one
    alert per worker per breach, per-worker daily cost) and all would write the same state file. Evaluate alerts in
    the W&B bridge instead (the collector sends it every worker's telemetry).

    ``sink`` defaults to ``pipeline.sink``. Keyword arguments go to :func:`build` (config, config_path, env, clock,
    state_path, backoff). Raises ConfigError (AlertsConfigError for the rules file) on invalid configuration.
    """
    settings = AlertSettings.from_env(kwargs.get("env"))
    if not settings.enabled:
        logger.info("alerts disabled by %s", ALERTS_ENABLED)
        return None
    workers = sibling_workers(settings)
    if workers > 1:
        explicit = settings.enabled_explicitly
        logger.warning(
            "alerts %s in gunicorn worker %s of %d: each worker sees only its share of the requests "
            "(one alert per worker per breach, per-worker daily AI cost, one shared state file). "
            "Evaluate alerts in the W&B bridge (OTEL_*_EXPORTER=otlp to the collector, as in compose)%s",
            "ON (ALERTS_ENABLED=true)" if explicit else "OFF",
            settings.worker_id,
            workers,
            "" if explicit else ", or set ALERTS_ENABLED=true to evaluate per worker anyway",
        )
        if not explicit:
            return None
    if sink is None:
        sink = getattr(pipeline, "sink", None)
    manager = build(sink, **kwargs)
    if pipeline is not None:
        pipeline.add_listener(manager.on_interval)
        pipeline.alerts = manager  # the demo and tests reach the manager (events, dispatcher) here
    atexit.register(manager.shutdown, 2.0)
    return manager
