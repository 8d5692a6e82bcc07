"""Privacy of the LLM error path: a provider that echoes the prompt in its error body (some OpenAI-compatible
servers do) must not carry the diary text into span status descriptions, exception events, logs or stdout.

The real openai SDK and the real telemetry pipeline (app/telemetry/ with in-memory doubles at the ends) talk to
a real HTTP server that answers every chat completion with an error quoting the user message.
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.support.telemetry import flush

pytestmark = pytest.mark.telemetry  # apps use the telemetry_state providers (tests/conftest.py)


def _echo_error(status: int):
    def script(request: dict) -> tuple[int, dict]:
        echoed = request["messages"][-1]["content"]
        return status, {
            "error": {
                "message": f"Invalid content: {echoed}",
                "type": "invalid_request_error",
                "param": "messages",
                "code": None,
            }
        }

    return script


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
def test_provider_errors_echoing_the_prompt_reach_no_telemetry(
    make_app, scripted_provider, span_exporter, log_exporter, telemetry_stdout, status
):
    canary = f"CANARY-{secrets.token_hex(6)}"
    # plain, multi-line and long: redacting quoted literals in error messages does not catch this
    text = f"dear diary, {canary} today.\nI told her '" + "and more " * 400 + f"{canary}' twice"
    client = make_app(OPENAI_BASE_URL=scripted_provider(_echo_error(status)), OPENAI_MAX_RETRIES=0).test_client()
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
    assert genai and genai[0].status.description == f"Error code: {status} (invalid_request_error)"
    assert genai[0].attributes.get("error.type")
