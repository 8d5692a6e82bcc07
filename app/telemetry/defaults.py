"""The service's OpenTelemetry defaults as plain data and functions (standard library only): shared by the distro
(app/telemetry/distro.py, for ``opentelemetry-instrument``), app/telemetry/ and the JSON log lines -- the gunicorn
master among them, which must not import the SDK or the app. See app/telemetry/distro.py for what each default means.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from urllib.parse import quote

from otel_wandb.config import environ
from otel_wandb.core import EXP_HISTOGRAM_MAX_SIZE as EXP_HISTOGRAM_MAX_SIZE  # the exporter's bucket count, ours too

DEFAULT_SERVICE_NAME = "ai-diary"
DEFAULT_VERSION = "0.1.0"
DEFAULT_ENVIRONMENT = "development"
ENV_HIST = "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
BASE2, EXPLICIT = "base2_exponential_bucket_histogram", "explicit_bucket_histogram"
ENV_FLASK_EXCLUDED, ENV_EXCLUDED = "OTEL_PYTHON_FLASK_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"
DEFAULT_EXCLUDED_URLS = "/healthz,/readyz"
ENV_DEFAULTS = {"OTEL_SEMCONV_STABILITY_OPT_IN": "http", ENV_HIST: BASE2}


def resource_defaults(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """service.name, service.version and deployment.environment(.name) from APP_VERSION / DEPLOYMENT_ENVIRONMENT."""
    env = environ() if env is None else env
    environment = env.get("DEPLOYMENT_ENVIRONMENT") or DEFAULT_ENVIRONMENT
    return {
        "service.name": DEFAULT_SERVICE_NAME,
        "service.version": env.get("APP_VERSION") or DEFAULT_VERSION,
        "deployment.environment.name": environment,
        "deployment.environment": environment,
    }


def flask_excluded_urls(env: Mapping[str, str] | None = None) -> str:
    """The Flask instrumentation's precedence (its own variable, then the generic one; empty = unset), then ours."""
    env = environ() if env is None else env
    return env.get(ENV_FLASK_EXCLUDED) or env.get(ENV_EXCLUDED) or DEFAULT_EXCLUDED_URLS


def apply_env_defaults(env: MutableMapping[str, str] | None = None) -> None:
    """Sets the defaults above that the SDK and the instrumentations read from the environment (``os.environ``:
    that is how the SDK is configured)."""
    env = environ() if env is None else env
    for name, value in ENV_DEFAULTS.items():
        env.setdefault(name, value)
    env[ENV_FLASK_EXCLUDED] = flask_excluded_urls(env)
    raw = env.get("OTEL_RESOURCE_ATTRIBUTES", "").strip()
    named = {part.split("=", 1)[0].strip() for part in raw.split(",") if "=" in part}
    extra = [f"{k}={quote(v, safe='')}" for k, v in resource_defaults(env).items() if k not in named]
    if extra:
        env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join([raw, *extra] if raw else extra)
