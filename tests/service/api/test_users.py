from __future__ import annotations

import hashlib

import pytest
from opentelemetry._logs import SeverityNumber
from sqlalchemy import select

from app.models import User
from app.privacy import pseudonymize


def audit_records(log_exporter):
    return [
        r.log_record
        for r in log_exporter.get_finished_logs()
        if r.instrumentation_scope and r.instrumentation_scope.name == "audit"
    ]


def test_register_returns_id_and_token_stored_only_as_hash(app, client, log_exporter):
    resp = client.post("/api/users", json={"name": "  Alice  "})
    assert resp.status_code == 201
    body = resp.json
    assert set(body) == {"id", "token"} and len(body["token"]) >= 40
    with app.extensions["db_sessionmaker"]() as s:
        user = s.scalar(select(User).where(User.id == body["id"]))
    assert user.name == "Alice"
    assert user.token_hash == hashlib.sha256(body["token"].encode()).hexdigest()
    assert body["token"] not in user.token_hash
    (rec,) = audit_records(log_exporter)
    assert rec.body == "audit user.register"
    assert rec.severity_number == SeverityNumber.INFO
    assert rec.attributes["audit.actor"] == pseudonymize(body["id"]) != str(body["id"])
    assert rec.attributes["audit.outcome"] == "success"
    assert rec.attributes["client.address"] == "127.0.0.1"
    assert "user_agent.original" in rec.attributes


def test_tokens_are_unique_and_authenticate_their_user(client, register):
    a, b = register("a"), register("b")
    assert a != b
    client.post("/api/entries", json={"text": "mine"}, headers=a)
    assert client.get("/api/entries", headers=a).json["items"][0]["text"] == "mine"
    assert client.get("/api/entries", headers=b).json["items"] == []


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"json": {}}, "name"),
        ({"json": {"name": ""}}, "name"),
        ({"json": {"name": "   "}}, "name"),
        ({"json": {"name": 42}}, "name"),
        ({"json": {"name": "x" * 101}}, "name"),
        ({"json": {"name": "ok", "admin": True}}, "admin"),
        ({"json": ["name"]}, "body"),
        ({"data": "{not json", "content_type": "application/json"}, "body"),
        ({"data": "name=alice", "content_type": "application/x-www-form-urlencoded"}, "body"),
        ({}, "body"),
    ],
)
def test_bad_registration_is_400_naming_the_field_and_stores_nothing(client, row_counts, kwargs, field):
    before = row_counts()
    resp = client.post("/api/users", **kwargs)
    assert resp.status_code == 400
    err = resp.json["error"]
    assert err["field"] == field and err["message"]
    assert err["code"] == ("invalid_body" if field == "body" else "invalid_field")
    assert row_counts() == before


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nope-canary-tok", "Basic dXNlcjpwYXNz", "token canary-tok-2", "Bearer " + "x" * 300],
)
def test_protected_routes_need_a_valid_bearer_token(client, auth_headers, log_exporter, header):
    headers = {"Authorization": header} if header else {}
    for method, url in [
        ("get", "/api/entries"),
        ("post", "/api/entries"),
        ("get", "/api/entries/1"),
        ("patch", "/api/entries/1"),
        ("delete", "/api/entries/1"),
        ("post", "/api/entries/1/ai/summarize"),
    ]:
        resp = getattr(client, method)(url, headers=headers, json={"text": "x"})
        assert resp.status_code == 401, (method, url)
        assert resp.json["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    failed = [r for r in audit_records(log_exporter) if r.attributes["audit.action"] == "auth.failed"]
    assert len(failed) == 6
    assert all(r.severity_number == SeverityNumber.WARN and r.attributes["audit.outcome"] == "failure" for r in failed)
    if header:
        assert not any(header.split(" ", 1)[-1] in str(dict(r.attributes)) for r in failed)


@pytest.mark.parametrize(
    "proxies, forwarded, expected",
    [
        (0, "203.0.113.7", "10.0.0.5"),  # default: X-Forwarded-For is client-controlled, never trusted
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "198.51.100.66, 203.0.113.7", "203.0.113.7"),  # a spoofed first hop is ignored: the ALB appends the peer
        (2, "198.51.100.66, 203.0.113.7", "198.51.100.66"),
        (1, None, "10.0.0.5"),
    ],
)
def test_audit_client_address_follows_trusted_proxies_only(make_app, log_exporter, proxies, forwarded, expected):
    client = make_app(TRUSTED_PROXY_COUNT=proxies).test_client()
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    resp = client.post("/api/users", json={"name": "a"}, headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert resp.status_code == 201
    (rec,) = audit_records(log_exporter)
    assert rec.attributes["client.address"] == expected
