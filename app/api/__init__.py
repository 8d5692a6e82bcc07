"""Blueprints of the JSON API, and the app-wide request guards (app/api/guard.py) that run before them."""
from __future__ import annotations

from flask_openapi3 import OpenAPI

from app.api import entries, guard, health, users


def register(app: OpenAPI) -> None:
    app.register_api(health.bp)
    app.register_api(users.bp)
    app.register_api(entries.bp)


def register_guards(app: OpenAPI) -> None:
    """App-level before_request guards; call after telemetry.init_app, so that the Flask instrumentation's own
    before_request hook has started the request span when a guard answers 4xx (hooks run in registration order;
    the blueprints' authentication runs after all app-level hooks)."""
    app.before_request(guard.read_body)
    app.before_request(guard.single_query_values)
