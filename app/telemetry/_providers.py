"""Provider construction and instrumentation for app/telemetry/ (the module docstring there is the contract).

Exporter selection reuses the SDK configurator's helpers (``opentelemetry.sdk._configuration``): the same names,
entry-point groups and OTLP protocol resolution as ``opentelemetry-instrument``.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any, Literal

from opentelemetry.sdk._configuration import _get_exporter_entry_point, _import_exporters, _import_sampler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import _KNOWN_SAMPLERS

from app.config import EXPORTER_VARIABLE, ConfigError, TelemetrySettings
from app.telemetry._otlp import FAST_SPAN_EXPORTERS
from app.telemetry._privacy import Policy, PrivacyLogProcessor, PrivacySpanExporter, redact_error
from app.telemetry.defaults import BASE2, EXP_HISTOGRAM_MAX_SIZE

logger = logging.getLogger(__name__)
Signal = Literal["traces", "metrics", "logs"]


def exporter_names(signal: Signal, settings: TelemetrySettings) -> list[str]:
    """Entry-point names for a signal (``TelemetrySettings.exporters``: unset means otlp when an OTLP endpoint is
    configured, else none)."""
    raw = (settings.exporters or {}).get(signal, "none")
    names = [n.strip() for n in raw.split(",") if n.strip() and n.strip().lower() != "none"]
    try:
        return [_get_exporter_entry_point(n, signal) for n in names]
    except RuntimeError as exc:
        raise ConfigError(f"{EXPORTER_VARIABLE[signal]}: {exc}") from None


def load_exporters(signal: Signal, settings: TelemetrySettings) -> list[Any]:
    names = exporter_names(signal, settings)
    if not names:
        return []
    args: dict[Signal, Sequence[str]] = {"traces": (), "metrics": (), "logs": ()}
    args[signal] = names
    try:
        found = _import_exporters(args["traces"], args["metrics"], args["logs"])
    except RuntimeError as exc:
        raise ConfigError(f"{EXPORTER_VARIABLE[signal]}: {exc}") from None
    classes: dict[str, type[object]] = {**found[("traces", "metrics", "logs").index(signal)]}
    if signal == "traces" and settings.fast_otlp:
        classes.update({name: fast for name, fast in FAST_SPAN_EXPORTERS.items() if name in classes})
    out = []
    for name, cls in classes.items():
        try:
            out.append(cls())
        except Exception as exc:
            raise ConfigError(f"{EXPORTER_VARIABLE[signal]}: exporter {name!r} could not start: {exc}") from exc
    return out


def is_disabled(name: str, disabled: frozenset[str]) -> bool:
    """``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` names the instrumentation, or holds ``*``."""
    return "*" in disabled or name in disabled


def resource(static: dict[str, Any]) -> Resource:
    """Our defaults, overridden by OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME."""
    attrs = dict(static)
    attrs.update(OTELResourceDetector().detect().attributes)
    return Resource.create(attrs)


def histogram_views(settings: TelemetrySettings) -> list[View]:
    if settings.histogram == BASE2:
        # every reader (OTLP to the collector and bridge too) gets the finer layout the W&B p95 needs
        return [
            View(
                instrument_type=Histogram,
                aggregation=ExponentialBucketHistogramAggregation(max_size=EXP_HISTOGRAM_MAX_SIZE),
            )
        ]
    return []


def build_providers(
    settings: TelemetrySettings,
    static: dict[str, Any],
    policy: Policy,
    span_exporters: Sequence[Any],
    metric_readers: Sequence[Any],
    log_exporters: Sequence[Any],
    span_processors: Sequence[Any],
) -> tuple[TracerProvider, MeterProvider, LoggerProvider]:
    res = resource(static)
    views = histogram_views(settings)
    # the SDK's own samplers come from OTEL_TRACES_SAMPLER[_ARG] inside TracerProvider; a plug-in one (entry point
    # of opentelemetry_traces_sampler) the way the SDK configurator loads it
    name = settings.sampler
    tp = TracerProvider(resource=res, sampler=_import_sampler(name) if name and name not in _KNOWN_SAMPLERS else None)
    for proc in span_processors:
        tp.add_span_processor(proc)
    for exp in [*load_exporters("traces", settings), *span_exporters]:
        tp.add_span_processor(BatchSpanProcessor(PrivacySpanExporter(exp, policy)))
    readers: list[MetricReader] = list(metric_readers)
    for exp in load_exporters("metrics", settings):
        readers.append(exp if isinstance(exp, MetricReader) else PeriodicExportingMetricReader(exp))
    mp = MeterProvider(resource=res, metric_readers=readers, views=views)
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(PrivacyLogProcessor(policy))
    for exp in [*load_exporters("logs", settings), *log_exporters]:
        lp.add_log_record_processor(BatchLogRecordProcessor(exp))
    return tp, mp, lp


def _providers(state: Any) -> dict[str, Any]:
    return {"tracer_provider": state.tracer_provider, "meter_provider": state.meter_provider}


def instrument_globals(state: Any) -> list[Any]:
    """httpx, httpx2 (the openai 3.x SDK's transport: one client span per attempt) and OpenAI (process-wide
    patches), unless disabled (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS) or something instrumented them already."""
    done = []
    for name, modname, clsname, extra in (
        ("httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor", {}),
        ("httpx2", "opentelemetry.instrumentation.httpx", "HTTPX2ClientInstrumentor", {}),
        (
            "openai",
            "opentelemetry.instrumentation.genai.openai",
            "OpenAIInstrumentor",
            {"logger_provider": state.logger_provider},
        ),
    ):
        if is_disabled(name, state.disabled_instrumentations):
            continue
        try:
            mod = __import__(modname, fromlist=[clsname])
            inst = getattr(mod, clsname)()
            if inst.is_instrumented_by_opentelemetry:
                continue
            inst.instrument(**_providers(state), **extra)
            if inst.is_instrumented_by_opentelemetry:  # False after a dependency conflict (logged by the SDK)
                done.append(inst)
        except ImportError as exc:
            logger.warning("telemetry: %s unavailable (%s); install it for %s spans", modname, exc, clsname)
        except Exception:  # noqa: BLE001
            logger.exception("telemetry: %s failed", clsname)
    return done


def instrument_app(state: Any, app: Any, excluded_urls: str) -> None:
    """Flask (``excluded_urls``: comma-separated regexes) and the app's engine, unless disabled."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    disabled = state.disabled_instrumentations
    if not is_disabled("flask", disabled):
        if not FlaskInstrumentor().is_instrumented_by_opentelemetry and not getattr(
            app, "_is_instrumented_by_opentelemetry", False
        ):
            FlaskInstrumentor.instrument_app(  # type: ignore[no-untyped-call]  # unannotated upstream
                app, excluded_urls=excluded_urls, enable_commenter=False, **_providers(state)
            )
            state.apps.add(app)
        _record_unhandled_exceptions(app)
    engine = app.extensions.get("db_engine")
    if engine is not None and not is_disabled("sqlalchemy", disabled):
        instrument_engine(state, engine)


def _record_unhandled_exceptions(app: Any) -> None:
    """A catch-all ``errorhandler(Exception)`` hides the exception from the Flask instrumentation (it only sees
    exceptions that reach teardown): wrap that handler so the request span still gets the exception event."""
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    spec = app.error_handler_spec.get(None, {}).get(None, {})
    handler = spec.get(Exception)
    if handler is None or getattr(handler, "_otel_wrapped", False):
        return

    def recording_handler(exc: BaseException) -> Any:
        try:
            span = trace.get_current_span()
            if span.is_recording():
                span.record_exception(exc, attributes=exception_attributes(exc))
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        except Exception:  # noqa: BLE001
            logger.debug("could not record the exception", exc_info=True)
        return handler(exc)

    recording_handler._otel_wrapped = True  # type: ignore[attr-defined]  # a marker on a function: mypy has no type for it
    spec[Exception] = recording_handler


def exception_attributes(exc: BaseException) -> dict[str, str]:
    """What we record for an exception: the content-free normalized message (the W&B error tables' normalizer)
    and the frames only (``format_tb``: file, line, function, source line; no messages, no locals)."""
    return {
        "exception.message": redact_error(str(exc)) or type(exc).__name__,
        "exception.stacktrace": "".join(traceback.format_tb(exc.__traceback__)),
    }


def instrument_engine(state: Any, engine: Any) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.instrumentation.sqlalchemy.version import __version__
    from opentelemetry.trace import get_tracer

    if SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry or engine in state.engines:
        return  # auto-instrumentation wraps create_engine: this engine has its EngineTracer already
    tracer = get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__, state.tracer_provider)
    if engine.dialect.name == "sqlite":
        # SQLite has no server connections worth counting, and the pool checkout/checkin pair costs four counter
        # adds per request (measured in bench/bench_telemetry.py): no db.client.connections.usage for it
        from opentelemetry.metrics import NoOpUpDownCounter

        usage: Any = NoOpUpDownCounter("db.client.connections.usage")
    else:
        meter = state.meter_provider.get_meter("opentelemetry.instrumentation.sqlalchemy", __version__)
        usage = meter.create_up_down_counter(
            "db.client.connections.usage",
            unit="connections",
            description="The number of connections that are currently in state described by the state attribute.",
        )
    EngineTracer(tracer, engine, usage, enable_commenter=False)  # type: ignore[no-untyped-call]  # unannotated upstream
    state.engines.add(engine)


def uninstrument(state: Any) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    for app in list(state.apps):
        try:
            FlaskInstrumentor.uninstrument_app(app)  # type: ignore[no-untyped-call]  # unannotated upstream
        except Exception:  # noqa: BLE001
            logger.debug("uninstrument_app failed", exc_info=True)
    if len(state.engines):
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

        EngineTracer.remove_all_event_listeners()  # type: ignore[no-untyped-call]  # unannotated upstream
    for inst in state.global_instrumentors:
        try:
            inst.uninstrument()
        except Exception:  # noqa: BLE001
            logger.debug("uninstrument failed", exc_info=True)


def _shutdown_one(provider: Any, timeout: float) -> None:
    try:
        if "timeout_millis" in inspect.signature(provider.shutdown).parameters:
            provider.shutdown(timeout_millis=timeout * 1000)  # MeterProvider: its readers' final collect + export
        else:
            provider.shutdown()  # batch processors drain their queues, then shut their exporters down
    except Exception:  # noqa: BLE001
        logger.debug("provider shutdown failed", exc_info=True)


def stop_providers(providers: Sequence[Any], timeout: float) -> bool:
    """Shuts the providers down in parallel on daemon threads and waits for them until one deadline; True if all
    finished. Shutting down (not force_flush first) is what flushes: the batch workers export what they hold and
    the periodic readers collect a last time -- with the exporters' own timeouts and retries (OTLP: 10 s each),
    which is why none of it runs on the caller's thread. The providers' atexit hooks are dropped: a shutdown still
    running when the process exits must not be started again, unbounded, by the interpreter."""
    deadline = time.monotonic() + max(0.0, timeout)
    threads = []
    for p in providers:
        if p is None:
            continue
        for attr in ("_atexit_handler", "_at_exit_handler"):  # TracerProvider/MeterProvider, LoggerProvider
            handler = getattr(p, attr, None)
            if handler is not None:
                atexit.unregister(handler)
        t = threading.Thread(target=_shutdown_one, args=(p, timeout), name="otel-shutdown", daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)
