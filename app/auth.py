"""Bearer tokens: issued once at registration, stored as SHA-256, checked before every protected route.

On success ``g.user_id`` and ``g.pseudo_id`` are set and the request span gets ``enduser.pseudo.id`` (never the
raw id). A failure is audited and answered 401 with ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import hashlib
import secrets

from flask import g, request
from opentelemetry import trace
from sqlalchemy import select

from app.audit import FAILURE, audit
from app.db import get_session
from app.errors import ApiError
from app.models import User
from app.privacy import pseudonymize

TOKEN_BYTES = 32
ANONYMOUS = "anonymous"


def new_token() -> tuple[str, str]:
    """(token to show once, hash to store)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bind_user(user_id: int) -> str:
    pseudo = pseudonymize(user_id)
    g.user_id, g.pseudo_id = user_id, pseudo
    trace.get_current_span().set_attribute("enduser.pseudo.id", pseudo)
    return pseudo


def _reject(reason: str) -> ApiError:
    # the route template, never the raw path (client-controlled text)
    audit("auth.failed", actor=ANONYMOUS, target=f"{request.method} {request.url_rule or 'unmatched'}", outcome=FAILURE)
    return ApiError(401, "unauthorized", reason, headers={"WWW-Authenticate": 'Bearer realm="ai-diary"'})


def require_user() -> None:
    """before_request hook of the protected blueprints."""
    if request.method == "OPTIONS":
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if not header:
        raise _reject("missing Authorization: Bearer <token>")
    if scheme.lower() != "bearer" or not token or len(token) > 256:
        raise _reject("malformed Authorization header; expected 'Bearer <token>'")
    user_id = get_session().scalar(select(User.id).where(User.token_hash == hash_token(token)))
    if user_id is None:
        raise _reject("invalid token")
    bind_user(user_id)
