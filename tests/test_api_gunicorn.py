"""The real deployment shape: ``gunicorn 'app:create_app()'`` with two workers sharing one SQLite file."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import gunicorn_app


@pytest.fixture
def gunicorn_client(tmp_path, llm_server):
    with gunicorn_app(tmp_path, llm_server.base_url, workers=2, database=tmp_path / "shared.sqlite3",
                      timeout=10) as client:
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
