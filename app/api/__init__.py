"""Blueprints of the JSON API."""
from __future__ import annotations

from flask_openapi3 import OpenAPI

from app.api import entries, health, users


def register(app: OpenAPI) -> None:
    app.register_api(health.bp)
    app.register_api(users.bp)
    app.register_api(entries.bp)
