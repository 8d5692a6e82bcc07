"""Diary entries of the authenticated user, and the AI features on one entry.

Another user's entry is indistinguishable from a missing one (404). Lists use keyset pagination on the id,
newest first; ``next_cursor`` is opaque to clients (the document gives its exact pattern, app/schemas.py).
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

from flask import current_app, g, request
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy import select, update

from app.audit import audit
from app.auth import require_user
from app.db import get_session
from app.errors import ApiError
from app.llm import Completion
from app.models import AI_COLUMNS, Entry
from app.schemas import (
    CREATE_ENTRY,
    CURSOR_PATTERN,
    DELETE_ENTRY,
    GET_ENTRY,
    LIST_ENTRIES,
    PATTERN_RULES,
    RUN_FEATURE,
    UPDATE_ENTRY,
    AIPath,
    AIResult,
    EntryCreate,
    EntryList,
    EntryOut,
    EntryPath,
    EntryUpdate,
    ListQuery,
    error_responses,
)

# every operation: a bad parameter or body (400), no valid token (401), a body over the limit (413, app/api/guard.py)
bp = APIBlueprint(
    "entries",
    __name__,
    url_prefix="/api/entries",
    abp_tags=[Tag(name="entries")],
    abp_security=[{"bearer": []}],
    abp_responses=error_responses(400, 401, 413),
)
bp.before_request(require_user)
NOT_FOUND = error_responses(404)  # the operations on one entry (another user's entry is not found either)
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(entry_id: int) -> str:
    """URL-safe base64 of the id as 8 big-endian bytes, unpadded: 11 characters matching CURSOR_PATTERN."""
    return base64.urlsafe_b64encode(entry_id.to_bytes(8, "big")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id of a cursor matching CURSOR_PATTERN (ListQuery has checked that; checked again here): 0..MAX_ID."""
    if not _CURSOR.fullmatch(cursor):  # fullmatch: Python's $ would also match before a final newline
        raise ApiError(400, "invalid_field", f"cursor: {PATTERN_RULES[CURSOR_PATTERN]}", "cursor")
    # the first character (A-Z, a-f: 0..31) keeps the top bit clear, so the id is at most MAX_ID
    return int.from_bytes(base64.urlsafe_b64decode(cursor + "="), "big")


def _out(entry: Entry) -> dict[str, Any]:
    ai = {feature: getattr(entry, col.key) for feature, col in AI_COLUMNS.items() if getattr(entry, col.key)}
    return EntryOut(
        id=entry.id,
        text=entry.text,
        tags=list(entry.tags or []),
        created_at=entry.created_at,
        updated_at=entry.updated_at,
        ai=ai,
    ).model_dump(mode="json")


def _own(entry_id: int) -> Entry:
    entry = get_session().scalar(select(Entry).where(Entry.id == entry_id, Entry.user_id == g.user_id))
    if entry is None:
        raise ApiError(404, "not_found", f"entry {entry_id} not found")
    return entry


@bp.post("", responses={201: EntryOut}, operation_id=CREATE_ENTRY)
def create_entry(body: EntryCreate) -> tuple[dict[str, Any], int]:
    """Write a new entry."""
    session = get_session()
    entry = Entry(user_id=g.user_id, text=body.text, tags=list(body.tags))
    session.add(entry)
    session.commit()
    audit("entry.create", actor=g.pseudo_id, target=f"entry:{entry.id}")
    return _out(entry), 201


@bp.get("", responses={200: EntryList}, operation_id=LIST_ENTRIES)
def list_entries(query: ListQuery) -> dict[str, Any]:
    """Own entries, newest first; follow ``next_cursor`` for older ones."""
    stmt = select(Entry).where(Entry.user_id == g.user_id)
    if query.cursor is not None:
        stmt = stmt.where(Entry.id < decode_cursor(query.cursor))
    rows = list(get_session().scalars(stmt.order_by(Entry.id.desc()).limit(query.limit + 1)))
    page = rows[: query.limit]
    nxt = encode_cursor(page[-1].id) if len(rows) > query.limit else None
    return {"items": [_out(e) for e in page], "next_cursor": nxt}


@bp.get("/<int:entry_id>", responses={200: EntryOut, **NOT_FOUND}, operation_id=GET_ENTRY)
def get_entry(path: EntryPath) -> dict[str, Any]:
    """One own entry, with its stored AI results."""
    return _out(_own(path.entry_id))


@bp.patch("/<int:entry_id>", responses={200: EntryOut, **NOT_FOUND}, operation_id=UPDATE_ENTRY)
def update_entry(path: EntryPath, body: EntryUpdate) -> dict[str, Any]:
    """Change the text and/or the tags. Changing the text keeps earlier AI results (they record their model)."""
    entry = _own(path.entry_id)
    if body.text is not None:
        entry.text = body.text
    if body.tags is not None:
        entry.tags = list(body.tags)
    entry.updated_at = datetime.now(UTC)
    get_session().commit()
    audit("entry.update", actor=g.pseudo_id, target=f"entry:{entry.id}")
    return _out(entry)


@bp.delete("/<int:entry_id>", responses={204: None, **NOT_FOUND}, operation_id=DELETE_ENTRY)
def delete_entry(path: EntryPath) -> tuple[str, int]:
    """Delete an own entry."""
    session = get_session()
    session.delete(_own(path.entry_id))
    session.commit()
    audit("entry.delete", actor=g.pseudo_id, target=f"entry:{path.entry_id}")
    return "", 204


@bp.post(
    "/<int:entry_id>/ai/<feature>",
    responses={200: AIResult, **error_responses(404, 502, 503, 504)},
    operation_id=RUN_FEATURE,
)
def run_feature(path: AIPath) -> dict[str, Any]:
    """Run an AI feature (summarize, reflect, mood) on an entry and store the result with it.

    Takes no request body (an empty JSON object ``{}`` sent as application/json is accepted too); any other body is
    400 with field ``body``, so that a client expecting options to take effect learns that they do not.
    """
    if request.get_data(cache=True).strip() and request.get_json(silent=True) != {}:
        raise ApiError(400, "invalid_body", "this endpoint takes no request body", "body")
    session = get_session()
    text = _own(path.entry_id).text
    session.rollback()  # no transaction stays open during the LLM call
    target = f"entry:{path.entry_id}"
    try:
        done: Completion = current_app.extensions["llm"].run(path.feature, text, pseudo_id=g.pseudo_id)
    except ApiError:
        audit(f"ai.{path.feature}", actor=g.pseudo_id, target=target, outcome="failure")
        raise
    result = done.as_dict()
    stored = {**result, "created_at": datetime.now(UTC).isoformat()}
    column = AI_COLUMNS[path.feature]
    # One atomic single-column UPDATE: no lost update when features run concurrently on the same entry.
    changed = session.execute(
        update(Entry)
        .where(Entry.id == path.entry_id, Entry.user_id == g.user_id)
        .values({column: stored, Entry.updated_at: Entry.updated_at})
    ).rowcount  # type: ignore[attr-defined]  # SQLAlchemy types execute() as Result; DML gives a CursorResult
    session.commit()
    if changed != 1:  # deleted while the model was answering: nothing stored
        raise ApiError(404, "not_found", f"entry {path.entry_id} not found")
    audit(f"ai.{path.feature}", actor=g.pseudo_id, target=target)
    return result
