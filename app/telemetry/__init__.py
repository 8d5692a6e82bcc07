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

Defaults we set (app/telemetry/distro.py, shared with ``opentelemetry-instrument``; an explicit value wins):
``OTEL_SEMCONV_STABILITY_OPT_IN=http`` (stable ``http.server.request.duration`` in seconds), base2 exponential
histograms (``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``; applied to every reader through a View),
Flask excluded URLs ``/healthz,/readyz`` (``OTEL_PYTHON_FLASK_EXCLUDED_URLS``, else ``OTEL_PYTHON_EXCLUDED_URLS``).
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (flask, sqlalchemy, httpx, httpx2, openai, logging, ``*``) is honoured.
Values the SDK would only warn about (sampler, sampler ratio, OTEL_BSP_*/OTEL_BLRP_*/interval/timeout numbers, OTLP
protocol, AI_DIARY_FAST_OTLP) raise ConfigError naming the variable (app/config.py). Only batch
processors and periodic readers: nothing exports on the request thread.

``AI_DIARY_GIL_SWITCH_INTERVAL_MS`` (opt-in, e.g. 0.5) lowers the interpreter's GIL switch interval when we own the
providers: batch exporter threads otherwise make request threads wait up to 5 ms after an I/O (see bench/).

Privacy (app/telemetry/_privacy.py): no header capture; GenAI prompt/completion capture is off and its variable
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is removed unless ``AI_DIARY_CAPTURE_GENAI_CONTENT=true``
(then it defaults to ``span_only``); every span exporter is wrapped in the privacy filter, every log record passes
it before the batch processors. Under ``opentelemetry-instrument`` the existing providers get the same filter
(app/telemetry/_adopt.py: each exporting span processor's exporter is wrapped, the privacy log processor goes
first); if that is impossible, an ERROR is logged and those providers are shut down (nothing unfiltered leaves).

``ai_call_context(feature, user_pseudo_id)`` tags spans started inside it (the GenAI span and the httpx2 client span
of each attempt) with ``app.feature`` and ``enduser.pseudo.id``. ``init_worker(worker_id)`` is for gunicorn
``post_fork``; ``shutdown(timeout)`` flushes and stops everything on background threads and returns within the
timeout (False if an exporter was still busy: what it held is then dropped at exit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "ATTR_FEATURE",
    "ATTR_PSEUDO_ID",
    "ATTR_WORKER",
    "State",
    "ai_call_context",
    "configure",
    "current_ai_context",
    "exception_attributes",
    "init_app",
    "init_worker",
    "shutdown",
    "state",
]

if TYPE_CHECKING:
    from app.telemetry._providers import exception_attributes
    from app.telemetry._setup import (
        ATTR_FEATURE,
        ATTR_PSEUDO_ID,
        ATTR_WORKER,
        State,
        ai_call_context,
        configure,
        current_ai_context,
        init_app,
        init_worker,
        shutdown,
        state,
    )

_HOME = {"exception_attributes": "app.telemetry._providers"}


def __getattr__(name: str) -> Any:
    """Lazy: ``app.telemetry.logjson`` and ``app.telemetry.defaults`` (stdlib only) are imported by the gunicorn
    master, which must not load the OpenTelemetry SDK; the rest loads it on first use."""
    if name not in __all__:
        raise AttributeError(f"module 'app.telemetry' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOME.get(name, "app.telemetry._setup")), name)
