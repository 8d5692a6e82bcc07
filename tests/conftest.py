"""Shared fixtures: the ai-diary app on a temporary SQLite file, talking to the real local OpenAI-compatible
server (app/local_llm.py) through the real openai SDK, with in-memory OpenTelemetry metric and log doubles."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlalchemy import func, select

from app import create_app
from app.local_llm import Faults, Running, serve_in_thread
from app.models import Entry, User

TEST_SECRET = "test-pseudonym-secret"
ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def gunicorn_app(tmp_path: Path, llm_base_url: str, *, workers: int, database: Path,
                 timeout: float = 20.0, stdout: Path | None = None) -> Iterator[httpx.Client]:
    """``gunicorn 'app:create_app()'`` with ``workers`` workers on a unix socket (``tmp_path / "g.sock"``),
    telemetry off; yields a client once ``/readyz`` answers 200 and stops gunicorn (terminate, then kill) on exit.
    The app's JSON log lines (stdout) go to the file ``stdout`` if given, else nowhere."""
    sock = tmp_path / "g.sock"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PSEUDONYM_SECRET": "s",
           "OPENAI_BASE_URL": llm_base_url, "OPENAI_API_KEY": "k", "OTEL_SDK_DISABLED": "true",
           "LOG_LEVEL": "WARNING"}
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"unix:{sock}",
         "--graceful-timeout", "3", "app:create_app()"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE)
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://diary", timeout=timeout)
    try:
        deadline = time.monotonic() + timeout + 10
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
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        if stdout:
            out.close()


@pytest.fixture(scope="session")
def llm_server() -> Iterator[Running]:
    """The real local OpenAI-compatible server on a free port, without injected faults (shared: diff its stats)."""
    running = serve_in_thread(faults=Faults())
    yield running
    running.shutdown()


Script = Callable[[dict[str, Any]], tuple[int, Any]]


class _ScriptedHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, body = self.server.script(request)  # type: ignore[attr-defined]
        payload = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def scripted_provider() -> Iterator[Callable[[Script], str]]:
    """scripted_provider(script) -> base URL of a real HTTP server answering every POST with
    ``script(request_json) -> (status, JSON-able body or raw bytes)``: providers that misbehave on purpose."""
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedHandler)
        server.script = script  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def chat_reply(content: str, usage: dict[str, Any] | None = None, model: str = "gpt-4o-mini") -> dict[str, Any]:
    """A chat.completion body with ``content`` and ``usage``."""
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": usage if usage is not None else {"prompt_tokens": 10, "completion_tokens": 5,
                                                       "total_tokens": 15}}


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def log_exporter() -> InMemoryLogRecordExporter:
    return InMemoryLogRecordExporter()


@pytest.fixture
def make_app(tmp_path, llm_server, metric_reader, log_exporter) -> Callable[..., Any]:
    """Build an app; keyword overrides go into create_app's config (settings or Flask keys)."""
    meter_provider = MeterProvider(metric_readers=[metric_reader])
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    made: list[Any] = []

    def factory(**overrides: Any) -> Any:
        config = {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / f'diary{len(made)}.sqlite3'}",
            "PSEUDONYM_SECRET": TEST_SECRET,
            "OPENAI_BASE_URL": llm_server.base_url,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_TIMEOUT": 5.0,
            "OPENAI_MAX_RETRIES": 2,
            "AI_MODEL_DEFAULT": "gpt-4o-mini",
            "METER_PROVIDER": meter_provider,
            "LOGGER_PROVIDER": logger_provider,
        }
        config.update(overrides)
        application = create_app(config)
        made.append(application)
        return application

    yield factory
    for application in made:
        application.extensions["db_engine"].dispose()
    meter_provider.shutdown()
    logger_provider.shutdown()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def register(client) -> Callable[[str], dict[str, str]]:
    """register(name) -> Authorization headers of a newly registered user."""

    def _register(name: str = "alice") -> dict[str, str]:
        resp = client.post("/api/users", json={"name": name})
        assert resp.status_code == 201, resp.json
        return {"Authorization": f"Bearer {resp.json['token']}"}

    return _register


@pytest.fixture
def auth_headers(register) -> dict[str, str]:
    return register("alice")


@pytest.fixture
def row_counts(app) -> Callable[[], tuple[int, int]]:
    """() -> (users, entries) currently stored."""

    def _counts() -> tuple[int, int]:
        with app.extensions["db_sessionmaker"]() as session:
            return (session.scalar(select(func.count()).select_from(User)),
                    session.scalar(select(func.count()).select_from(Entry)))

    return _counts


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    points: list[Any] = []
    for rm in (data.resource_metrics if data else []):
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test hides missing work: the suite allows none, so a skip fails the run (scripts/pytest.sh)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0:
        reporter.write_line("")
        reporter.write_line(f"{len(skipped)} test(s) skipped: this suite allows none (fix or remove them)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
