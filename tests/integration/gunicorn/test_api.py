"""The real deployment shape: ``gunicorn 'app:create_app()'`` with two workers sharing one SQLite file."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.gunicorn import gunicorn_app


@pytest.fixture
def gunicorn_client(tmp_path, llm_server):
    with gunicorn_app(
        tmp_path, llm_server.base_url, workers=2, database=tmp_path / "shared.sqlite3", timeout=10
    ) as client:
        yield client


def test_two_workers_share_one_sqlite_file_under_concurrent_writes(gunicorn_client):
    token = gunicorn_client.post("/api/users", json={"name": "a"}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}

    def write(i: int) -> int:
        return gunicorn_client.post("/api/entries", json={"text": f"entry {i}"}, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(write, range(60)))
    assert statuses == [201] * 60
    page = gunicorn_client.get("/api/entries?limit=100", headers=headers).json()
    assert len(page["items"]) == 60 and len({e["id"] for e in page["items"]}) == 60
    eid = page["items"][0]["id"]
    ai = gunicorn_client.post(f"/api/entries/{eid}/ai/summarize", headers=headers)
    assert ai.status_code == 200 and ai.json()["cost_usd"] > 0
    assert gunicorn_client.get("/api/openapi.json").status_code == 200


def _raw_request(sock_path, request: bytes) -> tuple[int, dict]:
    """Send raw bytes on gunicorn's unix socket; (status, JSON body) of the answer (the worker closes after it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock_path))
        s.sendall(request)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_malformed_chunked_body_is_400_not_an_unhandled_error(tmp_path, llm_server):
    log = tmp_path / "app.log"
    with gunicorn_app(
        tmp_path, llm_server.base_url, workers=1, database=tmp_path / "d.sqlite3", timeout=10, stdout=log
    ):
        status, body = _raw_request(
            tmp_path / "g.sock",
            (
                b"POST /api/users HTTP/1.1\r\nHost: diary\r\nContent-Type: application/json\r\n"
                b'Transfer-Encoding: chunked\r\n\r\nZZ\r\n{"name": "a"}\r\n0\r\n\r\n'
            ),
        )
        ok_status, ok_body = _raw_request(
            tmp_path / "g.sock",
            (
                b"POST /api/users HTTP/1.1\r\nHost: diary\r\nContent-Type: application/json\r\n"
                b'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nd\r\n{"name": "a"}\r\n0\r\n\r\n'
            ),
        )
    assert status == 400 and body["error"]["code"] == "invalid_body" and body["error"]["field"] == "body"
    assert ok_status == 201 and ok_body["token"]  # well-formed chunked bodies still work
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(r["message"] == "request body could not be read: InvalidChunkSize" for r in lines), lines
    assert not [r for r in lines if r["level"] == "ERROR" or "unhandled" in r["message"]]
