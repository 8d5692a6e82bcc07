"""Alert rules as data: ``alerts.yaml`` (path from ``ALERTS_FILE``) validated into pydantic models.

An invalid file stops start-up with :class:`AlertsConfigError`, whose message names the file, the rule and the field.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from otel_wandb.config import ALERTS_FILE, ALERTS_TIMEZONE, AlertSettings, ConfigError

logger = logging.getLogger(__name__)


COMPARISONS = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
PERCENTILE_RE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)_response_time$")
WINDOW_METRICS = ("error_rate", "error_count", "request_count", "window_ai_cost")
OTHER_METRICS = ("daily_ai_cost", "new_error_group")
# error_rate and percentile rules judge a window of requests: fewer than this many never fire (one failed request
# is not a 100 % error rate). Other metrics default to 1 (request_count counts intervals, error_count requests).
DEFAULT_MIN_SAMPLES = 20
# The ticket's rules (TICKET-020) plus the error-tracking rule; identical to the top-level alerts.yaml (tested).
DEFAULT_RULES: dict[str, Any] = {
    "timezone": "UTC",
    "wandb": True,
    "rules": [
        {
            "name": "High Error Rate",
            "metric": "error_rate",
            "comparison": ">",
            "threshold": 0.05,
            "window": "5m",
            "min_samples": 20,
            "wait": 300,
            "channels": ["slack", "email"],
            "level": "ERROR",
        },
        {
            "name": "High Response Time",
            "metric": "p95_response_time",
            "comparison": ">",
            "threshold": 1000,
            "window": "5m",
            "min_samples": 20,
            "wait": 600,
            "channels": ["slack"],
            "level": "WARN",
        },
        {
            "name": "AI API Cost Spike",
            "metric": "daily_ai_cost",
            "comparison": ">",
            "threshold": 100,
            "wait": 0,
            "channels": ["email", "sms"],
            "level": "WARN",
        },
        {
            "name": "New Error Group",
            "metric": "new_error_group",
            "wait": 0,
            "channels": ["slack"],
            "level": "ERROR",
            "enabled": True,
        },
    ],
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class AlertsConfigError(ConfigError):
    """The alert rules file is missing or invalid; the message names the file, the rule and the field."""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``"90"``, ``"30s"``, ``"5m"``, ``"1h"``."""
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration such as '5m'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise ValueError(f"expected seconds or a duration such as '5m', got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def is_known_metric(metric: str) -> bool:
    match = PERCENTILE_RE.match(metric)
    if match:
        return 0 < float(match.group(1)) < 100
    return metric in WINDOW_METRICS or metric in OTHER_METRICS


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=56)  # W&B titles must stay < 64 chars with a "[RESOLVED] " prefix
    metric: str
    comparison: Literal[">", ">=", "<", "<="] = ">"
    threshold: float | None = None  # required for every metric but new_error_group
    resolve_threshold: float | None = None  # hysteresis: clear only past this value (default: the threshold)
    window: float = 300.0  # seconds
    min_samples: int = Field(default=None, ge=1, validate_default=True)
    wait: float = 0.0  # seconds
    channels: tuple[Literal["slack", "email", "sms"], ...] = ()
    level: Literal["INFO", "WARN", "ERROR"] = "WARN"
    enabled: bool = True
    renotify: bool = True  # remind every `wait` seconds while still breaching (never when wait == 0)
    max_per_interval: int = Field(default=5, ge=1)  # new_error_group: alerts per interval before summarising

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not is_known_metric(value):
            known = ", ".join((*WINDOW_METRICS, *OTHER_METRICS, "pNN_response_time"))
            raise ValueError(f"unknown metric {value!r} (known: {known})")
        return value

    @field_validator("min_samples", mode="before")
    @classmethod
    def _min_samples(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            return value
        metric = str(info.data.get("metric") or "")
        return DEFAULT_MIN_SAMPLES if metric == "error_rate" or PERCENTILE_RE.match(metric) else 1

    @field_validator("window", "wait", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _threshold_required(self) -> Rule:
        if self.metric != "new_error_group" and self.threshold is None:
            raise ValueError(f"threshold: required for metric {self.metric!r} (a number to compare against)")
        return self

    @model_validator(mode="after")
    def _hysteresis(self) -> Rule:
        r, t = self.resolve_threshold, self.threshold
        if r is not None and t is not None and (r > t if self.comparison in (">", ">=") else r < t):
            side = "at or below" if self.comparison in (">", ">=") else "at or above"
            raise ValueError(f"resolve_threshold: must be {side} the threshold {self.threshold:g}")
        return self

    @model_validator(mode="after")
    def _window(self) -> Rule:
        if (self.metric in WINDOW_METRICS or PERCENTILE_RE.match(self.metric)) and self.window <= 0:
            raise ValueError("window: must be positive for a windowed metric")
        return self

    def breached(self, value: float) -> bool:
        return COMPARISONS[self.comparison](float(value), float(self.threshold or 0.0))

    def cleared(self, value: float) -> bool:
        limit = (self.threshold or 0.0) if self.resolve_threshold is None else self.resolve_threshold
        return not COMPARISONS[self.comparison](float(value), float(limit))


class AlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    wandb: bool = True
    rules: tuple[Rule, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        zone_info(value)
        return value

    @model_validator(mode="after")
    def _unique(self) -> AlertsConfig:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"duplicate rule name {rule.name!r}")
            seen.add(rule.name)
        return self

    @property
    def enabled_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    @property
    def tz(self) -> ZoneInfo:
        return zone_info(self.timezone)

    @property
    def max_window(self) -> float:
        return max((r.window for r in self.enabled_rules), default=0.0)


def zone_info(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


_FIELD_IN_MESSAGE = re.compile(r"^(?:Value error, )?([a-z_]+): (.*)$", re.S)


def _describe(exc: ValidationError, data: Any) -> str:
    parts = []
    for err in exc.errors():
        loc, msg = list(err["loc"]), err["msg"]
        where = ""
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            rules = data.get("rules") if isinstance(data, dict) else None
            name = None
            if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
                name = rules[loc[1]].get("name")
            where = f"rule {name!r}" if name else f"rule #{loc[1] + 1}"
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        named = None if field else _FIELD_IN_MESSAGE.match(msg)  # a cross-field check names its field first
        if named:
            field, msg = named.group(1), named.group(2)
        parts.append(f"{where + ': ' if where else ''}field {field or '(rule)'!r}: {msg}")
    return "; ".join(parts)


def parse_config(data: Any, source: str = "alerts config", timezone: str | None = None) -> AlertsConfig:
    """Validate a mapping (as loaded from YAML); ``timezone`` overrides the file's (ALERTS_TIMEZONE)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AlertsConfigError(f"{source}: expected a mapping with a 'rules' list")
    if timezone:
        try:
            zone_info(timezone)
        except ValueError as exc:
            raise AlertsConfigError(f"{ALERTS_TIMEZONE}: {exc}") from None
        data = {**data, "timezone": timezone}
    try:
        return AlertsConfig.model_validate(data)
    except ValidationError as exc:
        raise AlertsConfigError(f"{source}: {_describe(exc, data)}") from None


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> AlertsConfig:
    """Load rules: argument -> ``ALERTS_FILE`` -> :data:`DEFAULT_RULES` (the ticket's rules; the ai-diary
    repository's ``alerts.yaml`` holds the same, a test keeps them identical)."""
    settings = AlertSettings.from_env(env)
    if not path and not settings.rules_file:
        logger.info("no %s: using the built-in default alert rules", ALERTS_FILE)
        return parse_config(DEFAULT_RULES, source="built-in alert rules", timezone=settings.timezone)
    chosen = Path(path or settings.rules_file or "")
    try:
        text = chosen.read_text(encoding="utf-8")
    except OSError as exc:
        name = f"{ALERTS_FILE} ({chosen})" if not path else str(chosen)
        raise AlertsConfigError(f"{name}: cannot read alert rules: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AlertsConfigError(f"{chosen}: invalid YAML: {exc}") from None
    return parse_config(data, source=str(chosen), timezone=settings.timezone)
