"""The configuration of otel-wandb: every environment variable it reads, one parser, one error type.

This module is the only one of the distribution that reads ``os.environ``; the others receive a mapping (tests pass
their own) or one of the settings objects below. Precedence: constructor argument -> the specific variable -> the
generic (ecosystem) one -> default, e.g. ``WANDB_EXPORT_INTERVAL`` (seconds, ours) over
``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds, every metric reader's interval).

One meaning of blank: a variable that is unset, empty or only white space takes its default (``VAR=`` is what
docker compose passes for an unset ``${VAR:-}``). A value that cannot be used raises :class:`ConfigError`, whose
message names the variable and what it accepts -- never the value, which may be a secret put in the wrong place.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, overload

Env = Mapping[str, str]
N = TypeVar("N", int, float)

# -- W&B's own variables (the sink passes them to wandb.init) --------------------------------------------------
WANDB_API_KEY = "WANDB_API_KEY"
WANDB_PROJECT = "WANDB_PROJECT"
WANDB_ENTITY = "WANDB_ENTITY"
WANDB_MODE = "WANDB_MODE"  # online | offline | disabled; without it and without an API key: offline
WANDB_DIR = "WANDB_DIR"
WANDB_RUN_GROUP = "WANDB_RUN_GROUP"
WANDB_NAME = "WANDB_NAME"
WANDB_JOB_TYPE = "WANDB_JOB_TYPE"
WANDB_INIT_TIMEOUT = "WANDB_INIT_TIMEOUT"  # seconds (wandb's default is 90; ours 15: shutdown stays bounded)
# -- OpenTelemetry's ---------------------------------------------------------------------------------------------
OTEL_METRIC_EXPORT_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"  # milliseconds
# -- ours: the export --------------------------------------------------------------------------------------------
WANDB_EXPORT_INTERVAL = "WANDB_EXPORT_INTERVAL"  # seconds between two wandb.log calls
WANDB_EXPORT_MAX_SERIES = "WANDB_EXPORT_MAX_SERIES"  # breakdown series per metric, then __overflow__
WANDB_EXPORT_MAX_KEYS = "WANDB_EXPORT_MAX_KEYS"  # distinct row keys per run (W&B: < 10,000 per project)
WANDB_EXPORT_PRICING = "WANDB_EXPORT_PRICING"  # a price list (otel_wandb.pricing); default: the bundled one
WANDB_EXPORT_FINISH_TIMEOUT = "WANDB_EXPORT_FINISH_TIMEOUT"  # seconds
WANDB_METRICS_TEMPORALITY = "WANDB_METRICS_TEMPORALITY"  # delta | cumulative
WANDB_METRICS_HISTOGRAM = "WANDB_METRICS_HISTOGRAM"  # exponential | explicit
WANDB_EXPORT_REQUEST_SOURCE = "WANDB_EXPORT_REQUEST_SOURCE"  # auto | spans | span_metrics: what http/*, ai/* count
# seconds: the W&B tables (recent_errors, slowest_traces, error_groups) at most this often -- each logged table is an
# artifact version -- their rows adding up in between (default 60; 0: with every interval)
WANDB_EXPORT_TABLES_INTERVAL = "WANDB_EXPORT_TABLES_INTERVAL"
WANDB_EXPORT_ERROR_ROWS = "WANDB_EXPORT_ERROR_ROWS"  # rows of a recent_errors table (default 50)
WANDB_EXPORT_DASHBOARD_PORT = "WANDB_EXPORT_DASHBOARD_PORT"  # the live dashboard of this process; unset: none
WANDB_EXPORT_DASHBOARD_HOST = "WANDB_EXPORT_DASHBOARD_HOST"  # its bind address (default 127.0.0.1)
# -- ours: the OTLP/HTTP bridge ----------------------------------------------------------------------------------
WANDB_BRIDGE_HOST = "WANDB_BRIDGE_HOST"
WANDB_BRIDGE_PORT = "WANDB_BRIDGE_PORT"
WANDB_BRIDGE_TOKEN = "WANDB_BRIDGE_TOKEN"  # a secret: the bearer token senders must present
WANDB_BRIDGE_MAX_BODY_BYTES = "WANDB_BRIDGE_MAX_BODY_BYTES"
WANDB_BRIDGE_SHUTDOWN_TIMEOUT_S = "WANDB_BRIDGE_SHUTDOWN_TIMEOUT_S"
WANDB_BRIDGE_READ_TIMEOUT_S = "WANDB_BRIDGE_READ_TIMEOUT_S"  # every socket read of a request
WANDB_BRIDGE_LOG_LEVEL = "WANDB_BRIDGE_LOG_LEVEL"
# how many recent span ids the bridge remembers to drop a span a sender delivers twice (at-least-once: a collector
# replaying its queue after a crash); default 100000, 0 = off
WANDB_BRIDGE_DEDUP_SPANS = "WANDB_BRIDGE_DEDUP_SPANS"
WANDB_BRIDGE_PUBLISH_DASHBOARD = "WANDB_BRIDGE_PUBLISH_DASHBOARD"  # auto | true | false: the W&B workspace
WANDB_BRIDGE_DASHBOARD = "WANDB_BRIDGE_DASHBOARD"  # true | false: serve the live dashboard (default true)
WANDB_BRIDGE_DASHBOARD_HOST = "WANDB_BRIDGE_DASHBOARD_HOST"  # its bind address (default 127.0.0.1)
WANDB_BRIDGE_DASHBOARD_PORT = "WANDB_BRIDGE_DASHBOARD_PORT"  # its port (default 8088; 0: any free port)
# -- ours: alerts ------------------------------------------------------------------------------------------------
ALERTS_ENABLED = "ALERTS_ENABLED"
ALERTS_FILE = "ALERTS_FILE"
ALERTS_TIMEZONE = "ALERTS_TIMEZONE"
ALERTS_STATE_FILE = "ALERTS_STATE_FILE"  # off: state in memory only
ALERTS_CHANNEL_TIMEOUT = "ALERTS_CHANNEL_TIMEOUT"
ALERTS_CHANNEL_RETRIES = "ALERTS_CHANNEL_RETRIES"
ALERTS_CHANNEL_BACKOFF = "ALERTS_CHANNEL_BACKOFF"
ALERTS_QUEUE_SIZE = "ALERTS_QUEUE_SIZE"
SLACK_WEBHOOK_URL = "SLACK_WEBHOOK_URL"  # a secret (its path)
SMTP_HOST = "SMTP_HOST"
SMTP_PORT = "SMTP_PORT"
SMTP_STARTTLS = "SMTP_STARTTLS"
SMTP_USERNAME = "SMTP_USERNAME"
SMTP_PASSWORD = "SMTP_PASSWORD"  # a secret
SMTP_CA_FILE = "SMTP_CA_FILE"  # PEM bundle that verifies the server's STARTTLS certificate
SMTP_ALLOW_PLAINTEXT_LOGIN = "SMTP_ALLOW_PLAINTEXT_LOGIN"  # true: log in without STARTTLS to a remote host
ALERT_EMAIL_FROM = "ALERT_EMAIL_FROM"
ALERT_EMAIL_TO = "ALERT_EMAIL_TO"  # comma-separated
SMS_WEBHOOK_URL = "SMS_WEBHOOK_URL"
SMS_FROM = "SMS_FROM"
SMS_TO = "SMS_TO"  # comma-separated
SMS_ACCOUNT_SID = "SMS_ACCOUNT_SID"
SMS_AUTH_TOKEN = "SMS_AUTH_TOKEN"  # a secret
# -- set by a pre-forking server's worker hook (the ai-diary service's gunicorn.conf.py post_fork) -----------------
AI_DIARY_WORKER_ID = "AI_DIARY_WORKER_ID"
WEB_CONCURRENCY = "WEB_CONCURRENCY"  # the server's worker count
# -- the collector's log files -----------------------------------------------------------------------------------
LOG_DIR = "LOG_DIR"

DEFAULT_INTERVAL_S = 60.0
DEFAULT_INIT_TIMEOUT_S = 15.0
DEFAULT_PROJECT = "ai-diary"
DEFAULT_LOG_DIR = "logs"
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A configuration value cannot be used; the message names the variable (or file and field), never the value."""


def environ() -> MutableMapping[str, str]:
    """The process environment: the one place otel-wandb reads it."""
    return os.environ


def _env(env: Env | None) -> Env:
    return os.environ if env is None else env


# -- the parser --------------------------------------------------------------------------------------------------
def env_str(env: Env, name: str, default: str = "") -> str:
    """``env[name]`` stripped; ``default`` when unset or blank."""
    return (env.get(name) or "").strip() or default


def _fmt(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


@overload
def env_number(
    env: Env, name: str, default: float, *, lo: float | None = None, hi: float | None = None, above: float | None = None
) -> float: ...
@overload
def env_number(
    env: Env,
    name: str,
    default: N,
    *,
    lo: float | None = None,
    hi: float | None = None,
    above: float | None = None,
    kind: type[N],
) -> N: ...
def env_number(
    env: Env,
    name: str,
    default: float,
    *,
    lo: float | None = None,
    hi: float | None = None,
    above: float | None = None,
    kind: type[float] = float,
) -> float:
    """``env[name]`` as ``kind`` (``int`` or ``float``), ``default`` when unset or blank. Bounds: ``lo <= value <=
    hi`` (either may be None) and ``value > above``; NaN and infinities are refused."""
    raw = env_str(env, name)
    if not raw:
        return kind(default)
    what = "an integer" if kind is int else "a number"
    bounds = [f"greater than {_fmt(above)}"] if above is not None else []
    if lo is not None and hi is not None:
        bounds.append(f"between {_fmt(lo)} and {_fmt(hi)}")
    elif lo is not None:
        bounds.append(f"at least {_fmt(lo)}")
    elif hi is not None:
        bounds.append(f"at most {_fmt(hi)}")
    expected = f"{name} must be {what}" + (f" {' and '.join(bounds)}" if bounds else "")
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(expected) from None
    if (
        not math.isfinite(value)
        or (above is not None and not value > above)
        or (lo is not None and value < lo)
        or (hi is not None and value > hi)
    ):
        raise ConfigError(expected)
    return value


def env_flag(env: Env, name: str, default: bool = False) -> bool:
    """``env[name]`` as a boolean (1/0, true/false, yes/no, on/off; any case), ``default`` when unset or blank."""
    raw = env_str(env, name).lower()
    if not raw:
        return default
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise ConfigError(f"{name} must be true or false (1/0, yes/no, on/off)")


def env_choice(env: Env, name: str, default: str, choices: tuple[str, ...]) -> str:
    """``env[name]`` lower-cased, one of ``choices``; ``default`` when unset or blank."""
    raw = env_str(env, name).lower() or default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}")
    return raw


def env_list(env: Env, name: str) -> tuple[str, ...]:
    """A comma-separated ``env[name]`` without blank items; ``()`` when unset or blank."""
    return tuple(item.strip() for item in env_str(env, name).split(",") if item.strip())


def env_file(env: Env, name: str) -> str:
    """A path that must name a readable file; ``""`` when unset or blank."""
    path = env_str(env, name)
    if path and not os.path.isfile(path):
        raise ConfigError(f"{name} must name a readable file")
    return path


# -- the settings ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExportConfig:
    """What the pipeline and the SDK exporters read."""

    interval_s: float = DEFAULT_INTERVAL_S
    max_series: int = 50
    max_keys: int = 5000
    finish_timeout_s: float = 10.0
    temporality: str = "delta"
    histogram: str = "exponential"
    pricing_path: str | None = None
    request_source: str = "auto"
    tables_interval_s: float = 60.0
    error_rows: int = 50
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int | None = None  # None: no live dashboard in this process; 0: any free port

    @classmethod
    def from_env(cls, env: Env | None = None) -> ExportConfig:
        env = _env(env)
        if env_str(env, WANDB_EXPORT_INTERVAL):
            interval = env_number(env, WANDB_EXPORT_INTERVAL, DEFAULT_INTERVAL_S, above=0)
        else:
            interval = env_number(env, OTEL_METRIC_EXPORT_INTERVAL, DEFAULT_INTERVAL_S * 1000, above=0) / 1000.0
        return cls(
            interval_s=interval,
            max_series=env_number(env, WANDB_EXPORT_MAX_SERIES, 50, lo=1, kind=int),
            max_keys=env_number(env, WANDB_EXPORT_MAX_KEYS, 5000, lo=100, hi=9999, kind=int),
            finish_timeout_s=env_number(env, WANDB_EXPORT_FINISH_TIMEOUT, 10.0, above=0),
            temporality=env_choice(env, WANDB_METRICS_TEMPORALITY, "delta", ("delta", "cumulative")),
            histogram=env_choice(env, WANDB_METRICS_HISTOGRAM, "exponential", ("exponential", "explicit")),
            pricing_path=env_file(env, WANDB_EXPORT_PRICING) or None,
            request_source=env_choice(env, WANDB_EXPORT_REQUEST_SOURCE, "auto", ("auto", "spans", "span_metrics")),
            tables_interval_s=env_number(env, WANDB_EXPORT_TABLES_INTERVAL, 60.0, lo=0),
            error_rows=env_number(env, WANDB_EXPORT_ERROR_ROWS, 50, lo=1, hi=10_000, kind=int),
            dashboard_host=env_str(env, WANDB_EXPORT_DASHBOARD_HOST, "127.0.0.1"),
            dashboard_port=(
                env_number(env, WANDB_EXPORT_DASHBOARD_PORT, 0, lo=0, hi=65535, kind=int)
                if env_str(env, WANDB_EXPORT_DASHBOARD_PORT)
                else None
            ),
        )


@dataclass(frozen=True, slots=True)
class RunConfig:
    """The W&B run of the sink: ``wandb.init`` arguments (None: wandb's default) and the init timeout."""

    project: str = DEFAULT_PROJECT
    entity: str | None = None
    mode: str | None = None
    dir: str | None = None
    group: str | None = None
    name: str | None = None
    job_type: str | None = None
    init_timeout_s: float = DEFAULT_INIT_TIMEOUT_S
    has_api_key: bool = False

    @classmethod
    def from_env(cls, env: Env | None = None) -> RunConfig:
        env = _env(env)
        has_key = bool(env_str(env, WANDB_API_KEY))
        mode = env_str(env, WANDB_MODE) or (None if has_key else "offline")  # no key, no choice: offline
        return cls(
            project=env_str(env, WANDB_PROJECT, DEFAULT_PROJECT),
            entity=env_str(env, WANDB_ENTITY) or None,
            mode=mode,
            dir=env_str(env, WANDB_DIR) or None,
            group=env_str(env, WANDB_RUN_GROUP) or None,
            name=env_str(env, WANDB_NAME) or None,
            job_type=env_str(env, WANDB_JOB_TYPE) or None,
            init_timeout_s=env_number(env, WANDB_INIT_TIMEOUT, DEFAULT_INIT_TIMEOUT_S, above=0),
            has_api_key=has_key,
        )

    @property
    def online(self) -> bool:
        """The run would be uploaded: an API key, and a mode that is not offline, disabled or dryrun."""
        return self.has_api_key and (self.mode or "online").lower() not in ("offline", "disabled", "dryrun")


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    host: str = "127.0.0.1"
    port: int = 4319
    token: str = field(default="", repr=False)  # a secret: never in a repr or a log line
    max_body_bytes: int = 32 * 1024 * 1024
    shutdown_timeout_s: float = 30.0
    read_timeout_s: float = 30.0
    log_level: str = "INFO"
    dedup_spans: int = 100_000
    publish_dashboard: str = "auto"  # auto: when the run is online; true; false
    dashboard: bool = True  # serve the live dashboard (otel_wandb.report's DashboardServer)
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8088

    @classmethod
    def from_env(cls, env: Env | None = None) -> BridgeConfig:
        env = _env(env)
        publish = env_choice(env, WANDB_BRIDGE_PUBLISH_DASHBOARD, "auto", ("auto", *TRUE, *FALSE))
        return cls(
            host=env_str(env, WANDB_BRIDGE_HOST, "127.0.0.1"),
            port=env_number(env, WANDB_BRIDGE_PORT, 4319, lo=0, hi=65535, kind=int),
            token=env_str(env, WANDB_BRIDGE_TOKEN),
            max_body_bytes=env_number(
                env, WANDB_BRIDGE_MAX_BODY_BYTES, 32 * 1024 * 1024, lo=1024, hi=1 << 31, kind=int
            ),
            shutdown_timeout_s=float(env_number(env, WANDB_BRIDGE_SHUTDOWN_TIMEOUT_S, 30, lo=1, hi=3600, kind=int)),
            read_timeout_s=env_number(env, WANDB_BRIDGE_READ_TIMEOUT_S, 30.0, lo=0.1, hi=3600),
            log_level=bridge_log_level(env),
            dedup_spans=env_number(env, WANDB_BRIDGE_DEDUP_SPANS, 100_000, lo=0, hi=10_000_000, kind=int),
            publish_dashboard="auto" if publish == "auto" else ("true" if publish in TRUE else "false"),
            dashboard=env_flag(env, WANDB_BRIDGE_DASHBOARD, default=True),
            dashboard_host=env_str(env, WANDB_BRIDGE_DASHBOARD_HOST, "127.0.0.1"),
            dashboard_port=env_number(env, WANDB_BRIDGE_DASHBOARD_PORT, 8088, lo=0, hi=65535, kind=int),
        )


def bridge_log_level(env: Env | None = None) -> str:
    """``WANDB_BRIDGE_LOG_LEVEL`` as a ``logging`` level name."""
    return env_choice(
        _env(env), WANDB_BRIDGE_LOG_LEVEL, "info", ("debug", "info", "warning", "error", "critical")
    ).upper()


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """Where the rules and the state live, how deliveries are retried, and whether this process should alert."""

    enabled: bool = True
    enabled_explicitly: bool = False  # ALERTS_ENABLED was set (true or false), not defaulted
    rules_file: str | None = None  # None: the built-in rules
    timezone: str | None = None  # None: the rules file's
    state_file: Path | None = None  # None: memory only
    retries: int = 3
    backoff_s: float = 1.0
    queue_size: int = 100
    worker_id: str = ""  # set in one worker of a pre-forking server
    web_concurrency: int | None = None

    @classmethod
    def from_env(cls, env: Env | None = None) -> AlertSettings:
        env = _env(env)
        return cls(
            enabled=env_flag(env, ALERTS_ENABLED, default=True),
            enabled_explicitly=bool(env_str(env, ALERTS_ENABLED)),
            rules_file=env_str(env, ALERTS_FILE) or None,
            timezone=env_str(env, ALERTS_TIMEZONE) or None,
            state_file=_state_file(env),
            retries=env_number(env, ALERTS_CHANNEL_RETRIES, 3, lo=0, hi=10, kind=int),
            backoff_s=env_number(env, ALERTS_CHANNEL_BACKOFF, 1.0, lo=0.0, hi=60.0),
            queue_size=env_number(env, ALERTS_QUEUE_SIZE, 100, lo=1, hi=10000, kind=int),
            worker_id=env_str(env, AI_DIARY_WORKER_ID),
            web_concurrency=env_number(env, WEB_CONCURRENCY, 0, lo=0, kind=int) or None,
        )


def _state_file(env: Env) -> Path | None:
    """``ALERTS_STATE_FILE`` (``off``/``none``/``false``/``0``: memory only) -> ``$WANDB_DIR/alerts-state.json`` ->
    None. No implicit path in the working directory: processes sharing a checkout must not share state."""
    value = env_str(env, ALERTS_STATE_FILE)
    if value:
        return None if value.lower() in ("none", "off", "false", "0") else Path(value)
    wandb_dir = env_str(env, WANDB_DIR)
    return Path(wandb_dir) / "alerts-state.json" if wandb_dir else None


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """The delivery channels' variables, parsed; ``otel_wandb.alerts`` checks how they fit together."""

    timeout_s: float = 5.0
    slack_url: str = field(default="", repr=False)
    smtp_host: str = ""
    smtp_port: int | None = None  # None: 587 with STARTTLS, else 25
    smtp_starttls: bool = False
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_ca_file: str = ""
    smtp_allow_plaintext_login: bool = False
    email_from: str = ""
    email_to: tuple[str, ...] = ()
    sms_url: str = field(default="", repr=False)
    sms_from: str = ""
    sms_to: tuple[str, ...] = ()
    sms_account_sid: str = ""
    sms_auth_token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Env | None = None) -> ChannelSettings:
        env = _env(env)
        has_smtp = bool(env_str(env, SMTP_HOST))
        return cls(
            timeout_s=env_number(env, ALERTS_CHANNEL_TIMEOUT, 5.0, lo=0.1, hi=120.0),
            slack_url=env_str(env, SLACK_WEBHOOK_URL),
            smtp_host=env_str(env, SMTP_HOST),
            smtp_port=env_number(env, SMTP_PORT, 0, lo=1, hi=65535, kind=int) or None,
            # parsed whenever email is configured, even where it does not matter: a typo is reported anyway
            smtp_starttls=env_flag(env, SMTP_STARTTLS) if has_smtp else False,
            smtp_username=env_str(env, SMTP_USERNAME),
            smtp_password=env.get(SMTP_PASSWORD) or "",
            smtp_ca_file=env_file(env, SMTP_CA_FILE) if has_smtp else "",
            smtp_allow_plaintext_login=env_flag(env, SMTP_ALLOW_PLAINTEXT_LOGIN) if has_smtp else False,
            email_from=env_str(env, ALERT_EMAIL_FROM),
            email_to=env_list(env, ALERT_EMAIL_TO),
            sms_url=env_str(env, SMS_WEBHOOK_URL),
            sms_from=env_str(env, SMS_FROM),
            sms_to=env_list(env, SMS_TO),
            sms_account_sid=env_str(env, SMS_ACCOUNT_SID),
            sms_auth_token=env.get(SMS_AUTH_TOKEN) or "",
        )


def log_dir(env: Env | None = None) -> Path:
    """The collector's log directory: ``LOG_DIR``, else ``./logs``."""
    return Path(env_str(_env(env), LOG_DIR, DEFAULT_LOG_DIR))
