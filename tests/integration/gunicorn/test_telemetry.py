"""gunicorn's own log lines (master and workers) are the service's JSON lines: a real gunicorn with the project's
gunicorn.conf.py (logconfig_dict -> app/telemetry/_logging.py). Every stderr line parses as JSON with service,
version and environment; the request URI gunicorn logs for a failing request keeps no query value."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import httpx

from tests.support import ROOT, free_port
from tests.support.gunicorn import run_gunicorn

FAILING_APP = """
def app(environ, start_response):
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("the handler failed")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"""


def test_gunicorn_lines_are_json_with_service_and_version(tmp_path: Path) -> None:
    (tmp_path / "failing.py").write_text(FAILING_APP)
    port, canary = free_port(), "cnry" + secrets.token_hex(8)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PORT": str(port),
        "GUNICORN_BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "OTEL_SDK_DISABLED": "true",
        "APP_VERSION": "4.5.6",
        "DEPLOYMENT_ENVIRONMENT": "gunicorn-test",
    }
    with run_gunicorn(
        "failing:app",
        env=env,
        cwd=tmp_path,
        log=tmp_path / "stderr.txt",
        stdout=None,
        args=["--chdir", str(tmp_path)],
        stop_timeout=30,
    ) as server:
        server.wait_for_text("telemetry initialised in worker", 30)
        assert httpx.get(f"http://127.0.0.1:{port}/ok", timeout=5).text == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/boom?q={canary}", timeout=5).status_code == 500
        # the master formats its lines without importing the app (Flask, pydantic, SQLAlchemy, the SDK):
        # workers fork from a light process and a HUP loads new code
        master_maps = Path(f"/proc/{server.pid}/maps").read_text()
        assert "pydantic_core" not in master_maps and "sqlalchemy" not in master_maps
    text = server.output()
    assert server.returncode == 0, text[-2000:]
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    assert {(r["service"], r["version"], r["environment"]) for r in lines} == {("ai-diary", "4.5.6", "gunicorn-test")}
    messages = [r["message"] for r in lines]
    assert any(m.startswith("Booting worker with pid") for m in messages)
    assert any(m.startswith("Listening at: http://127.0.0.1:") for m in messages)
    (error,) = [r for r in lines if r["message"].startswith("Error handling request")]
    assert error["message"] == "Error handling request GET /boom?q=REDACTED" and error["level"] == "ERROR"
    assert error["exception.type"] == "RuntimeError"
    assert canary not in text and "Traceback" not in text
