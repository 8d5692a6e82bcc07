"""Blueprints of the JSON API, its OpenAPI document, and the app-wide request guards (app/api/guard.py)."""

from __future__ import annotations

import copy
from typing import Any

from flask import Response, jsonify
from flask_openapi3 import OpenAPI
from werkzeug.routing import IntegerConverter

from app.api import entries, guard, health, users


class AsciiIntegerConverter(IntegerConverter):
    """``<int:...>`` of ASCII digits only: werkzeug's ``\\d+`` also matches other scripts' digits (``/entries/١``
    would address entry 1), which the document's ``type: integer`` path parameter does not describe."""

    regex = r"[0-9]+"


def register(app: OpenAPI) -> None:
    app.url_map.converters["int"] = AsciiIntegerConverter  # before the blueprints add their rules
    app.register_api(health.bp)
    app.register_api(users.bp)
    app.register_api(entries.bp)
    app.add_url_rule(app.doc_prefix + app.doc_url, "openapi_json", lambda: openapi_json(app))


def openapi_json(app: OpenAPI) -> Response:
    """The generated document, except for flask-openapi3's validation response that it adds to *every* operation:
    dropped where the operation has nothing to validate (e.g. /healthz); elsewhere our declared 400 stays."""
    doc: dict[str, Any] | None = app.extensions.get("openapi_doc")
    if doc is None:
        doc = copy.deepcopy(app.api_doc)
        status = str(app.validation_error_status)
        for item in doc.get("paths", {}).values():
            for op in item.values():
                if not op.get("parameters") and "requestBody" not in op:
                    op.get("responses", {}).pop(status, None)
        app.extensions["openapi_doc"] = doc
    return jsonify(doc)


def register_guards(app: OpenAPI) -> None:
    """App-level before_request guards; call after telemetry.init_app, so that the Flask instrumentation's own
    before_request hook has started the request span when a guard answers 4xx (hooks run in registration order;
    the blueprints' authentication runs after all app-level hooks)."""
    app.before_request(guard.read_body)
    app.before_request(guard.single_query_values)
