"""OpenTelemetry -> Weights & Biases exporters: a pure aggregation core, one W&B sink, SDK adapters.

Import the SDK exporters from ``exporters.sdk`` (they pull in the OpenTelemetry SDK); the core modules
(``records``, ``core``, ``stats``, ``errors``, ``metricstate``) are dependency-free.
"""

from __future__ import annotations

__all__ = ["Aggregator", "CoreConfig", "IntervalResult", "Table"]


def __getattr__(name: str):
    if name in __all__:
        from . import core

        return getattr(core, name)
    raise AttributeError(name)
