"""Request and response schemas, declared once: flask-openapi3 validates with them and documents them.

The document says exactly what the API validates: a request valid under the document is accepted (or answered 401
or 404 for a missing token or entry), a request the document rejects is 400 naming the field. Every rule is one
pattern or keyword that both sides read -- pydantic validates with the very pattern the document publishes -- and
the patterns keep to the syntax that Rust's regex (pydantic), ECMA-262 (JSON Schema validators) and Python's re
read alike (no ``\\s``, ``\\d``, ``\\w``: their meanings differ between the three).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from flask_openapi3.types import ResponseDict
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

Feature = Literal["summarize", "reflect", "mood"]
MAX_TEXT = 20_000
MAX_TAG = 40
MAX_NAME = 100
MAX_ID = 2**63 - 1  # the largest id a 64-bit INTEGER column holds; larger ids are 400, not a database error
NO_NUL = r"^[^\x00]*$"  # NUL is valid JSON but not storable in every database (PostgreSQL text)

# Whitespace as Python's str.isspace() sees it, spelled out: regex engines disagree on ``\s`` (ECMA-262's includes
# U+FEFF and not U+001C..U+001F nor U+0085). WHITESPACE_CLASS is the same set as a character-class body.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)
WHITESPACE_CLASS = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def trimmed_pattern(max_length: int) -> str:
    """A string that, once its surrounding WHITESPACE is removed, has 1..max_length characters and no NUL: so a
    whitespace-only string does not match, and neither does one whose trimmed length is over the limit (however
    much whitespace surrounds it)."""
    ws, solid = f"[{WHITESPACE_CLASS}]", f"[^{WHITESPACE_CLASS}\\x00]"
    return rf"^{ws}*{solid}(?:[^\x00]{{0,{max_length - 2}}}{solid})?{ws}*$"


def _trim(value: str) -> str:
    return value.strip(WHITESPACE)


TAG_PATTERN = trimmed_pattern(MAX_TAG)
NAME_PATTERN = trimmed_pattern(MAX_NAME)
# The cursor is the URL-safe base64 (no padding) of a 64-bit big-endian id below 2**63: 11 characters, the first
# of which carries the top (zero) bit, the last two spare (zero) bits. Every string matching the pattern decodes to
# an id in 0..2**63-1 (one that points nowhere gives the entries below it: possibly none), and no other string does.
CURSOR_PATTERN = r"^[A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048]$"

# Pattern -> what a 400 says about a value that does not match (app/errors.py): the rule, never the regex.
PATTERN_RULES = {
    NO_NUL: "must not contain NUL (U+0000)",
    TAG_PATTERN: f"must have 1 to {MAX_TAG} characters once surrounding whitespace is removed, none of them NUL",
    NAME_PATTERN: f"must have 1 to {MAX_NAME} characters once surrounding whitespace is removed, none of them NUL",
    CURSOR_PATTERN: "not a cursor returned by this API (pass next_cursor back unchanged)",
}


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional(**kwargs: Any) -> Any:
    """An optional field, None when left out: the document shows no ``default: null`` (null is not a value of the
    field's type, and an explicit null is 400 naming the field)."""
    return Field(None, json_schema_extra=_no_default, **kwargs)


Tag = Annotated[
    str,
    StringConstraints(pattern=TAG_PATTERN),
    AfterValidator(_trim),
    Field(description=f"Surrounding whitespace is removed; 1 to {MAX_TAG} characters remain."),
]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT, pattern=NO_NUL)]


class OpenAPIConfig(ConfigDict, total=False):
    """pydantic's model config plus flask-openapi3's ``openapi_extra`` (a response's example, headers, links)."""

    openapi_extra: dict[str, Any]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UserCreate(_Body):
    model_config = OpenAPIConfig(openapi_extra={"example": {"name": "Alice"}})

    name: Annotated[
        str,
        StringConstraints(pattern=NAME_PATTERN),
        AfterValidator(_trim),
        Field(description=f"Surrounding whitespace is removed; 1 to {MAX_NAME} characters remain."),
    ]


# operationIds of the API (app/api/): the response links below name them
LIST_ENTRIES, CREATE_ENTRY, GET_ENTRY, UPDATE_ENTRY, DELETE_ENTRY, RUN_FEATURE = (
    "listEntries",
    "createEntry",
    "getEntry",
    "updateEntry",
    "deleteEntry",
    "runFeature",
)


def _links(source: str, *operation_ids: str, parameter: str = "entry_id") -> dict[str, Any]:
    """OpenAPI ``links`` feeding the value at ``$response.body#/<source>`` to ``parameter`` of each operation."""
    return {
        op[0].upper() + op[1:]: {"operationId": op, "parameters": {parameter: f"$response.body#/{source}"}}
        for op in operation_ids
    }


class UserCreated(BaseModel):
    id: int
    token: str = Field(description="Bearer token; shown once, stored only as a hash.")


class EntryCreate(_Body):
    model_config = OpenAPIConfig(openapi_extra={"example": {"text": "A long day at work.", "tags": [" work "]}})

    text: Text
    tags: list[Tag] = Field(default_factory=list, max_length=20)


class EntryUpdate(_Body):
    """At least one of the fields (``minProperties``); a field left out keeps its value, null is not a value."""

    model_config = OpenAPIConfig(
        json_schema_extra={"minProperties": 1}, openapi_extra={"example": {"tags": ["work", "tired"]}}
    )

    text: Text = optional()
    tags: list[Tag] = optional(max_length=20)

    @model_validator(mode="after")
    def _not_empty(self) -> EntryUpdate:
        if self.text is None and self.tags is None:  # only {}: an explicit null is the field's own 400
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
_DECIMAL = re.compile(r"-?[0-9]+")


def _decimal(value: Any) -> Any:
    """A query integer is written in decimal digits: pydantic's lax parsing would also take ' 5', '1_0', '5.0'."""
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise PydanticCustomError(
            "int_parsing", "Input should be a valid integer, unable to parse string as an integer"
        )
    return value


class ListQuery(_CachedSchema):
    """Query of ``GET /api/entries``; an unknown parameter is 400 naming it, a repeated one too (app/api/guard.py)."""

    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, BeforeValidator(_decimal)] = Field(20, ge=1, le=100)
    cursor: Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)] = optional(
        description="Opaque: the next_cursor of the previous page; left out: from the newest entry."
    )


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
    # every response carrying an entry (201 of POST, 200 of GET and PATCH) links its id to the entry's operations
    model_config = OpenAPIConfig(
        openapi_extra={"links": _links("id", GET_ENTRY, UPDATE_ENTRY, DELETE_ENTRY, RUN_FEATURE)}
    )

    id: int = Field(ge=1, le=MAX_ID)
    text: str
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    ai: dict[str, AIResult] = Field(default_factory=dict)


class EntryList(BaseModel):
    # next_cursor feeds the next page (a null one, on the last page, is no value: the link is not followed); no
    # link from items/0/id, which an empty page does not have
    model_config = OpenAPIConfig(openapi_extra={"links": _links("next_cursor", LIST_ENTRIES, parameter="cursor")})

    items: list[EntryOut]
    next_cursor: Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)] | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


# 401 and 503 share ErrorBody (same title, same schema: no docstring, it would become a description) and add their
# headers: the WWW-Authenticate challenge (app/auth.py); Retry-After when the AI provider is rate limiting.
class _Unauthorized(ErrorBody):
    model_config = OpenAPIConfig(
        title="ErrorBody",
        openapi_extra={
            "headers": {
                "WWW-Authenticate": {
                    "required": True,
                    "schema": {"type": "string", "pattern": "^Bearer "},
                    "description": "The bearer challenge: the token is the one POST /api/users issued.",
                }
            }
        },
    )


class _Unavailable(ErrorBody):
    model_config = OpenAPIConfig(
        title="ErrorBody",
        openapi_extra={
            "headers": {
                "Retry-After": {
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    "description": "Seconds to wait before retrying (AI provider rate limiting).",
                }
            }
        },
    )


_ERROR_MODELS: dict[int, type[ErrorBody]] = {401: _Unauthorized, 503: _Unavailable}


def error_responses(*statuses: int) -> ResponseDict:
    """The OpenAPI ``responses`` for these error statuses, plus the 500 every operation can answer (one place)."""
    return {status: _ERROR_MODELS.get(status, ErrorBody) for status in (*statuses, 500)}


class Health(BaseModel):
    status: str
