from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from app.models import User


def create(client, headers, text="Dear diary", tags=None):
    body = {"text": text} if tags is None else {"text": text, "tags": tags}
    resp = client.post("/api/entries", json=body, headers=headers)
    assert resp.status_code == 201, resp.json
    return resp.json


def test_create_get_update_delete(client, auth_headers, row_counts):
    entry = create(client, auth_headers, "A long day at work.", [" work ", "tired"])
    assert entry["text"] == "A long day at work." and entry["tags"] == ["work", "tired"] and entry["ai"] == {}
    assert entry["created_at"].endswith("Z") or entry["created_at"].endswith("+00:00")
    got = client.get(f"/api/entries/{entry['id']}", headers=auth_headers)
    assert got.status_code == 200 and got.json == entry

    patched = client.patch(f"/api/entries/{entry['id']}", json={"tags": []}, headers=auth_headers)
    assert patched.status_code == 200
    assert patched.json["tags"] == [] and patched.json["text"] == "A long day at work."
    patched = client.patch(f"/api/entries/{entry['id']}", json={"text": "Better now."}, headers=auth_headers)
    assert patched.json["text"] == "Better now." and patched.json["updated_at"] >= entry["updated_at"]
    assert client.get(f"/api/entries/{entry['id']}", headers=auth_headers).json["text"] == "Better now."

    deleted = client.delete(f"/api/entries/{entry['id']}", headers=auth_headers)
    assert deleted.status_code == 204 and deleted.data == b""
    assert client.get(f"/api/entries/{entry['id']}", headers=auth_headers).status_code == 404
    assert client.delete(f"/api/entries/{entry['id']}", headers=auth_headers).status_code == 404
    assert row_counts() == (1, 0)


def test_other_users_entries_are_404(client, register, row_counts):
    alice, bob = register("alice"), register("bob")
    entry = create(client, alice, "alice's secret")
    eid = entry["id"]
    for method, url, body in [
        ("get", f"/api/entries/{eid}", None),
        ("patch", f"/api/entries/{eid}", {"text": "hacked"}),
        ("delete", f"/api/entries/{eid}", None),
        ("post", f"/api/entries/{eid}/ai/summarize", None),
    ]:
        resp = getattr(client, method)(url, json=body, headers=bob)
        assert resp.status_code == 404, (method, url)
        assert resp.json["error"]["code"] == "not_found"
        assert "alice" not in resp.get_data(as_text=True)
    assert client.get(f"/api/entries/{eid}", headers=alice).json["text"] == "alice's secret"
    assert client.get("/api/entries", headers=bob).json == {"items": [], "next_cursor": None}
    assert row_counts() == (2, 1)


def test_keyset_pagination_newest_first_without_gaps_or_repeats(client, register):
    alice, bob = register("alice"), register("bob")
    ids = [create(client, alice, f"entry {i}")["id"] for i in range(23)]
    create(client, bob, "bob's")  # interleaved rows of another user never show up
    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/entries?limit=10" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=alice).json
        pages += 1
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(ids, reverse=True)
    default = client.get("/api/entries", headers=alice).json
    assert len(default["items"]) == 20 and default["next_cursor"]
    exact = client.get("/api/entries?limit=23", headers=alice).json
    assert len(exact["items"]) == 23 and exact["next_cursor"] is None


def test_pagination_is_stable_when_new_entries_arrive(client, auth_headers):
    first = [create(client, auth_headers, f"e{i}")["id"] for i in range(5)]
    page1 = client.get("/api/entries?limit=2", headers=auth_headers).json
    create(client, auth_headers, "newer")
    page2 = client.get(f"/api/entries?limit=2&cursor={page1['next_cursor']}", headers=auth_headers).json
    assert [e["id"] for e in page2["items"]] == sorted(first, reverse=True)[2:4]


@pytest.mark.parametrize(
    "qs, field",
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=1.5", "limit"),
        ("cursor=", "cursor"),
        ("cursor=!!!", "cursor"),
        ("cursor=abc", "cursor"),
        ("cursor=AAAAAAAAAAE", "cursor_ok"),
        ("cursor=" + "A" * 65, "cursor"),
        ("cursor=eDEy", "cursor"),
        ("cursor=ZTk5OTk5OTk5OTk5OTk5OTk5OTk5", "cursor"),  # "e" + 20 nines: beyond a 64-bit id
        ("foo=1", "foo"),
        ("limit=5&Limit=5", "Limit"),  # unknown parameters (names are case-sensitive)
        ("limit=1&limit=2", "limit"),
        ("limit=2&limit=2", "limit"),
        ("cursor=ZTE&cursor=ZTI", "cursor"),  # repeated
    ],
)
def test_bad_list_parameters_are_400_naming_the_field(client, auth_headers, qs, field):
    create(client, auth_headers)
    resp = client.get(f"/api/entries?{qs}", headers=auth_headers)
    if field == "cursor_ok":  # a well-formed cursor (id 1) is accepted
        assert resp.status_code == 200
        return
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["field"] == field
    if "&" in qs and field.islower():
        assert resp.json["error"]["message"] == f"{field}: given more than once"
    elif field in ("foo", "Limit"):
        assert resp.json["error"]["message"] == f"{field}: unknown field"


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "text"),
        ({"text": ""}, "text"),
        ({"text": None}, "text"),
        ({"text": 7}, "text"),
        ({"text": ["a"]}, "text"),
        ({"text": "x" * 20_001}, "text"),
        ({"text": "ok", "tags": "work"}, "tags"),
        ({"text": "ok", "tags": [1]}, "tags.0"),
        ({"text": "ok", "tags": ["ok", ""]}, "tags.1"),
        ({"text": "ok", "tags": ["t"] * 21}, "tags"),
        ({"text": "ok", "tags": ["x" * 41]}, "tags.0"),
        ({"text": "ok", "mood": "happy"}, "mood"),
        ([], "body"),
        ("just a string", "body"),
        ({"text": "nul\u0000byte"}, "text"),
        ({"text": "ok", "tags": ["a\u0000"]}, "tags.0"),
    ],
)
def test_bad_entry_bodies_are_400_and_store_nothing(client, auth_headers, row_counts, body, field):
    before = row_counts()
    resp = client.post("/api/entries", json=body, headers=auth_headers)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["field"] == field
    assert row_counts() == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": b'{"text": ', "content_type": "application/json"},
        {"data": b"\xff\xfe\x00", "content_type": "application/json"},
        {"data": "text=hello", "content_type": "application/x-www-form-urlencoded"},
        {"data": "hello", "content_type": "text/plain"},
        {},
    ],
)
def test_non_json_bodies_are_400_body(client, auth_headers, row_counts, kwargs):
    before = row_counts()
    resp = client.post("/api/entries", headers=auth_headers, **kwargs)
    assert resp.status_code == 400
    assert resp.json["error"]["field"] == "body" and resp.json["error"]["code"] == "invalid_body"
    assert row_counts() == before


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "body"),
        ({"text": ""}, "text"),
        ({"text": None, "tags": None}, "text"),
        ({"tags": "x"}, "tags"),
        ({"id": 5, "text": "x"}, "id"),
        ({"text": 3}, "text"),
    ],
)
def test_bad_updates_are_400_and_change_nothing(client, auth_headers, body, field):
    entry = create(client, auth_headers, "original", ["a"])
    resp = client.patch(f"/api/entries/{entry['id']}", json=body, headers=auth_headers)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["field"] == field
    assert client.get(f"/api/entries/{entry['id']}", headers=auth_headers).json == entry


def test_body_over_the_limit_is_413_and_stores_nothing(make_app, row_counts):
    app = make_app(MAX_CONTENT_LENGTH=4096)
    client = app.test_client()
    token = client.post("/api/users", json={"name": "a"}).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    resp = client.post("/api/entries", json={"text": "x" * 5000}, headers=headers)
    assert resp.status_code == 413
    assert resp.json["error"]["code"] == "request_entity_too_large" and "4096" in resp.json["error"]["message"]
    assert client.post("/api/users", json={"name": "n" * 5000}).status_code == 413
    assert client.get("/api/entries", headers=headers).json["items"] == []
    assert client.post("/api/entries", json={"text": "x" * 3000}, headers=headers).status_code == 201


def chunked_post(client, path, body: bytes, headers=None):
    """POST as a server that terminates chunked input (gunicorn) hands it over: no Content-Length."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        environ_overrides={"wsgi.input_terminated": True},
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked", **(headers or {})},
    )


def test_streamed_body_over_the_limit_is_413_not_invalid_json(make_app):
    app = make_app(MAX_CONTENT_LENGTH=4096)
    client = app.test_client()
    resp = chunked_post(client, "/api/users", b'{"name": "' + b"a" * 10_000 + b'"}')
    assert resp.status_code == 413, resp.json
    assert resp.json["error"]["code"] == "request_entity_too_large" and "4096" in resp.json["error"]["message"]
    exact = b'{"name": "' + b"b" * (4096 - 12) + b'"}'  # a name too long, in a body of exactly the limit
    assert len(exact) == 4096
    resp = chunked_post(client, "/api/users", exact)
    assert resp.status_code == 400 and resp.json["error"]["field"] == "name"
    assert chunked_post(client, "/api/users", b'{"name": "streamed"}').status_code == 201
    with app.extensions["db_sessionmaker"]() as session:
        assert session.scalars(select(User.name)).all() == ["streamed"]


def test_body_cut_short_is_400_invalid_body(client, row_counts):
    """The client announced 100 bytes and disconnected after 11 (werkzeug raises ClientDisconnected)."""
    resp = client.post(
        "/api/users",
        input_stream=io.BytesIO(b'{"name": "a'),
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": "100"},
    )
    assert resp.status_code == 400
    assert resp.json["error"] == {
        "code": "invalid_body",
        "field": "body",
        "message": "the request body could not be read (malformed or incomplete)",
    }
    assert row_counts() == (0, 0)


def test_unknown_routes_and_methods_are_json(client, auth_headers):
    resp = client.get("/api/nothing-here", headers=auth_headers)
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    resp = client.put("/api/entries", json={"text": "x"}, headers=auth_headers)
    assert resp.status_code == 405 and resp.json["error"]["code"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]
    resp = client.get("/api/entries/abc", headers=auth_headers)  # not an <int:...>: no route matches
    assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"
    resp = client.get("/api/entries/0", headers=auth_headers)  # the route matches; ids start at 1
    assert resp.status_code == 400 and resp.json["error"]["field"] == "entry_id"


def test_body_errors_explain_themselves(client, auth_headers):
    entry = create(client, auth_headers)
    resp = client.patch(f"/api/entries/{entry['id']}", json={}, headers=auth_headers)
    assert "text" in resp.json["error"]["message"] and "tags" in resp.json["error"]["message"]
    resp = client.post("/api/entries", data="{oops", content_type="application/json", headers=auth_headers)
    assert resp.json["error"]["message"] == "the body is not valid JSON"
    resp = client.post("/api/entries", data="null", content_type="application/json", headers=auth_headers)
    assert resp.json["error"]["message"] == "the body must be a JSON object"
    resp = client.post("/api/entries", data="hi", content_type="text/plain", headers=auth_headers)
    assert "Content-Type: application/json" in resp.json["error"]["message"]


@pytest.mark.parametrize("entry_id", ["9223372036854775808", "9" * 30])
def test_ids_beyond_64_bits_are_400_naming_the_field(client, auth_headers, entry_id):
    for method, url in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/ai/summarize")):
        resp = client.open(f"/api/entries/{entry_id}{url}", method=method, json={"text": "x"}, headers=auth_headers)
        assert resp.status_code == 400, (method, url, resp.json)
        assert resp.json["error"]["field"] == "entry_id"
    assert client.get("/api/entries/9223372036854775807", headers=auth_headers).status_code == 404


@pytest.mark.parametrize("path, headers_needed", [("/api/entries", True), ("/api/users", False)])
def test_json_nested_too_deeply_is_400_body(client, auth_headers, row_counts, path, headers_needed):
    before = row_counts()
    deep = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    resp = client.post(path, data=deep, content_type="application/json", headers=auth_headers if headers_needed else {})
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == {"code": "invalid_body", "field": "body", "message": "the body is not valid JSON"}
    assert row_counts() == before
