"""Typed settings for the ai-diary service, read from the environment and validated at start-up.

Every field's name is its environment variable. ``create_app(config)`` passes the dict's keys that name a field
as init arguments (they win over the environment); a bad value raises :class:`ConfigError` naming the variable.
"""
from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


PRODUCTION = "production"  # DEPLOYMENT_ENVIRONMENT value (any case) that requires every secret to be set


class ConfigError(ValueError):
    """A setting failed validation; the message names the environment variable."""


class Settings(BaseSettings):
    # env_ignore_empty: an empty VAR= (as docker compose passes for an unset ${VAR:-}) means "use the default".
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, env_ignore_empty=True)

    DATABASE_URL: str | None = Field(
        None, description="Any SQLAlchemy URL. Default: a SQLite file ai-diary.sqlite3 in the Flask instance folder.")
    OPENAI_BASE_URL: str | None = Field(
        None, description="Base URL of an OpenAI-compatible API (e.g. http://127.0.0.1:8001/v1). Default: OpenAI.")
    OPENAI_API_KEY: SecretStr | None = Field(
        None, description="API key for OPENAI_BASE_URL. Required when OPENAI_BASE_URL is unset (api.openai.com).")
    OPENAI_TIMEOUT: float = Field(
        30.0, gt=0, le=600, description="Seconds before one LLM request times out (the API answers 504).")
    OPENAI_MAX_RETRIES: int = Field(
        2, ge=0, le=10, description="Retries of an LLM request on connection errors, 408/409/429 and 5xx.")
    AI_MODEL_DEFAULT: str = Field("gpt-4o-mini", min_length=1, description="Model used by every AI feature.")
    AI_MODEL_SUMMARIZE: str | None = Field(None, description="Model for 'summarize'. Default: AI_MODEL_DEFAULT.")
    AI_MODEL_REFLECT: str | None = Field(None, description="Model for 'reflect'. Default: AI_MODEL_DEFAULT.")
    AI_MODEL_MOOD: str | None = Field(None, description="Model for 'mood'. Default: AI_MODEL_DEFAULT.")
    AI_MAX_OUTPUT_TOKENS: int = Field(400, ge=1, le=16384, description="max_completion_tokens of one AI call.")
    PRICING_FILE: str | None = Field(
        None, description="JSON price list (USD per 1M tokens per model). Default: exporters/src/otel_wandb/pricing.json.")
    PSEUDONYM_SECRET: SecretStr | None = Field(
        None, description="HMAC key that pseudonymizes user ids in telemetry. Required when DEPLOYMENT_ENVIRONMENT "
                          "is production. Default elsewhere: a generated secret kept in the instance folder "
                          "(development only; a warning is logged at every start).")
    MAX_CONTENT_LENGTH: int = Field(
        256 * 1024, ge=1024, description="Largest accepted request body in bytes (larger: 413).")
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Level of the application loggers.")
    APP_VERSION: str = Field("0.1.0", description="Version reported in the OpenAPI document and telemetry.")
    DEPLOYMENT_ENVIRONMENT: str = Field(
        "development", description="deployment.environment.name of the telemetry resource (e.g. production).")
    TRUSTED_PROXY_COUNT: int = Field(
        0, ge=0, le=10, description="Proxies in front of the app that append to X-Forwarded-For (1 behind one load "
                                    "balancer): the client address of audit records and spans is then taken that "
                                    "many hops back in X-Forwarded-For. 0 = the socket peer (no trusted proxy).")

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
            raise ValueError("PSEUDONYM_SECRET is required when DEPLOYMENT_ENVIRONMENT is production (the generated "
                             "development key would differ per instance); set it, e.g. openssl rand -hex 32")
        return self

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def model_for(self, feature: str) -> str:
        return getattr(self, f"AI_MODEL_{feature.upper()}", None) or self.AI_MODEL_DEFAULT


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
