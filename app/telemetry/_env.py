"""Start-up validation of the telemetry environment for app/telemetry/ (its docstring is the contract).

The SDK only logs a warning for a value it cannot use and falls back to its default (``OTEL_TRACES_SAMPLER=bogus``
samples everything, ``OTEL_BSP_MAX_QUEUE_SIZE=abc`` is 2048). ``validate()`` runs in ``configure()`` before any
provider exists, so such a value stops the start with a :class:`TelemetryConfigError` naming the variable. An unset
or empty variable means the SDK's default.
"""
from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points

from app.telemetry._otlp import ENV_FAST_OTLP

ENV_SWITCH_INTERVAL = "AI_DIARY_GIL_SWITCH_INTERVAL_MS"
ENV_DISABLED = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
SIGNALS = ("TRACES", "METRICS", "LOGS")
PROTOCOLS = ("grpc", "http/protobuf")
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
# (variable, smallest accepted value, integer?) -- as the SDK parses them: int() for the batch processors,
# float() for the metric reader (milliseconds) and the OTLP exporters (seconds)
_NUMBERS: tuple[tuple[str, int, bool], ...] = (
    *((f"OTEL_{p}_{n}", 0 if n == "EXPORT_TIMEOUT" else 1, True) for p in ("BSP", "BLRP")
      for n in ("SCHEDULE_DELAY", "EXPORT_TIMEOUT", "MAX_QUEUE_SIZE", "MAX_EXPORT_BATCH_SIZE")),
    ("OTEL_METRIC_EXPORT_INTERVAL", 1, False), ("OTEL_METRIC_EXPORT_TIMEOUT", 0, False),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", 0, False), *((f"OTEL_EXPORTER_OTLP_{s}_TIMEOUT", 0, False) for s in SIGNALS),
)


class TelemetryConfigError(ValueError):
    """A telemetry setting is invalid; the message names the variable."""


def truthy(name: str, default: str = "false") -> bool:
    raw = os.environ.get(name, default).strip().lower()
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off", ""):
        return False
    raise TelemetryConfigError(f"{name} must be true or false, got {raw!r}")


def _set(name: str) -> str | None:
    raw = os.environ.get(name, "").strip()
    return raw or None


def _number(name: str, minimum: int, integer: bool) -> float | None:
    raw = _set(name)
    if raw is None:
        return None
    kind = "an integer" if integer else "a number"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise TelemetryConfigError(f"{name} must be {kind} >= {minimum}, got {raw!r}") from None
    if not value >= minimum:  # also rejects nan
        raise TelemetryConfigError(f"{name} must be {kind} >= {minimum}, got {raw!r}")
    return value


def sampler_names() -> set[str]:
    """What OTEL_TRACES_SAMPLER may name: the SDK's samplers are entry points of this group, like any plug-in."""
    return {ep.name for ep in entry_points(group="opentelemetry_traces_sampler")}


def validate() -> None:
    """Raises TelemetryConfigError for the first unusable OTEL_* / AI_DIARY_* value (see the module docstring)."""
    for name, minimum, integer in _NUMBERS:
        _number(name, minimum, integer)
    for prefix, default_queue in (("OTEL_BSP", 2048), ("OTEL_BLRP", 2048)):
        queue = _number(f"{prefix}_MAX_QUEUE_SIZE", 1, True) or default_queue
        batch = _number(f"{prefix}_MAX_EXPORT_BATCH_SIZE", 1, True)
        if batch is not None and batch > queue:
            raise TelemetryConfigError(f"{prefix}_MAX_EXPORT_BATCH_SIZE ({int(batch)}) must not exceed "
                                       f"{prefix}_MAX_QUEUE_SIZE ({int(queue)})")
    sampler = (_set("OTEL_TRACES_SAMPLER") or "").lower()
    if sampler and sampler not in sampler_names():
        raise TelemetryConfigError(f"OTEL_TRACES_SAMPLER must be one of {', '.join(sorted(sampler_names()))}, "
                                   f"got {sampler!r}")
    arg = _set("OTEL_TRACES_SAMPLER_ARG")
    if sampler in RATIO_SAMPLERS and arg is not None:
        try:
            ratio = float(arg)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise TelemetryConfigError(f"OTEL_TRACES_SAMPLER_ARG must be a ratio in 0..1 for {sampler}, got {arg!r}")
    for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", *(f"OTEL_EXPORTER_OTLP_{s}_PROTOCOL" for s in SIGNALS)):
        protocol = _set(name)
        if protocol is not None and protocol not in PROTOCOLS:
            raise TelemetryConfigError(f"{name} must be {' or '.join(PROTOCOLS)}, got {protocol!r}")
    truthy(ENV_FAST_OTLP, "true")


def disabled_instrumentations() -> frozenset[str]:
    """``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS``: instrumentation entry-point names (flask, sqlalchemy, httpx, httpx2,
    openai, logging) or ``*`` for all, as opentelemetry-instrument reads it."""
    return frozenset(n.strip().lower() for n in os.environ.get(ENV_DISABLED, "").split(",") if n.strip())


def is_disabled(name: str, disabled: frozenset[str]) -> bool:
    return "*" in disabled or name in disabled


def switch_interval() -> float:
    """Exporter threads encode batches while holding the GIL; a request thread returning from I/O then waits up to
    the interpreter's switch interval (5 ms) to get it back. ``AI_DIARY_GIL_SWITCH_INTERVAL_MS`` (e.g. 0.5) lowers
    it when we own the providers. Opt-in: bench/bench_telemetry.py measured +30 % req/s with it on a loaded
    machine and no gain (−3 %) on a quiet one."""
    raw = os.environ.get(ENV_SWITCH_INTERVAL, "").strip()
    if raw:
        try:
            ms = float(raw)
            if not 0.05 <= ms <= 100:
                raise ValueError(raw)
        except ValueError:
            raise TelemetryConfigError(f"{ENV_SWITCH_INTERVAL} must be milliseconds in 0.05..100, got {raw!r}") from None
        return ms / 1000.0
    return sys.getswitchinterval()
