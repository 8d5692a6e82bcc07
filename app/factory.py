"""The application factory (re-exported as ``app.create_app``; see app/__init__.py)."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask_openapi3 import Info, OpenAPI
from opentelemetry import metrics
from werkzeug.middleware.proxy_fix import ProxyFix

from app import api, db, errors, privacy, telemetry
from app.config import Settings, load_settings
from app.llm import LLMService
from app.schemas import ErrorBody
from otel_wandb.pricing import PriceList

logger = logging.getLogger(__name__)


def create_app(config: dict[str, Any] | None = None) -> OpenAPI:
    settings = load_settings(config)
    app = OpenAPI(
        __name__,
        info=Info(title="ai-diary", version=settings.APP_VERSION),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        validation_error_status=400,
        validation_error_model=ErrorBody,
        validation_error_callback=errors.validation_error_response,
        doc_ui=False,  # no HTML doc UI in a JSON API; only the document, at doc_prefix + doc_url
        doc_prefix="/api",
        doc_url="/openapi.json",
        static_folder=None,
        instance_relative_config=True,
        instance_path=(config or {}).get("INSTANCE_PATH"),  # default: <project>/instance
    )
    app.json = errors.JSONProvider(app)
    app.config.from_mapping(settings.model_dump())
    app.config["MAX_CONTENT_LENGTH"] = settings.MAX_CONTENT_LENGTH
    app.config.update({k: v for k, v in (config or {}).items() if k not in Settings.model_fields})
    app.extensions["settings"] = settings  # LOG_LEVEL is applied by app/telemetry/ (the one logging setup)

    if settings.PSEUDONYM_SECRET is not None:
        privacy.configure(settings.PSEUDONYM_SECRET.get_secret_value())
    else:  # never in production (Settings refuses that)
        os.makedirs(app.instance_path, exist_ok=True)
        privacy.configure(privacy.instance_secret(os.path.join(app.instance_path, "pseudonym.secret")))

    db.init_app(app, settings.DATABASE_URL)
    meter_provider = app.config.get("METER_PROVIDER")
    meter = meter_provider.get_meter("ai-diary") if meter_provider is not None else metrics.get_meter("ai-diary")
    app.extensions["llm"] = LLMService(settings, PriceList.load(settings.PRICING_FILE, variable="PRICING_FILE"), meter)

    errors.register(app)
    api.register(app)
    telemetry.init_app(app)  # sets up logging: start-up warnings come after it
    if settings.PSEUDONYM_SECRET is None:
        logger.warning(
            "PSEUDONYM_SECRET is not set: pseudonyms use the development key in the instance folder "
            "(DEPLOYMENT_ENVIRONMENT=%s); set PSEUDONYM_SECRET for any shared deployment",
            settings.DEPLOYMENT_ENVIRONMENT,
        )
    api.register_guards(app)  # after telemetry: a guard's 4xx still gets its request span
    if settings.TRUSTED_PROXY_COUNT:
        # outermost, so audit records and the request span both see the forwarded client address
        proxied = ProxyFix(app.wsgi_app, x_for=settings.TRUSTED_PROXY_COUNT, x_proto=0, x_host=0, x_port=0, x_prefix=0)
        app.wsgi_app = proxied  # type: ignore[method-assign]  # Flask's documented middleware hook, typed as a method
    return app
