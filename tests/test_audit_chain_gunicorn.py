"""Several gunicorn workers auditing concurrently into one SQLite file keep one unbroken chain."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def test_three_workers_one_chain(tmp_path, llm_server):
    sock, db = tmp_path / "g.sock", tmp_path / "shared.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "PSEUDONYM_SECRET": "s",
           "OPENAI_BASE_URL": llm_server.base_url, "OPENAI_API_KEY": "k", "OTEL_SDK_DISABLED": "true",
           "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", "3", "--bind", f"unix:{sock}",
                             "--graceful-timeout", "3", "app:create_app()"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://diary", timeout=20)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "gunicorn did not become ready"
            time.sleep(0.1)

        def register(i: int) -> int:
            return client.post("/api/users", json={"name": f"u{i}"}).status_code

        def unauthorized(i: int) -> int:
            return client.get("/api/entries", headers={"Authorization": f"Bearer bad{i}"}).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(register, range(40))) + list(pool.map(unauthorized, range(40)))
        assert statuses == [201] * 40 + [401] * 40
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    res = subprocess.run([sys.executable, "-m", "app.audit_chain", "verify"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "DATABASE_URL": f"sqlite:///{db}"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OK: 80 records, chain intact")
