"""Liveness and readiness probes (no authentication, no database access for liveness)."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag

from app import db
from app.schemas import Health, error_responses

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")], abp_responses=error_responses())


@bp.get("/healthz", responses={200: Health}, operation_id="healthz")
def healthz() -> Response:
    """Liveness: the process serves requests."""
    return jsonify(status="ok")


@bp.get("/readyz", responses={200: Health, **error_responses(503)}, operation_id="readyz")
def readyz() -> Response:
    """Readiness: the database answers ``SELECT 1``."""
    if db.ping():
        return jsonify(status="ready")
    resp = jsonify(error={"code": "database_unavailable", "message": "the database is not reachable"})
    resp.status_code = 503
    return resp
