"""A provider answering 200 with odd bodies (non-finite or huge mood scores, bad usage counts, no choices) gets a
clean 200 or 502 and stores only valid JSON; never a 500."""

from __future__ import annotations

import json
import math

import pytest

from tests.support import chat_reply


@pytest.fixture
def entry_on(make_app, scripted_provider):
    def make(reply: dict | bytes):
        client = make_app(
            OPENAI_BASE_URL=scripted_provider(lambda _req: (200, reply)), OPENAI_MAX_RETRIES=0
        ).test_client()
        token = client.post("/api/users", json={"name": "a"}).json["token"]
        headers = {"Authorization": f"Bearer {token}"}
        eid = client.post("/api/entries", json={"text": "a calm day"}, headers=headers).json["id"]
        return client, headers, eid

    return make


@pytest.mark.parametrize(
    "score, expected",
    [
        ("NaN", None),
        ("Infinity", None),
        ("-Infinity", None),
        ("1" + "0" * 400, None),
        ("1e999", None),
        ("-3", 0.0),
        ("0.25", 0.25),
        ("true", None),
        ('"0.5"', None),
    ],
)
def test_mood_scores_are_finite_and_in_range(entry_on, score, expected):
    client, headers, eid = entry_on(chat_reply('{"mood": "Calm", "score": %s}' % score))
    resp = client.post(f"/api/entries/{eid}/ai/mood", headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = json.loads(resp.get_data(as_text=True), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert body["result"].get("score") == expected and body["result"]["mood"] == "calm"
    stored = client.get(f"/api/entries/{eid}", headers=headers)
    json.loads(stored.get_data(as_text=True), parse_constant=lambda c: pytest.fail(f"{c} stored"))
    assert stored.json["ai"]["mood"]["result"] == body["result"]


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": "many", "completion_tokens": None},
        {"prompt_tokens": -50, "completion_tokens": -1, "prompt_tokens_details": {"cached_tokens": "x"}},
        {"prompt_tokens": 1e400, "completion_tokens": 2},
    ],
)
def test_bad_usage_counts_cost_nothing_negative(entry_on, metric_reader, usage):
    client, headers, eid = entry_on(chat_reply("A short summary.", usage=usage))
    resp = client.post(f"/api/entries/{eid}/ai/summarize", headers=headers)
    if resp.status_code == 502:  # non-numeric counts make the GenAI instrumentation raise inside the SDK call
        assert resp.json["error"]["code"] == "llm_bad_output" and usage["prompt_tokens"] == "many"
        return
    assert resp.status_code == 200, resp.get_data(as_text=True)
    got = resp.json["usage"]
    assert all(isinstance(v, int) and v >= 0 for v in got.values())
    assert resp.json["cost_usd"] >= 0 and math.isfinite(resp.json["cost_usd"])


@pytest.mark.parametrize(
    "reply",
    [
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []},
        chat_reply(""),
        b"not json at all",
    ],
)
def test_empty_or_unparseable_answers_are_502(entry_on, reply):
    client, headers, eid = entry_on(reply)
    resp = client.post(f"/api/entries/{eid}/ai/summarize", headers=headers)
    assert resp.status_code == 502, resp.get_data(as_text=True)
    assert resp.json["error"]["code"].startswith("llm_")
    assert client.get(f"/api/entries/{eid}", headers=headers).json["ai"] == {}
