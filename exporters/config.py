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
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

# ours
WANDB_EXPORT_INTERVAL = "WANDB_EXPORT_INTERVAL"  # seconds
WANDB_EXPORT_MAX_SERIES = "WANDB_EXPORT_MAX_SERIES"  # breakdown series per metric
WANDB_EXPORT_MAX_KEYS = "WANDB_EXPORT_MAX_KEYS"  # distinct row keys per run (W&B: < 10,000 per project)
WANDB_EXPORT_PRICING = "WANDB_EXPORT_PRICING"  # path to a pricing JSON (default app/pricing.json if present)
WANDB_EXPORT_FINISH_TIMEOUT = "WANDB_EXPORT_FINISH_TIMEOUT"  # seconds
WANDB_METRICS_TEMPORALITY = "WANDB_METRICS_TEMPORALITY"  # delta | cumulative
WANDB_METRICS_HISTOGRAM = "WANDB_METRICS_HISTOGRAM"  # exponential | explicit
# ecosystem
OTEL_METRIC_EXPORT_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"  # milliseconds
DEFAULT_INTERVAL_S = 60.0
DEFAULT_PRICING = Path(__file__).resolve().parent.parent / "app" / "pricing.json"


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
        if pricing is None and DEFAULT_PRICING.is_file():
            pricing = str(DEFAULT_PRICING)
        return cls(
            interval_s=interval,
            max_series=series,
            max_keys=env_number(env, WANDB_EXPORT_MAX_KEYS, 5000, lo=100, hi=9999, kind=int),
            finish_timeout_s=env_number(env, WANDB_EXPORT_FINISH_TIMEOUT, 10.0, above=0),
            temporality=env_choice(env, WANDB_METRICS_TEMPORALITY, "delta", ("delta", "cumulative")),
            histogram=env_choice(env, WANDB_METRICS_HISTOGRAM, "exponential", ("exponential", "explicit")),
            pricing_path=pricing,
        )


_IN = ("input", "prompt", "input_tokens", "prompt_tokens")
_OUT = ("output", "completion", "output_tokens", "completion_tokens")
_CACHED = ("cached_input", "cached", "cache_read", "cached_input_tokens", "cache_read_input_tokens")
_UNITS = (("_per_1m", 1e-6), ("_per_million", 1e-6), ("_per_1k", 1e-3), ("_per_token", 1.0), ("", None))


def _price(entry: Mapping, names: tuple[str, ...], default_scale: float) -> float | None:
    for n in names:
        for suffix, scale in _UNITS:
            v = entry.get(n + suffix)
            if isinstance(v, (int, float)):
                return float(v) * (scale if scale is not None else default_scale)
    return None


def load_pricing(path: str | os.PathLike | None) -> dict[str, tuple[float, float, float]]:
    """Read a pricing JSON into ``model -> (usd/input token, usd/output token, usd/cached input token)``.

    Accepts ``{"models": {m: {...}}}`` or ``{m: {...}}`` with keys ``input``/``output``/``cached_input``
    (optionally suffixed ``_per_1m``/``_per_1k``/``_per_token``; a top-level ``"unit": "per_1k_tokens"`` or
    ``"per_token"`` changes the default of per 1M tokens).
    """
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{WANDB_EXPORT_PRICING}: cannot read pricing file {path}: {exc}") from None
    unit = str(data.get("unit", "")).lower() if isinstance(data, dict) else ""
    scale = 1e-3 if "1k" in unit else 1.0 if unit in ("per_token", "usd_per_token") else 1e-6
    models = data.get("models", data) if isinstance(data, dict) else {}
    out: dict[str, tuple[float, float, float]] = {}
    for model, entry in models.items():
        if not isinstance(entry, dict):
            continue
        inp = _price(entry, _IN, scale)
        outp = _price(entry, _OUT, scale)
        if inp is None and outp is None:
            continue
        cached = _price(entry, _CACHED, scale)
        out[model] = (inp or 0.0, outp or 0.0, cached if cached is not None else (inp or 0.0))
    return out
