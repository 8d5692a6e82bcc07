"""ai-diary's OpenTelemetry defaults, for ``opentelemetry-instrument`` and for app/telemetry/.

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
from typing import Any

from opentelemetry.environment_variables import OTEL_LOGS_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]  # module is '# type: ignore'
from opentelemetry.sdk._configuration import _get_exporter_names, _import_exporters, _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import OTEL_EXPORTER_OTLP_PROTOCOL

from app.config import OTEL_CONFIG_FILE, env_value
from app.telemetry.defaults import (
    BASE2,
    ENV_HIST,
    EXP_HISTOGRAM_MAX_SIZE,
    apply_env_defaults,
)


class AiDiaryDistro(BaseDistro):  # type: ignore[misc]  # BaseDistro is untyped (see its import)
    """Entry point ``opentelemetry_distro: ai_diary``: upstream's exporter defaults plus ours."""

    def _configure(self, **kwargs: Any) -> None:
        for name in (OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER, OTEL_LOGS_EXPORTER):
            os.environ.setdefault(name, "otlp")
        os.environ.setdefault(OTEL_EXPORTER_OTLP_PROTOCOL, "grpc")
        apply_env_defaults()


def _histogram_preference() -> dict[type, dict[str, Any]]:
    """exporter_args_map entries giving every push metric exporter base2 histograms (the OTLP ones read ENV_HIST
    themselves; ConsoleMetricExporter and the others take ``preferred_aggregation``)."""
    if (env_value(ENV_HIST) or BASE2).lower() != BASE2:
        return {}
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

    _, classes, _ = _import_exporters([], _get_exporter_names("metrics"), [])
    args: dict[type, dict[str, Any]] = {}
    for cls in classes.values():
        if not issubclass(cls, MetricReader) and "preferred_aggregation" in inspect.signature(cls.__init__).parameters:
            args[cls] = {
                "preferred_aggregation": {
                    Histogram: ExponentialBucketHistogramAggregation(max_size=EXP_HISTOGRAM_MAX_SIZE)
                }
            }
    return args


class AiDiaryConfigurator(_OTelSDKConfigurator):
    """Entry point ``opentelemetry_configurator: ai_diary``: the SDK's configurator, with base2 histograms for
    every metric exporter (unless a declarative ``OTEL_CONFIG_FILE`` decides everything)."""

    def _configure(self, **kwargs: Any) -> None:
        if not env_value(OTEL_CONFIG_FILE):
            kwargs["exporter_args_map"] = {**_histogram_preference(), **(kwargs.get("exporter_args_map") or {})}
        super()._configure(**kwargs)  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated
