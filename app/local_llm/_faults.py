"""Fault injection of the local OpenAI-compatible server (app/local_llm/): its settings and the per-request choice.

Settings (CLI flag, else environment variable): ``LOCAL_LLM_LATENCY_MS`` / ``--latency-ms`` (mean added latency,
±50 % uniform jitter), ``LOCAL_LLM_FAIL_429_RATE`` / ``--fail-429-rate``, ``LOCAL_LLM_FAIL_500_RATE`` /
``--fail-500-rate``, ``LOCAL_LLM_TIMEOUT_RATE`` / ``--timeout-rate`` (the handler sleeps ``LOCAL_LLM_TIMEOUT_SLEEP_S``
/ ``--timeout-sleep-s``, past any sane client timeout), ``LOCAL_LLM_SEED`` / ``--seed`` (seeded RNG). Rates are
fractions of requests in [0, 1], together at most 1; latency and sleep are >= 0. A bad value is a ``ValueError``
naming the variable or flag it came from.

Per request: header ``X-Local-LLM-Fail: 429|500|timeout`` forces a failure; with ``X-Local-LLM-Fail-Attempts: N``
only the first N attempts fail (the openai SDK numbers its retries in ``x-stainless-retry-count``). A header value
that is not understood is a ``ValueError`` naming the header (the server answers 400).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from email.message import Message
from typing import Any

from app.config import (
    LOCAL_LLM_FAIL_429_RATE,
    LOCAL_LLM_FAIL_500_RATE,
    LOCAL_LLM_LATENCY_MS,
    LOCAL_LLM_SEED,
    LOCAL_LLM_TIMEOUT_RATE,
    LOCAL_LLM_TIMEOUT_SLEEP_S,
    ConfigError,
)
from otel_wandb.config import env_number, env_str, environ

Headers = Mapping[str, str] | Message  # a request's headers (http.server's are an email Message)

FAIL_HEADER = "X-Local-LLM-Fail"
FAIL_ATTEMPTS_HEADER = "X-Local-LLM-Fail-Attempts"
RETRY_COUNT_HEADER = "x-stainless-retry-count"
FAULTS = ("429", "500", "timeout")

# Faults field -> environment variable (the CLI flag is "--" + the field with dashes)
ENV = {
    "latency_ms": LOCAL_LLM_LATENCY_MS,
    "fail_429_rate": LOCAL_LLM_FAIL_429_RATE,
    "fail_500_rate": LOCAL_LLM_FAIL_500_RATE,
    "timeout_rate": LOCAL_LLM_TIMEOUT_RATE,
    "timeout_sleep_s": LOCAL_LLM_TIMEOUT_SLEEP_S,
    "seed": LOCAL_LLM_SEED,
}
RATES = ("fail_429_rate", "fail_500_rate", "timeout_rate")


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def check(values: Mapping[str, Any], names: Mapping[str, str]) -> None:
    """Raise ConfigError naming (``names[field]``) the first value out of range."""
    for field in ("latency_ms", "timeout_sleep_s"):
        if not (isinstance(values[field], (int, float)) and math.isfinite(values[field]) and values[field] >= 0):
            raise ConfigError(f"{names[field]} must be a number >= 0")
    for field in RATES:
        if not (isinstance(values[field], (int, float)) and 0 <= values[field] <= 1):
            raise ConfigError(f"{names[field]} must be a fraction between 0 and 1")
    if sum(values[field] for field in RATES) > 1:
        raise ConfigError(" + ".join(names[f] for f in RATES) + " must not exceed 1 together")
    if values["seed"] is not None and not isinstance(values["seed"], int):
        raise ConfigError(f"{names['seed']} must be an integer")


@dataclass
class Faults:
    latency_ms: float = 0.0
    fail_429_rate: float = 0.0
    fail_500_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_sleep_s: float = 30.0
    seed: int | None = None

    def __post_init__(self) -> None:
        check(asdict(self), {field: field for field in ENV})

    @classmethod
    def from_env(cls, given: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Faults:
        """Faults from ``given`` (CLI values; None = not given), else the environment, else the defaults; a bad
        value is a ConfigError naming its flag or variable."""
        env = environ() if env is None else env
        values: dict[str, Any] = {f.name: f.default for f in fields(cls)}
        names: dict[str, str] = {}
        for field, variable in ENV.items():
            if given is not None and given.get(field) is not None:
                values[field], names[field] = given[field], flag(field)
                continue
            names[field] = variable
            if env_str(env, variable):
                values[field] = env_number(env, variable, 0, kind=int if field == "seed" else float)
        check(values, names)
        return cls(**values)


def _count_header(headers: Headers, name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or not raw.isascii():
        raise ValueError(f"header {name} must be a non-negative integer")
    return int(raw)


def pick(headers: Headers, faults: Faults, draw: Callable[[], float]) -> str | None:
    """The fault this request gets ("429", "500", "timeout") or None. A request that names a fault in FAIL_HEADER
    gets exactly that (for its first FAIL_ATTEMPTS_HEADER attempts, if given) and no random one."""
    forced = (headers.get(FAIL_HEADER) or "").strip().lower()
    if forced:
        if forced not in FAULTS:
            raise ValueError(f"header {FAIL_HEADER} must be one of {', '.join(FAULTS)}")
        attempts = _count_header(headers, FAIL_ATTEMPTS_HEADER)
        retry = _count_header(headers, RETRY_COUNT_HEADER) or 0
        return forced if attempts is None or retry < attempts else None
    r = draw()
    bound = 0.0
    for fault, field in zip(FAULTS, RATES):
        bound += getattr(faults, field)
        if r < bound:
            return fault
    return None
