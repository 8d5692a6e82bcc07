"""Registration: ``POST /api/users {"name"}`` → 201 ``{"id", "token"}`` (the token is shown once)."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from app.audit import audit
from app.auth import bind_user, new_token
from app.db import get_session
from app.models import User
from app.schemas import UserCreate, UserCreated, error_responses

bp = APIBlueprint(
    "users", __name__, url_prefix="/api/users", abp_tags=[Tag(name="users")], abp_responses=error_responses(400, 413)
)


@bp.post("", responses={201: UserCreated}, operation_id="registerUser")
def register(body: UserCreate) -> tuple[dict[str, Any], int]:
    """Create a user and issue its bearer token."""
    token, token_hash = new_token()
    session = get_session()
    user = User(name=body.name, token_hash=token_hash)
    session.add(user)
    session.commit()
    pseudo = bind_user(user.id)
    audit("user.register", actor=pseudo, target=f"user:{pseudo}")
    return UserCreated(id=user.id, token=token).model_dump(), 201
