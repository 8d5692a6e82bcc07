"""OpenTelemetry -> Weights & Biases: spans, metric points and logs become one aggregated ``wandb.log`` per interval.

    OTEL_TRACES_EXPORTER=wandb OTEL_METRICS_EXPORTER=wandb OTEL_LOGS_EXPORTER=wandb opentelemetry-instrument app

Packages, by role:

- ``otel_wandb.core``: the pure aggregation core (plain ``records`` in; a row, tables and alert signals out);
- ``otel_wandb.sdk``: the SDK exporters (entry points ``wandb``), ``otel_wandb.pipeline`` (one per process: lock,
  flusher thread, listeners) and ``otel_wandb.sink`` (the only user of ``wandb.init/log/alert/finish``);
- ``otel_wandb.bridge``: the OTLP/HTTP receiver a collector exports to (extra ``bridge``);
- ``otel_wandb.alerts``: rules, evaluation and delivery channels (extra ``alerts``);
- ``otel_wandb.report`` / ``otel_wandb.logfiles``: the HTML report and the collector's log files (console scripts);
- ``otel_wandb.config`` and ``otel_wandb.pricing``: every environment variable, and the token price list.

The three exporter classes are importable from here; they load the OpenTelemetry SDK on first access, so that
``otel_wandb.core`` stays importable without it.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"
__all__ = ["Pipeline", "WandbLogExporter", "WandbMetricExporter", "WandbSpanExporter", "__version__"]

_LAZY = {
    "WandbSpanExporter": "otel_wandb.sdk",
    "WandbMetricExporter": "otel_wandb.sdk",
    "WandbLogExporter": "otel_wandb.sdk",
    "Pipeline": "otel_wandb.pipeline",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_wandb' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
