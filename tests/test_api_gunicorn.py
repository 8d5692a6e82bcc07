"""The real deployment shape: ``gunicorn 'app:create_app()'`` with two workers sharing one SQLite file."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def gunicorn_client(tmp_path, llm_server):
    sock = tmp_path / "g.sock"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.sqlite3'}",
           "PSEUDONYM_SECRET": "s", "OPENAI_BASE_URL": llm_server.base_url, "OPENAI_API_KEY": "k",
           "OTEL_SDK_DISABLED": "true", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"unix:{sock}", "--graceful-timeout", "3",
         "app:create_app()"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://diary", timeout=10)
    deadline = time.monotonic() + 20
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "gunicorn did not become ready"
        time.sleep(0.1)
    yield client
    client.close()
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stderr.close()


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
