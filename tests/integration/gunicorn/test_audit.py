"""Several gunicorn workers auditing concurrently into one SQLite file keep one unbroken chain."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.support import ROOT
from tests.support.gunicorn import gunicorn_app


def test_three_workers_one_chain(tmp_path, llm_server):
    db = tmp_path / "shared.sqlite3"
    with gunicorn_app(tmp_path, llm_server.base_url, workers=3, database=db) as client:

        def register(i: int) -> int:
            return client.post("/api/users", json={"name": f"u{i}"}).status_code

        def unauthorized(i: int) -> int:
            return client.get("/api/entries", headers={"Authorization": f"Bearer bad{i}"}).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(register, range(40))) + list(pool.map(unauthorized, range(40)))
        assert statuses == [201] * 40 + [401] * 40
    res = subprocess.run(
        [sys.executable, "-m", "app.audit", "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{db}"},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OK: 80 records, chain intact")
