"""Shared fixtures: the ai-diary app on a temporary SQLite file, talking to the real local OpenAI-compatible
server (app/local_llm/) through the real openai SDK, with in-memory OpenTelemetry metric and log doubles."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlalchemy import func, select

from app import create_app
from app.local_llm import Faults, Running, serve_in_thread
from app.models import Entry, User
from tests.support import TEST_SECRET

pytest_plugins = ["tests.support.telemetry", "tests.support.collector"]  # their fixtures, everywhere


@pytest.fixture(scope="session")
def llm_server() -> Iterator[Running]:
    """The real local OpenAI-compatible server on a free port, without injected faults (shared: diff its stats)."""
    running = serve_in_thread(faults=Faults())
    yield running
    running.shutdown()


Script = Callable[[dict[str, Any]], tuple[int, Any]]


class _ScriptedHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
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
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()  # quick shutdown()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def log_exporter() -> InMemoryLogRecordExporter:
    return InMemoryLogRecordExporter()


@pytest.fixture
def make_app(request, tmp_path, llm_server, metric_reader, log_exporter, telemetry_overrides) -> Callable[..., Any]:
    """Build an app; keyword overrides go into create_app's config (settings or Flask keys). In a test marked
    ``telemetry`` the app uses the process's telemetry providers (``telemetry_state``, whose environment a test can
    parametrize through ``telemetry_overrides``), else in-memory ones."""
    if request.node.get_closest_marker("telemetry"):
        state = request.getfixturevalue("telemetry_state")
        meter_provider, logger_provider, own = state.meter_provider, state.logger_provider, False
    else:
        meter_provider = MeterProvider(metric_readers=[metric_reader])
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
        own = True
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
        }
        if meter_provider is not None:  # None: telemetry disabled (OTEL_SDK_DISABLED)
            config["METER_PROVIDER"] = meter_provider
            config["LOGGER_PROVIDER"] = logger_provider
        config.update(overrides)
        application = create_app(config)
        made.append(application)
        return application

    yield factory
    for application in made:
        application.extensions["db_engine"].dispose()
    if own:
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
            return (
                session.scalar(select(func.count()).select_from(User)),
                session.scalar(select(func.count()).select_from(Entry)),
            )

    return _counts


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test hides missing work: the suite allows none, so a skip fails the run (scripts/pytest.sh)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0:
        reporter.write_line("")
        reporter.write_line(f"{len(skipped)} test(s) skipped: this suite allows none (fix or remove them)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
