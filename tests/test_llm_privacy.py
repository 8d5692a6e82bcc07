"""Privacy of the LLM error path: a provider that echoes the prompt in its error body (some OpenAI-compatible
servers do) must not carry the diary text into span status descriptions, exception events, logs or stdout.

The real openai SDK and the real telemetry pipeline (app/telemetry.py with in-memory doubles at the ends) talk to
a real HTTP server that answers every chat completion with an error quoting the user message.
"""
from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.telemetry_testing import *  # noqa: F401,F403 - the telemetry fixtures
from app.telemetry_testing import flush


class _EchoingProvider(BaseHTTPRequestHandler):
    status = 400

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        echoed = body["messages"][-1]["content"]
        payload = json.dumps({"error": {"message": f"Invalid content: {echoed}", "type": "invalid_request_error",
                                        "param": "messages", "code": None}}).encode()
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def echoing_provider() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingProvider)
    server.status = 400  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _telemetry_texts(span_exporter, log_exporter, stdout) -> list[str]:
    flush()
    texts: list[str] = []
    for span in span_exporter.get_finished_spans():
        texts += [span.name, span.status.description or "", json.dumps(dict(span.attributes or {}), default=str)]
        texts += [json.dumps(dict(ev.attributes or {}), default=str) for ev in span.events]
    texts += [r.to_json() for r in log_exporter.get_finished_logs()]
    texts.append(stdout.getvalue())
    return texts


@pytest.mark.parametrize("status", [400, 500])
def test_provider_errors_echoing_the_prompt_reach_no_telemetry(make_app, echoing_provider, span_exporter,
                                                               log_exporter, telemetry_stdout, status):
    echoing_provider.status = status  # type: ignore[attr-defined]
    canary = f"CANARY-{secrets.token_hex(6)}"
    # plain, multi-line and long: redacting quoted literals in error messages does not catch this
    text = f"dear diary, {canary} today.\nI told her '" + "and more " * 400 + f"{canary}' twice"
    client = make_app(OPENAI_BASE_URL=f"http://127.0.0.1:{echoing_provider.server_port}/v1",
                      OPENAI_MAX_RETRIES=0).test_client()
    token = client.post("/api/users", json={"name": "a"}).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    eid = client.post("/api/entries", json={"text": text}, headers=headers).json["id"]

    resp = client.post(f"/api/entries/{eid}/ai/summarize", headers=headers)

    assert resp.status_code == 502, resp.json
    assert canary not in resp.get_data(as_text=True)
    texts = _telemetry_texts(span_exporter, log_exporter, telemetry_stdout)
    leaks = [t[:300] for t in texts if canary in t]
    assert not leaks
    # the error is still visible, by status code and type, on the GenAI span
    genai = [s for s in span_exporter.get_finished_spans() if s.attributes.get("gen_ai.operation.name")]
    assert genai and f"Error code: {status}" in (genai[0].status.description or "")
    assert genai[0].attributes.get("error.type")
