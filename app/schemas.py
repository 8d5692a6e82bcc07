"""Request and response schemas, declared once: flask-openapi3 validates with them and documents them."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Feature = Literal["summarize", "reflect", "mood"]
MAX_TEXT = 20_000
MAX_ID = 2**63 - 1  # the largest id a 64-bit INTEGER column holds; larger ids are 400, not a database error
NO_NUL = r"^[^\x00]*$"  # NUL is valid JSON but not storable in every database (PostgreSQL text)
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40, pattern=NO_NUL)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UserCreate(_Body):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_NUL)]


class UserCreated(BaseModel):
    id: int
    token: str = Field(description="Bearer token; shown once, stored only as a hash.")


class EntryCreate(_Body):
    text: Text
    tags: list[Tag] = Field(default_factory=list, max_length=20)


class EntryUpdate(_Body):
    text: Text | None = None
    tags: list[Tag] | None = Field(None, max_length=20)

    @model_validator(mode="after")
    def _not_empty(self) -> EntryUpdate:
        if self.text is None and self.tags is None:
            raise ValueError("give at least one of 'text' or 'tags'")
        return self


class EntryPath(BaseModel):
    entry_id: int = Field(ge=1, le=MAX_ID)


class AIPath(EntryPath):
    feature: Feature


class _CachedSchema(BaseModel):
    """flask-openapi3 calls ``model_json_schema()`` on every request that has a query model; the schema of a
    class never changes, so the argument-less call is computed once (≈1 ms saved per request)."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        cached = _SCHEMAS.get(cls)
        if cached is None:
            cached = _SCHEMAS[cls] = super().model_json_schema()
        return cached


_SCHEMAS: dict[type, dict[str, Any]] = {}


class ListQuery(_CachedSchema):
    """Query of ``GET /api/entries``; an unknown parameter is 400 naming it, a repeated one too (app/api/guard.py)."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(20, ge=1, le=100)
    cursor: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = None


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cached_tokens: int


class AIResult(BaseModel):
    result: str | dict[str, Any] = Field(description="Text (summarize, reflect) or {mood, score} (mood).")
    model: str
    usage: Usage
    cost_usd: float
    pricing_known: bool = True
    created_at: datetime | None = None


class EntryOut(BaseModel):
    id: int
    text: str
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    ai: dict[str, AIResult] = Field(default_factory=dict)


class EntryList(BaseModel):
    items: list[EntryOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int, type[ErrorBody]]:
    """The OpenAPI ``responses`` for these error statuses, plus the 500 every operation can answer (one place)."""
    return {status: ErrorBody for status in (*statuses, 500)}


class Health(BaseModel):
    status: str
