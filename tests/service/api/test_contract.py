"""The OpenAPI document is the contract: a request valid under the published schema is accepted (or 401/404), one it
rejects is 400 naming the field. Each case is judged twice -- by the document's own schema (jsonschema-rs, the
ECMA-262 reading that generated clients and schemathesis use) and by the server -- and the two must agree."""

from __future__ import annotations

import re
import sys
from typing import Any

import jsonschema_rs
import pytest
import schemathesis

from app.api.entries import decode_cursor, encode_cursor
from app.schemas import CURSOR_PATTERN, MAX_ID, WHITESPACE, WHITESPACE_CLASS

WS_SAMPLES = [
    " ",
    "\t\n",
    "\x0b\x0c\r",
    "\x1c\x1f",
    "\x85",
    "\xa0",
    "\u1680",
    "\u2000\u200a",
    "\u2028\u2029",
    "\u202f\u205f",
    "\u3000",
]


@pytest.fixture
def doc(client) -> dict[str, Any]:
    return client.get("/api/openapi.json").json


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A validator of ``schema`` resolving ``#/components/...`` in the document (OpenAPI 3.1: JSON Schema 2020-12)."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})


def body_schema(doc: dict[str, Any], path: str, method: str) -> jsonschema_rs.Validator:
    return validator(doc, doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"])


def param_schema(doc: dict[str, Any], path: str, method: str, name: str) -> jsonschema_rs.Validator:
    (param,) = [p for p in doc["paths"][path][method]["parameters"] if p["name"] == name]
    return validator(doc, param["schema"])


def test_the_document_is_valid_openapi_3_1_and_its_links_name_real_operations(doc):
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 metaschema (schemathesis' own validation)
    operations = {op["operationId"]: op for item in doc["paths"].values() for op in item.values()}
    assert len(operations) == sum(len(item) for item in doc["paths"].values())  # unique ids
    links = [
        (link, response)
        for op in operations.values()
        for response in op["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert {link["operationId"] for link, _ in links} == {
        "getEntry",
        "updateEntry",
        "deleteEntry",
        "runFeature",
        "listEntries",
    }
    for link, _ in links:
        target = operations[link["operationId"]]
        assert set(link["parameters"]) <= {p["name"] for p in target["parameters"]}
    created = operations["createEntry"]["responses"]["201"]["links"]
    assert {name: link["parameters"] for name, link in created.items()} == {
        op: {"entry_id": "$response.body#/id"} for op in ("GetEntry", "UpdateEntry", "DeleteEntry", "RunFeature")
    }
    for name in doc["components"]["schemas"]:  # every schema compiles (patterns as ECMA-262), every $ref resolves
        validator(doc, {"$ref": f"#/components/schemas/{name}"})


def test_every_operation_documents_exactly_its_statuses(doc):
    def statuses(path: str, method: str) -> set[str]:
        return set(doc["paths"][path][method]["responses"])

    common = {"400", "401", "413", "500"}
    assert statuses("/api/users", "post") == {"201", "400", "413", "500"}
    assert statuses("/api/entries", "get") == {"200"} | common
    assert statuses("/api/entries", "post") == {"201"} | common
    for method, ok in (("get", "200"), ("patch", "200"), ("delete", "204")):
        assert statuses("/api/entries/{entry_id}", method) == {ok, "404"} | common
    assert statuses("/api/entries/{entry_id}/ai/{feature}", "post") == {"200", "404", "502", "503", "504"} | common
    unauthorized = doc["paths"]["/api/entries"]["get"]["responses"]["401"]
    assert unauthorized["headers"]["WWW-Authenticate"]["required"] is True
    assert doc["paths"]["/api/entries/{entry_id}"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/api/users"]["post"]
    for name in ("entry_id",):
        schema = next(p for p in doc["paths"]["/api/entries/{entry_id}"]["get"]["parameters"] if p["name"] == name)
        assert (schema["schema"]["minimum"], schema["schema"]["maximum"]) == (1, MAX_ID)


def test_unauthorized_answers_carry_the_documented_challenge(client):
    resp = client.get("/api/entries")
    assert resp.status_code == 401 and re.match(r"^Bearer ", resp.headers["WWW-Authenticate"])


# --- PATCH: at least one field, no nulls -------------------------------------------------------------------------


def test_patch_schema_has_min_properties_and_no_nullable_fields(doc):
    schema = doc["components"]["schemas"]["EntryUpdate"]
    assert schema["minProperties"] == 1 and schema["additionalProperties"] is False
    for prop in schema["properties"].values():
        assert "anyOf" not in prop and "default" not in prop and prop["type"] in ("string", "array")


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "body"),
        ({"text": None}, "text"),
        ({"tags": None}, "tags"),
        ({"text": None, "tags": ["a"]}, "text"),
        ({"text": "ok", "tags": None}, "tags"),
        ({"text": None, "tags": None}, "text"),
        ({"text": "new"}, None),
        ({"tags": []}, None),
        ({"text": "new", "tags": [" x "]}, None),
    ],
)
def test_patch_is_accepted_exactly_when_the_schema_says_so(client, auth_headers, doc, body, field):
    eid = client.post("/api/entries", json={"text": "original", "tags": ["a"]}, headers=auth_headers).json["id"]
    schema_valid = body_schema(doc, "/api/entries/{entry_id}", "patch").is_valid(body)
    resp = client.patch(f"/api/entries/{eid}", json=body, headers=auth_headers)
    assert schema_valid == (field is None)
    if field is None:
        assert resp.status_code == 200, resp.json
        return
    assert resp.status_code == 400 and resp.json["error"]["field"] == field
    after = client.get(f"/api/entries/{eid}", headers=auth_headers).json
    assert (after["text"], after["tags"]) == ("original", ["a"])
    if field == "body":
        assert resp.json["error"]["message"] == "give at least one of 'text' or 'tags'"


# --- tags and names: trimmed, non-empty ----------------------------------------------------------------------------


def test_the_whitespace_class_is_exactly_what_strip_removes():
    spaces = {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    assert set(WHITESPACE) == spaces
    in_class = {chr(c) for c in range(0x3100) if re.fullmatch(f"[{WHITESPACE_CLASS}]", chr(c))}
    assert in_class == spaces


@pytest.mark.parametrize(
    "tag, stored",
    [
        *[(ws, None) for ws in WS_SAMPLES],
        ("", None),
        (" \u3000 ", None),
        ("a", "a"),
        (" work ", "work"),
        ("\u3000x\u3000", "x"),
        ("\ufeff", "\ufeff"),  # U+FEFF is no whitespace here
        ("two words", "two words"),
        ("x" * 40, "x" * 40),
        ("\t" + "x" * 40 + "\n" * 50, "x" * 40),
        ("x" * 41, None),
        (" " + "x" * 39 + " y", None),
        ("a\x00", None),
        ("\x00", None),
    ],
)
def test_a_tag_is_accepted_exactly_when_the_schema_says_so(client, auth_headers, doc, row_counts, tag, stored):
    body = {"text": "entry", "tags": ["ok", tag]}
    schema_valid = body_schema(doc, "/api/entries", "post").is_valid(body)
    resp = client.post("/api/entries", json=body, headers=auth_headers)
    assert schema_valid == (stored is not None)
    if stored is not None:
        assert resp.status_code == 201 and resp.json["tags"] == ["ok", stored]
        return
    assert resp.status_code == 400 and resp.json["error"]["field"] == "tags.1"
    assert row_counts()[1] == 0
    if tag.strip(WHITESPACE) == "" or len(tag.strip(WHITESPACE)) > 40:
        assert resp.json["error"]["message"] == (
            "tags.1: must have 1 to 40 characters once surrounding whitespace is removed, none of them NUL"
        )
    # the PATCH of a tag follows the same rule
    eid = client.post("/api/entries", json={"text": "x"}, headers=auth_headers).json["id"]
    patched = client.patch(f"/api/entries/{eid}", json={"tags": [tag]}, headers=auth_headers)
    assert patched.status_code == 400 and patched.json["error"]["field"] == "tags.0"


@pytest.mark.parametrize(
    "name, ok",
    [
        (" ", False),
        ("\u3000\t", False),
        ("  Alice  ", True),
        ("a" * 100, True),
        (" " + "a" * 101, False),
        ("b\x00", False),
    ],
)
def test_a_name_is_accepted_exactly_when_the_schema_says_so(client, doc, name, ok):
    assert body_schema(doc, "/api/users", "post").is_valid({"name": name}) == ok
    resp = client.post("/api/users", json={"name": name})
    assert resp.status_code == (201 if ok else 400), resp.json
    if not ok:
        assert resp.json["error"]["field"] == "name" and "pattern" not in resp.json["error"]["message"]


# --- the cursor ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry_id", [0, 1, 2, 255, 256, 2**32, 2**62, MAX_ID - 1, MAX_ID])
def test_cursor_round_trips_and_matches_its_pattern(entry_id):
    cursor = encode_cursor(entry_id)
    assert re.fullmatch(CURSOR_PATTERN, cursor) and decode_cursor(cursor) == entry_id


def test_every_string_the_cursor_pattern_matches_decodes_to_a_64_bit_id():
    first, last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef", "AEIMQUYcgkosw048"
    middle = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for f in first:
        for m in middle:
            for la in last:
                cursor = f + m * 9 + la
                assert 0 <= decode_cursor(cursor) <= MAX_ID and encode_cursor(decode_cursor(cursor)) == cursor


@pytest.mark.parametrize(
    "cursor, ids",
    [
        ("AAAAAAAAAAA", []),  # id 0: nothing below it
        ("f_________8", "all"),  # MAX_ID: everything
        ("AAAAAAAAAAE", []),  # id 1: the user's first entry is 1, nothing below
    ],
)
def test_a_cursor_matching_the_pattern_but_pointing_nowhere_is_a_page(client, auth_headers, doc, cursor, ids):
    created = [client.post("/api/entries", json={"text": f"e{i}"}, headers=auth_headers).json["id"] for i in range(3)]
    assert param_schema(doc, "/api/entries", "get", "cursor").is_valid(cursor)
    resp = client.get(f"/api/entries?cursor={cursor}", headers=auth_headers)
    assert resp.status_code == 200
    assert [e["id"] for e in resp.json["items"]] == (sorted(created, reverse=True) if ids == "all" else ids)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "AAAAAAAAAA",
        "AAAAAAAAAAAA",
        "gAAAAAAAAAA",  # 10 / 12 characters; top bit set (id >= 2**63)
        "AAAAAAAAAAB",  # spare bits set: not what encode_cursor makes
        "AAAAAAAAAA=",
        "AAAAAAAAAA+",
        "ZTE",
        "AAAAAAAAAAE%0A",  # padding, standard base64, old format, newline
    ],
)
def test_a_cursor_not_matching_the_pattern_is_400_naming_cursor(client, auth_headers, doc, cursor):
    resp = client.get(f"/api/entries?cursor={cursor}", headers=auth_headers)
    raw = cursor.replace("%0A", "\n")
    assert not param_schema(doc, "/api/entries", "get", "cursor").is_valid(raw)
    assert resp.status_code == 400
    assert resp.json["error"] == {
        "code": "invalid_field",
        "field": "cursor",
        "message": "cursor: not a cursor returned by this API (pass next_cursor back unchanged)",
    }


def test_next_cursor_in_responses_matches_the_documented_pattern(client, auth_headers, doc):
    for i in range(3):
        client.post("/api/entries", json={"text": f"e{i}"}, headers=auth_headers)
    page = client.get("/api/entries?limit=2", headers=auth_headers).json
    assert validator(doc, {"$ref": "#/components/schemas/EntryList"}).is_valid(page)
    assert re.fullmatch(CURSOR_PATTERN, page["next_cursor"])


# --- text and ids ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, ok",
    [
        (" ", True),
        ("x" * 20_000, True),
        ("\U0001f600" * 20_000, True),
        ("x" * 20_001, False),
        ("a\x00b", False),
        ("", False),
    ],
)
def test_text_is_accepted_exactly_when_the_schema_says_so(client, auth_headers, doc, text, ok):
    assert body_schema(doc, "/api/entries", "post").is_valid({"text": text}) == ok
    resp = client.post("/api/entries", json={"text": text}, headers=auth_headers)
    assert resp.status_code == (201 if ok else 400)
    if not ok:
        assert resp.json["error"]["field"] == "text" and "pattern" not in resp.json["error"]["message"]


def test_lone_surrogates_are_400_naming_the_field_not_500(client, auth_headers):
    resp = client.post(
        "/api/entries", data='{"text": "a\\ud800b"}', content_type="application/json", headers=auth_headers
    )
    assert resp.status_code == 400 and resp.json["error"]["field"] == "text"


@pytest.mark.parametrize(
    "limit, status",
    [
        ("5", 200),
        ("05", 200),
        ("100", 200),
        ("+5", 400),
        ("%205", 400),
        ("5%20", 400),
        ("5.0", 400),
        ("1_0", 400),
        ("1e1", 400),
        ("0x5", 400),
        ("-1", 400),
        ("101", 400),
        ("", 400),
    ],
)
def test_limit_is_a_decimal_integer_in_range(client, auth_headers, limit, status):
    resp = client.get(f"/api/entries?limit={limit}", headers=auth_headers)
    assert resp.status_code == status
    if status == 400:
        assert resp.json["error"]["field"] == "limit"


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_ids_are_ascii_digits_only(client, auth_headers, method):
    eid = client.post("/api/entries", json={"text": "x"}, headers=auth_headers).json["id"]
    other_script = "".join(chr(0x0660 + int(d)) for d in str(eid))  # Arabic-Indic digits of the same id
    resp = client.open(f"/api/entries/{other_script}", method=method.upper(), json={"text": "y"}, headers=auth_headers)
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    assert client.get(f"/api/entries/{eid}", headers=auth_headers).json["text"] == "x"
