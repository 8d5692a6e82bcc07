"""The one place that wires OpenTelemetry into the service: providers, instrumentations, logging.

``init_app(app)`` (called at the end of ``create_app``) configures the process once and instruments the app.

Providers (``configure()``), once per process, unless
- ``OTEL_SDK_DISABLED=true``: no providers, no instrumentation; only JSON logging on stdout, or
- an SDK TracerProvider is already the global one (the process runs under ``opentelemetry-instrument``): then the
  existing providers are used and only what is not instrumented yet gets instrumented (no double spans).

Configuration is the standard ``OTEL_*`` variables first: ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``
(win over our defaults: service.name ``ai-diary``, service.version ``APP_VERSION``, deployment.environment(.name)
``DEPLOYMENT_ENVIRONMENT``, service.instance.id, process.pid), ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER`` (``otlp``,
``console``, ``none`` and any entry point of the ``opentelemetry_*_exporter`` groups, e.g. ``wandb``; resolved with
the SDK configurator's own helpers, so ``OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL`` picks grpc/http/protobuf),
``OTEL_EXPORTER_OTLP_*`` endpoint/headers/timeouts (read by the exporters), ``OTEL_TRACES_SAMPLER[_ARG]``,
``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_BSP_*`` and ``OTEL_BLRP_*`` (read by the batch processors).

Default exporters when an ``OTEL_*_EXPORTER`` variable is unset: ``otlp`` if ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
the signal's own endpoint variable) is set, else ``none`` — a bare process never tries to reach localhost:4317.

Defaults we set (exporters/distro.py, shared with ``opentelemetry-instrument``; an explicit value wins):
``OTEL_SEMCONV_STABILITY_OPT_IN=http`` (stable ``http.server.request.duration`` in seconds), base2 exponential
histograms (``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``; applied to every reader through a View),
Flask excluded URLs ``/healthz,/readyz`` (``OTEL_PYTHON_FLASK_EXCLUDED_URLS``, else ``OTEL_PYTHON_EXCLUDED_URLS``).
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (flask, sqlalchemy, httpx, httpx2, openai, logging, ``*``) is honoured.
Values the SDK would only warn about (sampler, sampler ratio, OTEL_BSP_*/OTEL_BLRP_*/interval/timeout numbers, OTLP
protocol, AI_DIARY_FAST_OTLP) raise TelemetryConfigError naming the variable (app/telemetry_env.py). Only batch
processors and periodic readers: nothing exports on the request thread.

``AI_DIARY_GIL_SWITCH_INTERVAL_MS`` (opt-in, e.g. 0.5) lowers the interpreter's GIL switch interval when we own the
providers: batch exporter threads otherwise make request threads wait up to 5 ms after an I/O (see bench/).

Privacy (app/telemetry_privacy.py): no header capture; GenAI prompt/completion capture is off and its variable
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is removed unless ``AI_DIARY_CAPTURE_GENAI_CONTENT=true``
(then it defaults to ``span_only``); every span exporter is wrapped in the privacy filter, every log record passes
it before the batch processors. Under ``opentelemetry-instrument`` the existing providers get the same filter
(app/telemetry_adopt.py: each exporting span processor's exporter is wrapped, the privacy log processor goes
first); if that is impossible, an ERROR is logged and those providers are shut down (nothing unfiltered leaves).

``ai_call_context(feature, user_pseudo_id)`` tags spans started inside it (the GenAI span and the httpx2 client span
of each attempt) with ``app.feature`` and ``enduser.pseudo.id``. ``init_worker(worker_id)`` is for gunicorn
``post_fork``; ``shutdown(timeout)`` flushes and stops everything on background threads and returns within the
timeout (False if an exporter was still busy: what it held is then dropped at exit).
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import socket
import sys
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk.trace import SpanProcessor

from exporters import otel_defaults
from app import telemetry_adopt, telemetry_env, telemetry_logging, telemetry_setup
from app.telemetry_env import TelemetryConfigError, truthy
from app.telemetry_privacy import Policy

logger = logging.getLogger(__name__)

ENV_CAPTURE_CONTENT = "AI_DIARY_CAPTURE_GENAI_CONTENT"
ENV_GENAI_CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_GENAI_HOOK = "OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK"
ATTR_FEATURE, ATTR_PSEUDO_ID, ATTR_WORKER = "app.feature", "enduser.pseudo.id", "app.worker.id"
__all__ = ["TelemetryConfigError", "State", "configure", "init_app", "init_worker", "shutdown", "ai_call_context"]

for _name, _value in otel_defaults.ENV_DEFAULTS.items():
    os.environ.setdefault(_name, _value)

_AI_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("ai_diary_ai_call", default=None)
_LOCK = threading.RLock()
_STATE: State | None = None
_WORKER: dict[str, Any] = {}


@dataclass
class State:
    disabled: bool
    owned: bool  # we created (and will shut down) the providers
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    policy: Policy = field(default_factory=Policy)
    global_instrumentors: list[Any] = field(default_factory=list)
    apps: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    engines: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)
    disabled_instrumentations: frozenset[str] = frozenset()  # OTEL_PYTHON_DISABLED_INSTRUMENTATIONS


class AiContextSpanProcessor(SpanProcessor):
    """Copies the ai_call_context attributes onto every span started inside it."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        attrs = _AI_CONTEXT.get()
        if attrs:
            span.set_attributes(attrs)


@contextlib.contextmanager
def ai_call_context(feature: str, user_pseudo_id: str | None) -> Iterator[dict[str, str]]:
    """Wrap each LLM call: spans inside get ``app.feature`` and ``enduser.pseudo.id`` (already pseudonymized)."""
    attrs = {ATTR_FEATURE: str(feature)}
    if user_pseudo_id:
        attrs[ATTR_PSEUDO_ID] = str(user_pseudo_id)
    token = _AI_CONTEXT.set(attrs)
    try:
        yield attrs
    finally:
        _AI_CONTEXT.reset(token)


def current_ai_context() -> dict[str, str]:
    return dict(_AI_CONTEXT.get() or {})


def _content_policy() -> Policy:
    capture = truthy(ENV_CAPTURE_CONTENT)
    if capture:
        os.environ.setdefault(ENV_GENAI_CAPTURE, "span_only")
    else:
        for name in (ENV_GENAI_CAPTURE, ENV_GENAI_HOOK):
            if os.environ.pop(name, None):
                logger.warning("%s ignored: GenAI content capture needs %s=true", name, ENV_CAPTURE_CONTENT)
    return Policy(capture_content=capture)


def _static_resource(settings: Any | None) -> dict[str, Any]:
    """The distro's resource defaults (exporters/otel_defaults.py) from the environment, else the settings."""
    names = ("APP_VERSION", "DEPLOYMENT_ENVIRONMENT")
    source = {n: str(getattr(settings, n)) for n in names if getattr(settings, n, None)}
    source.update({n: os.environ[n] for n in names if os.environ.get(n)})
    attrs: dict[str, Any] = {
        **otel_defaults.resource_defaults(source),
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        "process.pid": os.getpid(),
    }
    if _WORKER:
        attrs["service.instance.id"] = f"{socket.gethostname()}-w{_WORKER['id']}-{os.getpid()}"
        attrs[ATTR_WORKER] = _WORKER["id"]
    return attrs


def configure(*, span_exporters: Sequence[Any] = (), metric_readers: Sequence[Any] = (),
              log_exporters: Sequence[Any] = (), settings: Any | None = None,
              stdout: TextIO | None = None) -> State:
    """Sets up telemetry once per process and returns its state; later calls return the same state.

    ``span_exporters`` / ``log_exporters`` (wrapped in the privacy filter and batch processors) and
    ``metric_readers`` are added to what the environment selects: the seam tests use for in-memory doubles.
    """
    global _STATE
    with _LOCK:
        if _STATE is not None:
            return _STATE
        static = _static_resource(settings)
        telemetry_logging.install_stdout(
            str(os.environ.get("LOG_LEVEL") or getattr(settings, "LOG_LEVEL", None) or "INFO"),
            os.environ.get("OTEL_SERVICE_NAME") or static["service.name"], static["service.version"],
            static["deployment.environment.name"], stdout)
        if truthy("OTEL_SDK_DISABLED"):
            _STATE = State(disabled=True, owned=False)
            logger.info("telemetry disabled (OTEL_SDK_DISABLED=true)")
            return _STATE
        telemetry_env.validate()
        policy = _content_policy()
        switch_interval = telemetry_env.switch_interval()
        disabled = telemetry_env.disabled_instrumentations()
        from opentelemetry.sdk.trace import TracerProvider

        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider):
            state = State(disabled=False, owned=False, tracer_provider=existing,
                          meter_provider=metrics.get_meter_provider(), logger_provider=_logs.get_logger_provider(),
                          policy=policy, disabled_instrumentations=disabled)
            if not telemetry_adopt.secure(existing, state.logger_provider, policy):
                # no filter, no export: privacy is a hard invariant (stopping the providers drops what they hold)
                logger.error("telemetry: the existing providers could not be given the privacy filter; shutting "
                             "them down, serving without telemetry")
                for p in (existing, state.logger_provider):
                    with contextlib.suppress(Exception):
                        p.shutdown()
                _STATE = State(disabled=True, owned=False)
                return _STATE
            if not any(isinstance(p, AiContextSpanProcessor)
                       for p in getattr(existing._active_span_processor, "_span_processors", ())):  # noqa: SLF001
                existing.add_span_processor(AiContextSpanProcessor())
            logger.info("telemetry: providers already set (opentelemetry-instrument?); privacy filter added to "
                        "their exporters; instrumenting only")
        else:
            tp, mp, lp = telemetry_setup.build_providers(
                static, policy, span_exporters, metric_readers, log_exporters, [AiContextSpanProcessor()])
            trace.set_tracer_provider(tp)
            metrics.set_meter_provider(mp)
            _logs.set_logger_provider(lp)
            state = State(disabled=False, owned=True, tracer_provider=tp, meter_provider=mp, logger_provider=lp,
                          policy=policy, disabled_instrumentations=disabled)
            sys.setswitchinterval(switch_interval)
        if not telemetry_env.is_disabled("logging", disabled):
            telemetry_logging.install_otel_bridge(state.logger_provider)
        state.global_instrumentors = telemetry_setup.instrument_globals(state)
        _STATE = state
        return state


def init_app(app: Any) -> State:
    """Configures telemetry if needed and instruments this Flask app and its engine (app.extensions['db_engine'])."""
    settings = app.extensions.get("settings") or app.config.get("SETTINGS")
    state = configure(settings=settings)
    app.extensions["telemetry"] = state
    if state.disabled:
        return state
    try:
        telemetry_setup.instrument_app(state, app, otel_defaults.flask_excluded_urls())
    except Exception:  # noqa: BLE001 - telemetry must never stop the app
        logger.exception("telemetry: instrumenting the app failed; serving without it")
    return state


def init_worker(worker_id: int | str) -> State | None:
    """For gunicorn ``post_fork(server, worker)``: call with ``worker.age`` (or pid) before the app is loaded."""
    _WORKER["id"] = worker_id
    if _STATE is not None and _STATE.owned:
        logger.warning("telemetry was configured before fork (preload_app?): app.worker.id %s not in the resource",
                       worker_id)
        return _STATE
    return None


def state() -> State | None:
    return _STATE


def shutdown(timeout: float = 5.0) -> bool:
    """Uninstruments, then flushes and shuts the providers down on daemon threads against one deadline; returns
    within ``timeout`` (plus thread start-up), False if it did not finish (a hung or dead exporter)."""
    global _STATE
    with _LOCK:
        st, _STATE = _STATE, None
    if st is None or st.disabled:
        return True
    telemetry_setup.uninstrument(st)
    telemetry_logging.remove_otel_bridge()
    if not st.owned:
        return True
    finished = telemetry_setup.stop_providers([st.tracer_provider, st.meter_provider, st.logger_provider], timeout)
    if not finished:
        logger.warning("telemetry shutdown did not finish within %.1f s (exporter busy or endpoint unreachable); "
                       "what was not sent yet is dropped at exit", timeout)
    return finished
