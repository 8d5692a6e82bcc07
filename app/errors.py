"""JSON errors: ``{"error": {"code", "message", "field"?}}`` for every failure, never a stack trace.

Validation errors from flask-openapi3 become 400 naming the first bad field; werkzeug's HTTP errors keep their
status (401/404/405/413...); :class:`ApiError` carries our own; anything else is a 500 whose log line names the
exception type and the code location only (exception messages may quote user input).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from werkzeug.exceptions import HTTPException

from app.schemas import PATTERN_RULES
from app.telemetry import exception_attributes

logger = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


class JSONProvider(DefaultJSONProvider):
    """Flask's provider, except that JSON nested too deeply for the parser is a ValueError (a 400 "not valid
    JSON"), not a RecursionError (werkzeug's ``get_json`` only turns ValueError into a client error)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    resp = jsonify(error=body)
    resp.status_code = status
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def validation_error_response(exc: ValidationError) -> Response:
    """flask-openapi3's validation_error_callback: 400 naming the first bad field (input values never echoed)."""
    err: ErrorDetails = (
        exc.errors(include_url=False, include_input=False)[0]
        if exc.error_count()
        else {"type": "", "loc": (), "msg": "", "input": None}
    )
    field = ".".join(str(part) for part in err["loc"])
    if not field:
        if isinstance(request.get_json(silent=True), dict):  # a model-level rule, e.g. "give text or tags"
            message = str(err["msg"]).removeprefix("Value error, ")
            return error_response(400, "invalid_body", message, "body")
        return error_response(400, "invalid_body", _body_problem(), "body")
    msg = str(err["msg"])
    if err.get("type") == "extra_forbidden":
        msg = "unknown field"
    elif err.get("type") == "string_pattern_mismatch":  # the rule in words, not the regex (app/schemas.py)
        msg = PATTERN_RULES.get(str(err.get("ctx", {}).get("pattern")), "does not match the documented pattern")
    return error_response(400, "invalid_field", f"{field}: {msg}", field)


def _body_problem() -> str:
    raw = request.get_data(cache=True)
    if not raw:
        return "a JSON object body is required"
    if not request.is_json:
        return "the body must be JSON (Content-Type: application/json)"
    try:
        request.get_json(silent=False)
    except Exception:  # noqa: BLE001 - werkzeug raises BadRequest for undecodable JSON
        return "the body is not valid JSON"
    return "the body must be a JSON object"


def _code_for(exc: HTTPException) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if exc.response is not None and exc.response.is_json:  # abort(response) from validation
            return exc.response  # type: ignore[return-value]  # werkzeug types it as the sans-IO base class
        headers = dict(exc.get_headers())
        headers.pop("Content-Type", None)
        message = {413: f"the request body exceeds {app.config.get('MAX_CONTENT_LENGTH')} bytes"}.get(
            exc.code or 500, exc.description or exc.name
        )
        return error_response(exc.code or 500, _code_for(exc), message, headers=headers)

    @app.errorhandler(Exception)
    def _unhandled(exc: Exception) -> Response:
        frames = "".join(traceback.format_tb(exc.__traceback__))
        # the request span's exception attributes (content-free message, frames) as extras, never exc_info (any
        # handler would print the raw message): the OTel record carries them, so the W&B error groups see one
        # exception, and stdout shows the frames only
        logger.error(
            "unhandled %s in %s %s\n%s",
            type(exc).__name__,
            request.method,
            request.url_rule,
            frames,
            extra={"exception.type": type(exc).__name__, **exception_attributes(exc)},
        )
        return error_response(500, "internal_error", "internal server error")
