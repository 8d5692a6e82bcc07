"""Providers we did not build (``opentelemetry-instrument``): put the privacy filter into them (app/telemetry/).

The SDK configurator behind ``opentelemetry-instrument`` builds a TracerProvider with one BatchSpanProcessor per
``OTEL_TRACES_EXPORTER`` entry (``otlp``, ``console``, ``wandb``, ...) and a LoggerProvider with one
BatchLogRecordProcessor per ``OTEL_LOGS_EXPORTER`` entry. Nothing of ours would sit between them and the sinks, so:

- every span processor that exports is made to export through ``PrivacySpanExporter`` (its exporter is wrapped in
  place: BatchSpanProcessor, SimpleSpanProcessor); a span processor we cannot see into is removed from the provider
  with an ERROR (unfiltered export is never an option: privacy is a hard invariant);
- ``PrivacyLogProcessor`` becomes the FIRST log record processor (it rewrites records in place, so every exporting
  processor after it sees the clean record).

There is no public API for either (the processors are tuples inside the providers); if the SDK's internals change
shape, ``secure()`` returns False after logging an ERROR, and app/telemetry/ then refuses to instrument.

What such a processor still holds (spans ended before we were called) must not leave unfiltered either: shutting a
batch processor down FLUSHES its queue to its exporter. ``discard()`` first points every exporter it can reach at
a sink that drops everything, then shuts the processor down.
"""

from __future__ import annotations

import logging
from typing import Any

from app.telemetry._privacy import Policy, PrivacyLogProcessor, PrivacySpanExporter

logger = logging.getLogger(__name__)

# processors that only enrich spans and export nothing (matched by class name: no import of their packages)
SAFE_SPAN_PROCESSORS = frozenset({"AiContextSpanProcessor", "BaggageSpanProcessor"})


def _wrap_span_processor(proc: Any, policy: Policy) -> bool:
    """True if ``proc`` now exports through the privacy filter (or exports nothing)."""
    if type(proc).__name__ in SAFE_SPAN_PROCESSORS:
        return True
    inner = getattr(proc, "_batch_processor", None)  # BatchSpanProcessor (SDK >= 1.28)
    if inner is not None and hasattr(inner, "_exporter"):
        if not isinstance(inner._exporter, PrivacySpanExporter):  # noqa: SLF001
            inner._exporter = PrivacySpanExporter(inner._exporter, policy)  # noqa: SLF001
        return True
    if type(proc).__name__ == "SimpleSpanProcessor" and hasattr(proc, "span_exporter"):
        if not isinstance(proc.span_exporter, PrivacySpanExporter):
            proc.span_exporter = PrivacySpanExporter(proc.span_exporter, policy)
        return True
    return False


class _Drop:
    """An exporter (spans or log records) that exports nothing: where unfiltered data would otherwise go."""

    def export(self, *args: Any, **kwargs: Any) -> Any:
        return _SUCCESS

    def force_flush(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Success:  # both SpanExportResult.SUCCESS and LogRecordExportResult.SUCCESS are enum members named SUCCESS
    name = "SUCCESS"


_SUCCESS = _Success()


def _drop_exports(proc: Any) -> None:
    """Point ``proc``'s exporter (batch or simple, spans or logs) at ``_Drop``, where it can be reached."""
    inner = getattr(proc, "_batch_processor", None)
    if inner is not None and hasattr(inner, "_exporter"):
        inner._exporter = _Drop()  # noqa: SLF001
    for attr in ("span_exporter", "_exporter"):
        if hasattr(proc, attr):
            setattr(proc, attr, _Drop())


def discard(provider: Any) -> None:
    """Shut ``provider`` down WITHOUT exporting what its processors hold (see the module docstring)."""
    for multi_attr, list_attr in (
        ("_active_span_processor", "_span_processors"),
        ("_multi_log_record_processor", "_log_record_processors"),
    ):
        for proc in getattr(getattr(provider, multi_attr, None), list_attr, None) or ():
            try:
                _drop_exports(proc)
            except Exception:  # noqa: BLE001 - best effort; the shutdown below still runs
                logger.debug("could not detach the exporter of %s", type(proc).__name__, exc_info=True)
    try:
        provider.shutdown()
    except Exception:  # noqa: BLE001
        logger.debug("shutdown of %s failed", type(provider).__name__, exc_info=True)


def secure_tracer_provider(provider: Any, policy: Policy) -> bool:
    multi = getattr(provider, "_active_span_processor", None)
    procs = getattr(multi, "_span_processors", None)
    if multi is None or not isinstance(procs, tuple):
        logger.error(
            "telemetry: cannot reach the span processors of %s to add the privacy filter", type(provider).__name__
        )
        return False
    keep = []
    for proc in procs:
        if _wrap_span_processor(proc, policy):
            keep.append(proc)
        else:
            logger.error(
                "telemetry: span processor %s removed: its exporter cannot be wrapped in the privacy "
                "filter (what it held is dropped)",
                type(proc).__name__,
            )
            _drop_exports(proc)
            try:
                proc.shutdown()
            except Exception:  # noqa: BLE001 - telemetry must never stop the app
                logger.debug("shutdown of %s failed", type(proc).__name__, exc_info=True)
    lock = getattr(multi, "_lock", None)
    if lock is not None:
        with lock:
            multi._span_processors = tuple(keep)  # noqa: SLF001
    else:
        multi._span_processors = tuple(keep)  # noqa: SLF001
    return True


def secure_logger_provider(provider: Any, policy: Policy) -> bool:
    multi = getattr(provider, "_multi_log_record_processor", None)
    if multi is None:
        return True  # not an SDK LoggerProvider (no-op / proxy): nothing is exported through it
    procs = getattr(multi, "_log_record_processors", None)
    if not isinstance(procs, tuple):
        logger.error(
            "telemetry: cannot reach the log record processors of %s to add the privacy filter", type(provider).__name__
        )
        return False
    if procs and isinstance(procs[0], PrivacyLogProcessor):
        return True
    lock = getattr(multi, "_lock", None)
    new = (PrivacyLogProcessor(policy), *(p for p in procs if not isinstance(p, PrivacyLogProcessor)))
    if lock is not None:
        with lock:
            multi._log_record_processors = new  # noqa: SLF001
    else:
        multi._log_record_processors = new  # noqa: SLF001
    return True


def secure(tracer_provider: Any, logger_provider: Any, policy: Policy) -> bool:
    """Wraps what exports spans and logs in the privacy filter; False (after an ERROR) if it could not."""
    try:
        return secure_tracer_provider(tracer_provider, policy) & secure_logger_provider(logger_provider, policy)
    except Exception:  # noqa: BLE001 - telemetry must never stop the app
        logger.exception("telemetry: adding the privacy filter to the existing providers failed")
        return False
