"""The configuration of the ai-diary service: every environment variable it reads, validated at start-up.

- :class:`Settings` (pydantic-settings): the service's own variables; every field's name is its variable.
  ``create_app(config)`` passes the dict's keys that name a field as init arguments (they win over the environment).
- :class:`TelemetrySettings`: the OpenTelemetry variables the service reads itself or validates before the SDK
  does (the SDK only warns about a value it cannot use and falls back to its default: ``OTEL_TRACES_SAMPLER=bogus``
  samples everything), and our telemetry switches.
- the names of the other variables the service's processes read (gunicorn.conf.py, the local LLM stand-in).

One parser and one error type for the whole repository (``otel_wandb.config``): blank means the default, and a
:class:`ConfigError` names the variable, never its value. This module and gunicorn.conf.py are the only ones of the
service that read ``os.environ``; the telemetry package writes the SDK's defaults into it (that is how the SDK is
configured), nothing else does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal, TypedDict
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.telemetry.defaults import BASE2, ENV_HIST, EXPLICIT
from otel_wandb.config import ConfigError, env_choice, env_flag, env_number, env_str, environ

__all__ = ["ConfigError", "Settings", "TelemetrySettings", "load_settings"]

PRODUCTION = "production"  # DEPLOYMENT_ENVIRONMENT value (any case) that requires every secret to be set

# -- variables outside Settings ------------------------------------------------------------------------------------
DATABASE_URL = "DATABASE_URL"
PSEUDONYM_SECRET = "PSEUDONYM_SECRET"
LOG_LEVEL = "LOG_LEVEL"
APP_VERSION = "APP_VERSION"
DEPLOYMENT_ENVIRONMENT = "DEPLOYMENT_ENVIRONMENT"
OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
OTEL_TRACES_SAMPLER = "OTEL_TRACES_SAMPLER"
OTEL_TRACES_SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
OTEL_PYTHON_DISABLED_INSTRUMENTATIONS = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTEL_CONFIG_FILE = "OTEL_CONFIG_FILE"
SIGNALS = ("traces", "metrics", "logs")
EXPORTER_VARIABLE = {s: f"OTEL_{s.upper()}_EXPORTER" for s in SIGNALS}
ENDPOINT_VARIABLE = {s: f"OTEL_EXPORTER_OTLP_{s.upper()}_ENDPOINT" for s in SIGNALS}
AI_DIARY_FAST_OTLP = "AI_DIARY_FAST_OTLP"  # false: the SDK's own OTLP span encoder (HTTP and gRPC)
AI_DIARY_CAPTURE_GENAI_CONTENT = "AI_DIARY_CAPTURE_GENAI_CONTENT"  # true: prompts and completions leave the process
AI_DIARY_GIL_SWITCH_INTERVAL_MS = "AI_DIARY_GIL_SWITCH_INTERVAL_MS"
# the local OpenAI-compatible stand-in (app/local_llm/): injected latency and failures
LOCAL_LLM_LATENCY_MS = "LOCAL_LLM_LATENCY_MS"
LOCAL_LLM_FAIL_429_RATE = "LOCAL_LLM_FAIL_429_RATE"
LOCAL_LLM_FAIL_500_RATE = "LOCAL_LLM_FAIL_500_RATE"
LOCAL_LLM_TIMEOUT_RATE = "LOCAL_LLM_TIMEOUT_RATE"
LOCAL_LLM_TIMEOUT_SLEEP_S = "LOCAL_LLM_TIMEOUT_SLEEP_S"
LOCAL_LLM_SEED = "LOCAL_LLM_SEED"
PROTOCOLS = ("grpc", "http/protobuf")
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
# (variable, smallest accepted value, integer?) -- as the SDK parses them: int() for the batch processors,
# float() for the metric reader (milliseconds) and the OTLP exporters (seconds)
_SDK_NUMBERS: tuple[tuple[str, int, bool], ...] = (
    *(
        (f"OTEL_{p}_{n}", 0 if n == "EXPORT_TIMEOUT" else 1, True)
        for p in ("BSP", "BLRP")
        for n in ("SCHEDULE_DELAY", "EXPORT_TIMEOUT", "MAX_QUEUE_SIZE", "MAX_EXPORT_BATCH_SIZE")
    ),
    ("OTEL_METRIC_EXPORT_INTERVAL", 1, False),
    ("OTEL_METRIC_EXPORT_TIMEOUT", 0, False),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", 0, False),
    *((f"OTEL_EXPORTER_OTLP_{s.upper()}_TIMEOUT", 0, False) for s in SIGNALS),
)


class Settings(BaseSettings):
    # env_ignore_empty: an empty VAR= (as docker compose passes for an unset ${VAR:-}) means "use the default".
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, env_ignore_empty=True)

    DATABASE_URL: str | None = Field(
        None, description="Any SQLAlchemy URL. Default: a SQLite file ai-diary.sqlite3 in the Flask instance folder."
    )
    OPENAI_BASE_URL: str | None = Field(
        None, description="Base URL of an OpenAI-compatible API (e.g. http://127.0.0.1:8001/v1). Default: OpenAI."
    )
    OPENAI_API_KEY: SecretStr | None = Field(
        None, description="API key for OPENAI_BASE_URL. Required when OPENAI_BASE_URL is unset (api.openai.com)."
    )
    OPENAI_TIMEOUT: float = Field(
        30.0, gt=0, le=600, description="Seconds before one LLM request times out (the API answers 504)."
    )
    OPENAI_MAX_RETRIES: int = Field(
        2, ge=0, le=10, description="Retries of an LLM request on connection errors, 408/409/429 and 5xx."
    )
    AI_MODEL_DEFAULT: str = Field("gpt-4o-mini", min_length=1, description="Model used by every AI feature.")
    AI_MODEL_SUMMARIZE: str | None = Field(None, description="Model for 'summarize'. Default: AI_MODEL_DEFAULT.")
    AI_MODEL_REFLECT: str | None = Field(None, description="Model for 'reflect'. Default: AI_MODEL_DEFAULT.")
    AI_MODEL_MOOD: str | None = Field(None, description="Model for 'mood'. Default: AI_MODEL_DEFAULT.")
    AI_MAX_OUTPUT_TOKENS: int = Field(400, ge=1, le=16384, description="max_completion_tokens of one AI call.")
    PRICING_FILE: str | None = Field(
        None,
        description="JSON price list (USD per 1M tokens per model). Default: exporters/src/otel_wandb/pricing.json.",
    )
    PSEUDONYM_SECRET: SecretStr | None = Field(
        None,
        description="HMAC key that pseudonymizes user ids in telemetry. Required when DEPLOYMENT_ENVIRONMENT "
        "is production. Default elsewhere: a generated secret kept in the instance folder "
        "(development only; a warning is logged at every start).",
    )
    MAX_CONTENT_LENGTH: int = Field(
        256 * 1024, ge=1024, description="Largest accepted request body in bytes (larger: 413)."
    )
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Level of the application loggers."
    )
    APP_VERSION: str = Field("0.1.0", description="Version reported in the OpenAPI document and telemetry.")
    DEPLOYMENT_ENVIRONMENT: str = Field(
        "development", description="deployment.environment.name of the telemetry resource (e.g. production)."
    )
    TRUSTED_PROXY_COUNT: int = Field(
        0,
        ge=0,
        le=10,
        description="Proxies in front of the app that append to X-Forwarded-For (1 behind one load "
        "balancer): the client address of audit records and spans is then taken that "
        "many hops back in X-Forwarded-For. 0 = the socket peer (no trusted proxy).",
    )

    @field_validator("OPENAI_BASE_URL")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:8001/v1")
        return value

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        if self.DEPLOYMENT_ENVIRONMENT.lower() == PRODUCTION and self.PSEUDONYM_SECRET is None:
            raise ValueError(
                "PSEUDONYM_SECRET is required when DEPLOYMENT_ENVIRONMENT is production (the generated "
                "development key would differ per instance); set it, e.g. openssl rand -hex 32"
            )
        return self

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def model_for(self, feature: str) -> str:
        return getattr(self, f"AI_MODEL_{feature.upper()}", None) or self.AI_MODEL_DEFAULT


class _Identity(TypedDict):
    """The values read even with the SDK disabled."""

    log_level: str | None
    service_name: str | None
    app_version: str | None
    environment: str | None


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """What app.telemetry reads, validated (see the module docstring). With ``OTEL_SDK_DISABLED=true`` only the
    values the disabled service still uses are read."""

    sdk_disabled: bool = False
    log_level: str | None = None  # LOG_LEVEL, else the Settings'
    service_name: str | None = None  # OTEL_SERVICE_NAME
    app_version: str | None = None
    environment: str | None = None
    exporters: Mapping[str, str] | None = None  # signal -> comma-separated entry-point names ("none": nothing)
    sampler: str = ""
    fast_otlp: bool = True
    capture_genai_content: bool = False
    switch_interval_s: float | None = None  # None: the interpreter's
    disabled_instrumentations: frozenset[str] = frozenset()
    histogram: str = BASE2  # the default histogram aggregation of every metric reader

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TelemetrySettings:
        env = environ() if env is None else env
        base: _Identity = {
            "log_level": env_str(env, LOG_LEVEL) or None,
            "service_name": env_str(env, OTEL_SERVICE_NAME) or None,
            "app_version": env_str(env, APP_VERSION) or None,
            "environment": env_str(env, DEPLOYMENT_ENVIRONMENT) or None,
        }
        if env_flag(env, OTEL_SDK_DISABLED):
            return cls(sdk_disabled=True, **base)
        _validate_sdk_values(env)
        switch_ms = env_number(env, AI_DIARY_GIL_SWITCH_INTERVAL_MS, 0.0, lo=0.05, hi=100)
        return cls(
            **base,
            exporters={
                s: env_str(env, EXPORTER_VARIABLE[s])
                or (
                    "otlp"
                    if env_str(env, ENDPOINT_VARIABLE[s]) or env_str(env, OTEL_EXPORTER_OTLP_ENDPOINT)
                    else "none"
                )
                for s in SIGNALS
            },
            sampler=env_str(env, OTEL_TRACES_SAMPLER).lower(),
            fast_otlp=env_flag(env, AI_DIARY_FAST_OTLP, True),
            capture_genai_content=env_flag(env, AI_DIARY_CAPTURE_GENAI_CONTENT),
            switch_interval_s=switch_ms / 1000.0 if switch_ms else None,
            disabled_instrumentations=frozenset(
                n.strip().lower() for n in env_str(env, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS).split(",") if n.strip()
            ),
            histogram=env_choice(env, ENV_HIST, BASE2, (BASE2, EXPLICIT)),
        )

    def instrumentation_disabled(self, name: str) -> bool:
        """``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` names it (flask, sqlalchemy, httpx, httpx2, openai, logging) or
        holds ``*``, as opentelemetry-instrument reads it."""
        return "*" in self.disabled_instrumentations or name in self.disabled_instrumentations


def sampler_names() -> set[str]:
    """What OTEL_TRACES_SAMPLER may name: the SDK's samplers are entry points of this group, like any plug-in."""
    return {ep.name for ep in entry_points(group="opentelemetry_traces_sampler")}


def _validate_sdk_values(env: Mapping[str, str]) -> None:
    """The values the SDK would only warn about; unset or blank means the SDK's default."""
    numbers = {
        name: env_number(env, name, 0, lo=minimum, kind=int if integer else float)
        for name, minimum, integer in _SDK_NUMBERS
    }
    for prefix in ("OTEL_BSP", "OTEL_BLRP"):
        queue = numbers[f"{prefix}_MAX_QUEUE_SIZE"] or 2048
        batch = numbers[f"{prefix}_MAX_EXPORT_BATCH_SIZE"]
        if batch and batch > queue:
            raise ConfigError(f"{prefix}_MAX_EXPORT_BATCH_SIZE must not exceed {prefix}_MAX_QUEUE_SIZE")
    sampler = env_str(env, OTEL_TRACES_SAMPLER).lower()
    if sampler:
        env_choice(env, OTEL_TRACES_SAMPLER, "", tuple(sorted(sampler_names())))
    if sampler in RATIO_SAMPLERS:
        try:
            env_number(env, OTEL_TRACES_SAMPLER_ARG, 1.0, lo=0.0, hi=1.0)
        except ConfigError:
            raise ConfigError(f"{OTEL_TRACES_SAMPLER_ARG} must be a ratio in 0..1 for {sampler}") from None
    for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", *(f"OTEL_EXPORTER_OTLP_{s.upper()}_PROTOCOL" for s in SIGNALS)):
        if env_str(env, name) and env_str(env, name) not in PROTOCOLS:
            raise ConfigError(f"{name} must be {' or '.join(PROTOCOLS)}")
    env_flag(env, AI_DIARY_FAST_OTLP, True)


def env_value(name: str, env: Mapping[str, str] | None = None) -> str:
    """One variable read through the service's configuration layer (stripped; blank is "")."""
    return env_str(environ() if env is None else env, name)


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from the environment, with ``overrides`` (keys that name a field) taking precedence."""
    init = {k: v for k, v in (overrides or {}).items() if k in Settings.model_fields}
    try:
        return Settings(**init)
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors(include_url=False, include_input=False))
        raise ConfigError(f"invalid setting(s): {problems}") from None


def _problem(err: Any) -> str:
    """``VAR: message`` (a model-level rule names its variables in the message itself); the value is never echoed
    (a secret may have been put in the wrong variable)."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {msg}" if loc else msg
