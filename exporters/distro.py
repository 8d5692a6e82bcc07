"""ai-diary's OpenTelemetry defaults, for ``opentelemetry-instrument`` and for app/telemetry.py.

``opentelemetry-instrument`` loads the first ``opentelemetry_distro`` and ``opentelemetry_configurator`` entry
points it finds (``OTEL_PYTHON_DISTRO`` / ``OTEL_PYTHON_CONFIGURATOR`` pick one by name). The project registers
``ai_diary`` for both (pyproject.toml) and does not install ``opentelemetry-distro``, so ours are the only ones and
the choice is deterministic. The distro runs before the configurator builds the providers and before the
instrumentors patch flask, sqlalchemy, httpx and openai; this module therefore imports no ``app`` module (that
would import flask and the rest unpatched: no server spans) — only the OpenTelemetry SDK, like the upstream distro
(``exporters/__init__`` imports nothing).

Defaults, each with ``setdefault`` semantics (an explicit value wins):

- resource: ``service.name=ai-diary``, ``service.version=$APP_VERSION`` (0.1.0),
  ``deployment.environment.name`` and ``deployment.environment`` ``=$DEPLOYMENT_ENVIRONMENT`` (development) are
  appended to ``OTEL_RESOURCE_ATTRIBUTES`` for the keys it does not name (``OTEL_SERVICE_NAME`` still wins);
- ``OTEL_SEMCONV_STABILITY_OPT_IN=http`` (stable HTTP semantic conventions: ``http.server.request.duration`` in s);
- ``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=base2_exponential_bucket_histogram``; the configurator
  passes the same preference to every other push metric exporter (console, wandb);
- ``OTEL_PYTHON_FLASK_EXCLUDED_URLS=/healthz,/readyz`` unless ``OTEL_PYTHON_EXCLUDED_URLS`` is set;
- distro only, as ``opentelemetry-distro`` does: ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER=otlp`` and
  ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``.
"""
from __future__ import annotations

import inspect
import os
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote

from opentelemetry.environment_variables import OTEL_LOGS_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _get_exporter_names, _import_exporters, _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_PROTOCOL

DEFAULT_SERVICE_NAME = "ai-diary"
DEFAULT_VERSION = "0.1.0"
DEFAULT_ENVIRONMENT = "development"
ENV_HIST = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
BASE2, EXPLICIT = "base2_exponential_bucket_histogram", "explicit_bucket_histogram"
ENV_FLASK_EXCLUDED, ENV_EXCLUDED = "OTEL_PYTHON_FLASK_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"
DEFAULT_EXCLUDED_URLS = "/healthz,/readyz"
# base2 histograms with 320 buckets (the SDK default is 160): one scale finer, which halves the percentile error
# bound (exporters/stats.py: p95 within 3 % at ~100 points per series and interval)
EXP_HISTOGRAM_MAX_SIZE = 320
ENV_DEFAULTS = {"OTEL_SEMCONV_STABILITY_OPT_IN": "http", ENV_HIST: BASE2}


def resource_defaults(env: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """service.name, service.version and deployment.environment(.name) from APP_VERSION / DEPLOYMENT_ENVIRONMENT."""
    environment = env.get("DEPLOYMENT_ENVIRONMENT") or DEFAULT_ENVIRONMENT
    return {"service.name": DEFAULT_SERVICE_NAME, "service.version": env.get("APP_VERSION") or DEFAULT_VERSION,
            "deployment.environment.name": environment, "deployment.environment": environment}


def flask_excluded_urls(env: MutableMapping[str, str] = os.environ) -> str:
    """The Flask instrumentation's precedence (its own variable, then the generic one; empty = unset), then ours."""
    return env.get(ENV_FLASK_EXCLUDED) or env.get(ENV_EXCLUDED) or DEFAULT_EXCLUDED_URLS


def apply_env_defaults(env: MutableMapping[str, str] = os.environ) -> None:
    """Sets the defaults above that the SDK and the instrumentations read from the environment."""
    for name, value in ENV_DEFAULTS.items():
        env.setdefault(name, value)
    env[ENV_FLASK_EXCLUDED] = flask_excluded_urls(env)
    raw = env.get("OTEL_RESOURCE_ATTRIBUTES", "").strip()
    named = {part.split("=", 1)[0].strip() for part in raw.split(",") if "=" in part}
    extra = [f"{k}={quote(v, safe='')}" for k, v in resource_defaults(env).items() if k not in named]
    if extra:
        env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join([raw, *extra] if raw else extra)


class AiDiaryDistro(BaseDistro):
    """Entry point ``opentelemetry_distro: ai_diary``: upstream's exporter defaults plus ours."""

    def _configure(self, **kwargs: Any) -> None:
        for name in (OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_LOGS_EXPORTER):
            os.environ.setdefault(name, "otlp")
        os.environ.setdefault(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc")
        apply_env_defaults()


def _histogram_preference() -> dict[type, dict[str, Any]]:
    """exporter_args_map entries giving every push metric exporter base2 histograms (the OTLP ones read ENV_HIST
    themselves; ConsoleMetricExporter and the others take ``preferred_aggregation``)."""
    if os.environ.get(ENV_HIST, BASE2).strip().lower() != BASE2:
        return {}
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

    _, classes, _ = _import_exporters([], _get_exporter_names("metrics"), [])
    args: dict[type, dict[str, Any]] = {}
    for cls in classes.values():
        if not issubclass(cls, MetricReader) and \
                "preferred_aggregation" in inspect.signature(cls.__init__).parameters:
            args[cls] = {"preferred_aggregation": {
                Histogram: ExponentialBucketHistogramAggregation(max_size=EXP_HISTOGRAM_MAX_SIZE)}}
    return args


class AiDiaryConfigurator(_OTelSDKConfigurator):
    """Entry point ``opentelemetry_configurator: ai_diary``: the SDK's configurator, with base2 histograms for
    every metric exporter (unless a declarative ``OTEL_CONFIG_FILE`` decides everything)."""

    def _configure(self, **kwargs: Any) -> None:
        if not os.environ.get("OTEL_CONFIG_FILE"):
            kwargs["exporter_args_map"] = {**_histogram_preference(), **(kwargs.get("exporter_args_map") or {})}
        super()._configure(**kwargs)
