"""Environment configuration of the W&B exporters, validated at start with errors that name the variable.

Precedence: constructor argument -> environment -> default. Where one of our variables and an ecosystem one set
the same thing, the specific one wins over the generic one: ``WANDB_EXPORT_INTERVAL`` (seconds, ours: the W&B
export interval) over ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds, every metric reader's interval), which is
the fallback when ours is unset. W&B's own variables (``WANDB_PROJECT``, ``WANDB_MODE``, ``WANDB_INIT_TIMEOUT``...)
are read by ``sink``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

# ours
WANDB_EXPORT_INTERVAL = "WANDB_EXPORT_INTERVAL"  # seconds
WANDB_EXPORT_MAX_SERIES = "WANDB_EXPORT_MAX_SERIES"  # breakdown series per metric
WANDB_EXPORT_MAX_KEYS = "WANDB_EXPORT_MAX_KEYS"  # distinct row keys per run (W&B: < 10,000 per project)
WANDB_EXPORT_PRICING = "WANDB_EXPORT_PRICING"  # path to a pricing JSON (default exporters/src/otel_wandb/pricing.json if present)
WANDB_EXPORT_FINISH_TIMEOUT = "WANDB_EXPORT_FINISH_TIMEOUT"  # seconds
WANDB_METRICS_TEMPORALITY = "WANDB_METRICS_TEMPORALITY"  # delta | cumulative
WANDB_METRICS_HISTOGRAM = "WANDB_METRICS_HISTOGRAM"  # exponential | explicit
# ecosystem
OTEL_METRIC_EXPORT_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"  # milliseconds
DEFAULT_INTERVAL_S = 60.0


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable."""


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _fmt(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def env_number(env: Mapping[str, str], name: str, default: float | None, *, lo: float | None = None,
               hi: float | None = None, above: float | None = None, kind: type = float,
               error: type[Exception] = ConfigError):
    """``env[name]`` as ``kind`` (``int`` or ``float``), ``default`` when unset or blank.

    Bounds: ``lo <= value <= hi`` (either may be None) and ``value > above``; NaN and infinities are rejected.
    Raises ``error`` (each caller's own ConfigError class) with a message that names the variable.
    """
    raw = (env.get(name) or "").strip()
    if not raw:
        return default if default is None else kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise error(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(value):
        raise error(f"{name}={raw!r} is not a finite number")
    if above is not None and not value > above:
        raise error(f"{name} must be greater than {_fmt(above)}, got {raw!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            raise error(f"{name} must be between {_fmt(lo)} and {_fmt(hi)}, got {raw!r}")
        raise error(f"{name} must be {'at least ' + _fmt(lo) if lo is not None else 'at most ' + _fmt(hi)}, "
                    f"got {raw!r}")
    return value


def env_flag(env: Mapping[str, str], name: str, default: bool = False, *,
             error: type[Exception] = ConfigError) -> bool:
    """``env[name]`` as a boolean (1/0, true/false, yes/no, on/off; any case), ``default`` when unset or blank."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise error(f"{name} must be true or false (1/0, yes/no, on/off), got {raw!r}")


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """``env[name]`` lower-cased, one of ``choices`` (``default`` when unset or blank)."""
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return raw


@dataclass(frozen=True, slots=True)
class ExportConfig:
    interval_s: float = DEFAULT_INTERVAL_S
    max_series: int = 50
    max_keys: int = 5000
    finish_timeout_s: float = 10.0
    temporality: str = "delta"
    histogram: str = "exponential"
    pricing_path: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ExportConfig":
        env = os.environ if env is None else env
        if env.get(WANDB_EXPORT_INTERVAL, "").strip():
            interval = env_number(env, WANDB_EXPORT_INTERVAL, DEFAULT_INTERVAL_S, above=0)
        elif env.get(OTEL_METRIC_EXPORT_INTERVAL, "").strip():
            interval = env_number(env, OTEL_METRIC_EXPORT_INTERVAL, DEFAULT_INTERVAL_S * 1000, above=0) / 1000.0
        else:
            interval = DEFAULT_INTERVAL_S
        series = env_number(env, WANDB_EXPORT_MAX_SERIES, 50, lo=1, kind=int)
        pricing = env.get(WANDB_EXPORT_PRICING, "").strip() or None
        if pricing and not Path(pricing).is_file():
            raise ConfigError(f"{WANDB_EXPORT_PRICING}={pricing!r} is not a readable file")
        return cls(
            interval_s=interval,
            max_series=series,
            max_keys=env_number(env, WANDB_EXPORT_MAX_KEYS, 5000, lo=100, hi=9999, kind=int),
            finish_timeout_s=env_number(env, WANDB_EXPORT_FINISH_TIMEOUT, 10.0, above=0),
            temporality=env_choice(env, WANDB_METRICS_TEMPORALITY, "delta", ("delta", "cumulative")),
            histogram=env_choice(env, WANDB_METRICS_HISTOGRAM, "exponential", ("exponential", "explicit")),
            pricing_path=pricing,
        )


# -- the OTLP/HTTP bridge -------------------------------------------------------------------------------------
ENV_BRIDGE_HOST, ENV_BRIDGE_PORT, ENV_BRIDGE_TOKEN = "WANDB_BRIDGE_HOST", "WANDB_BRIDGE_PORT", "WANDB_BRIDGE_TOKEN"
ENV_BRIDGE_MAX_BODY, ENV_BRIDGE_SHUTDOWN_TIMEOUT = "WANDB_BRIDGE_MAX_BODY_BYTES", "WANDB_BRIDGE_SHUTDOWN_TIMEOUT_S"
ENV_BRIDGE_LOG_LEVEL = "WANDB_BRIDGE_LOG_LEVEL"
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_MAX_BODY = "127.0.0.1", 4319, 32 * 1024 * 1024




def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    return env_number(env, name, default, lo=lo, hi=hi, kind=int)


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str = field(default="", repr=False)  # a secret: never in a repr or a log line
    max_body_bytes: int = DEFAULT_MAX_BODY
    shutdown_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BridgeConfig:
        env = os.environ if env is None else env
        return cls(
            host=env.get(ENV_BRIDGE_HOST, "").strip() or DEFAULT_HOST,
            port=_int(env, ENV_BRIDGE_PORT, DEFAULT_PORT, 0, 65535),
            token=env.get(ENV_BRIDGE_TOKEN, "").strip(),
            max_body_bytes=_int(env, ENV_BRIDGE_MAX_BODY, DEFAULT_MAX_BODY, 1024, 1 << 31),
            shutdown_timeout_s=float(_int(env, ENV_BRIDGE_SHUTDOWN_TIMEOUT, 30, 1, 3600)),
        )


def bridge_log_level(env: Mapping[str, str]) -> str:
    """``WANDB_BRIDGE_LOG_LEVEL`` as a ``logging`` level name (ConfigError naming the variable if it is none)."""
    return env_choice(env, ENV_BRIDGE_LOG_LEVEL, "info", ("debug", "info", "warning", "error", "critical")).upper()
