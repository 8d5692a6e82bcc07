"""Process-wide telemetry state: ``configure``, ``init_app``, ``init_worker``, ``shutdown`` and the AI call context
(the contract is the package docstring, app/telemetry/__init__.py)."""

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

from app.config import TelemetrySettings
from app.telemetry import _adopt as telemetry_adopt
from app.telemetry import _logging as telemetry_logging
from app.telemetry import _providers as telemetry_setup
from app.telemetry import defaults as otel_defaults
from app.telemetry._privacy import Policy

logger = logging.getLogger(__name__)

ENV_CAPTURE_CONTENT = "AI_DIARY_CAPTURE_GENAI_CONTENT"
ENV_GENAI_CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_GENAI_HOOK = "OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK"
ATTR_FEATURE, ATTR_PSEUDO_ID, ATTR_WORKER = "app.feature", "enduser.pseudo.id", "app.worker.id"
__all__ = ["State", "ai_call_context", "configure", "init_app", "init_worker", "shutdown"]

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


def _content_policy(settings: TelemetrySettings) -> Policy:
    capture = settings.capture_genai_content
    if capture:
        os.environ.setdefault(ENV_GENAI_CAPTURE, "span_only")
    else:
        for name in (ENV_GENAI_CAPTURE, ENV_GENAI_HOOK):
            if os.environ.pop(name, None):
                logger.warning("%s ignored: GenAI content capture needs %s=true", name, ENV_CAPTURE_CONTENT)
    return Policy(capture_content=capture)


def _static_resource(settings: Any | None, env: TelemetrySettings) -> dict[str, Any]:
    """The distro's resource defaults (app/telemetry/defaults.py) from the environment, else the settings."""
    names = ("APP_VERSION", "DEPLOYMENT_ENVIRONMENT")
    source = {n: str(getattr(settings, n)) for n in names if getattr(settings, n, None)}
    source.update(
        {n: v for n, v in (("APP_VERSION", env.app_version), ("DEPLOYMENT_ENVIRONMENT", env.environment)) if v}
    )
    attrs: dict[str, Any] = {
        **otel_defaults.resource_defaults(source),
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        "process.pid": os.getpid(),
    }
    if _WORKER:
        attrs["service.instance.id"] = f"{socket.gethostname()}-w{_WORKER['id']}-{os.getpid()}"
        attrs[ATTR_WORKER] = _WORKER["id"]
    return attrs


def configure(
    *,
    span_exporters: Sequence[Any] = (),
    metric_readers: Sequence[Any] = (),
    log_exporters: Sequence[Any] = (),
    settings: Any | None = None,
    stdout: TextIO | None = None,
) -> State:
    """Sets up telemetry once per process and returns its state; later calls return the same state.

    ``span_exporters`` / ``log_exporters`` (wrapped in the privacy filter and batch processors) and
    ``metric_readers`` are added to what the environment selects: the seam tests use for in-memory doubles.
    """
    global _STATE
    with _LOCK:
        if _STATE is not None:
            return _STATE
        env = TelemetrySettings.from_env()  # validated: a value the SDK would only warn about stops the start
        static = _static_resource(settings, env)
        telemetry_logging.install_stdout(
            str(env.log_level or getattr(settings, "LOG_LEVEL", None) or "INFO"),
            env.service_name or static["service.name"],
            static["service.version"],
            static["deployment.environment.name"],
            stdout,
        )
        if env.sdk_disabled:
            _STATE = State(disabled=True, owned=False)
            logger.info("telemetry disabled (OTEL_SDK_DISABLED=true)")
            return _STATE
        policy = _content_policy(env)
        disabled = env.disabled_instrumentations
        from opentelemetry.sdk.trace import TracerProvider

        existing = trace.get_tracer_provider()
        if isinstance(existing, TracerProvider):
            state = State(
                disabled=False,
                owned=False,
                tracer_provider=existing,
                meter_provider=metrics.get_meter_provider(),
                logger_provider=_logs.get_logger_provider(),
                policy=policy,
                disabled_instrumentations=disabled,
            )
            if not telemetry_adopt.secure(existing, state.logger_provider, policy):
                # no filter, no export: privacy is a hard invariant (what the providers hold is dropped, not flushed)
                logger.error(
                    "telemetry: the existing providers could not be given the privacy filter; shutting "
                    "them down, serving without telemetry"
                )
                for p in (existing, state.logger_provider):
                    telemetry_adopt.discard(p)
                _STATE = State(disabled=True, owned=False)
                return _STATE
            if not any(
                isinstance(p, AiContextSpanProcessor)
                for p in getattr(existing._active_span_processor, "_span_processors", ())  # noqa: SLF001
            ):  # noqa: SLF001
                existing.add_span_processor(AiContextSpanProcessor())
            logger.info(
                "telemetry: providers already set (opentelemetry-instrument?); privacy filter added to "
                "their exporters; instrumenting only"
            )
        else:
            tp, mp, lp = telemetry_setup.build_providers(
                env, static, policy, span_exporters, metric_readers, log_exporters, [AiContextSpanProcessor()]
            )
            trace.set_tracer_provider(tp)
            metrics.set_meter_provider(mp)
            _logs.set_logger_provider(lp)
            state = State(
                disabled=False,
                owned=True,
                tracer_provider=tp,
                meter_provider=mp,
                logger_provider=lp,
                policy=policy,
                disabled_instrumentations=disabled,
            )
            if env.switch_interval_s:
                sys.setswitchinterval(env.switch_interval_s)
        if not env.instrumentation_disabled("logging"):
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
        logger.warning(
            "telemetry was configured before fork (preload_app?): app.worker.id %s not in the resource", worker_id
        )
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
        logger.warning(
            "telemetry shutdown did not finish within %.1f s (exporter busy or endpoint unreachable); "
            "what was not sent yet is dropped at exit",
            timeout,
        )
    return finished
