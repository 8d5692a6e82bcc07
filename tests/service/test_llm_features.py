"""AI features end to end: real openai SDK → real local OpenAI-compatible server (app/local_llm/)."""

from __future__ import annotations

import logging

import pytest

from app.llm import _ContentFreeErrorsClient
from app.local_llm import FAIL_ATTEMPTS_HEADER, FAIL_HEADER, Faults, serve_in_thread
from otel_wandb.pricing import PriceList
from tests.support import free_port, metric_points


@pytest.fixture
def entry(client, auth_headers):
    resp = client.post(
        "/api/entries", json={"text": "Walked by the river, felt calm after a hard week."}, headers=auth_headers
    )
    return resp.json


@pytest.fixture
def faulty():
    """faulty(**Faults fields) -> base_url of a local LLM server that injects those faults."""
    started = []

    def start(**faults):
        running = serve_in_thread(faults=Faults(**faults))
        started.append(running)
        return running

    yield start
    for running in started:
        running.shutdown()


@pytest.mark.parametrize("feature", ["summarize", "reflect", "mood"])
def test_feature_returns_result_usage_cost_and_stores_it(client, auth_headers, entry, llm_server, feature):
    before = llm_server.stats()
    resp = client.post(f"/api/entries/{entry['id']}/ai/{feature}", headers=auth_headers)
    assert resp.status_code == 200, resp.json
    body = resp.json
    after = llm_server.stats()
    usage = body["usage"]
    assert after["requests"] - before["requests"] == 1
    assert usage["input_tokens"] == after["prompt_tokens"] - before["prompt_tokens"] > 0
    assert usage["output_tokens"] == after["completion_tokens"] - before["completion_tokens"] > 0
    assert usage["cached_tokens"] == after["cached_tokens"] - before["cached_tokens"]
    assert body["model"] == "gpt-4o-mini" and body["pricing_known"] is True
    expected = (
        (usage["input_tokens"] - usage["cached_tokens"]) * 0.15
        + usage["cached_tokens"] * 0.075
        + usage["output_tokens"] * 0.60
    ) / 1e6
    assert body["cost_usd"] == pytest.approx(expected, rel=1e-9) and body["cost_usd"] > 0
    if feature == "mood":
        assert isinstance(body["result"]["mood"], str) and 0 <= body["result"]["score"] <= 1
    else:
        assert isinstance(body["result"], str) and len(body["result"]) > 10
    stored = client.get(f"/api/entries/{entry['id']}", headers=auth_headers).json["ai"][feature]
    assert {k: stored[k] for k in body} == body and stored["created_at"]


def test_cached_tokens_are_priced_at_the_cached_rate(client, auth_headers, llm_server):
    """A long entry (the prompt passes OpenAI's 1024-token caching threshold) analysed twice: the repeat reports
    the cached prefix in 128-token steps, priced at the cached-input rate; a short entry is never cached."""
    text = "".join(f"Morning {i}: coffee, a walk by the river and a call home. " for i in range(90))
    eid = client.post("/api/entries", json={"text": text}, headers=auth_headers).json["id"]
    before = llm_server.stats()["cached_tokens"]
    first = client.post(f"/api/entries/{eid}/ai/summarize", headers=auth_headers).json
    second = client.post(f"/api/entries/{eid}/ai/summarize", headers=auth_headers).json
    u = second["usage"]
    assert first["usage"]["cached_tokens"] == 0 and u["input_tokens"] == first["usage"]["input_tokens"] > 1024
    assert u["cached_tokens"] == 1024 + (u["input_tokens"] - 1024) // 128 * 128
    assert llm_server.stats()["cached_tokens"] - before == u["cached_tokens"]
    assert second["cost_usd"] == pytest.approx(
        ((u["input_tokens"] - u["cached_tokens"]) * 0.15 + u["cached_tokens"] * 0.075 + u["output_tokens"] * 0.6) / 1e6
    )
    assert second["cost_usd"] < first["cost_usd"]
    short = client.post("/api/entries", json={"text": "short"}, headers=auth_headers).json["id"]
    repeats = [client.post(f"/api/entries/{short}/ai/summarize", headers=auth_headers).json for _ in range(2)]
    assert [r["usage"]["cached_tokens"] for r in repeats] == [0, 0]


def test_cost_counter_has_the_genai_attributes(make_app, metric_reader):
    app = make_app(AI_MODEL_REFLECT="gpt-4.1-mini")
    client = app.test_client()
    headers = {"Authorization": "Bearer " + client.post("/api/users", json={"name": "a"}).json["token"]}
    eid = client.post("/api/entries", json={"text": "hello"}, headers=headers).json["id"]
    costs = [client.post(f"/api/entries/{eid}/ai/{f}", headers=headers).json for f in ("summarize", "reflect")]
    assert costs[1]["model"] == "gpt-4.1-mini"
    points = {(p.attributes["app.feature"]): p for p in metric_points(metric_reader, "app.ai.cost")}
    assert set(points) == {"summarize", "reflect"}
    assert dict(points["reflect"].attributes) == {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4.1-mini",
        "app.feature": "reflect",
    }
    assert points["summarize"].value == pytest.approx(costs[0]["cost_usd"])
    assert points["reflect"].value == pytest.approx(costs[1]["cost_usd"])


def test_unknown_model_costs_zero_but_is_flagged_and_warned_once(make_app, metric_reader, caplog):
    app = make_app(AI_MODEL_MOOD="mystery-model-7")
    client = app.test_client()
    headers = {"Authorization": "Bearer " + client.post("/api/users", json={"name": "a"}).json["token"]}
    eid = client.post("/api/entries", json={"text": "hello"}, headers=headers).json["id"]
    caplog.set_level(logging.WARNING, logger="otel_wandb.pricing")
    bodies = [client.post(f"/api/entries/{eid}/ai/mood", headers=headers).json for _ in range(3)]
    assert all(b["cost_usd"] == 0 and b["pricing_known"] is False and b["model"] == "mystery-model-7" for b in bodies)
    (point,) = metric_points(metric_reader, "app.ai.cost")
    assert point.attributes["app.pricing.unknown"] is True and point.value == 0
    warnings = [r for r in caplog.records if r.name == "otel_wandb.pricing" and "mystery-model-7" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    "faults, status, code, attempts",
    [
        ({"fail_429_rate": 1.0}, 503, "llm_rate_limited", 3),
        ({"fail_500_rate": 1.0}, 502, "llm_upstream_error", 3),
        ({"timeout_rate": 1.0, "timeout_sleep_s": 1.5}, 504, "llm_timeout", 1),
    ],
)
def test_llm_failures_map_to_5xx_and_store_nothing(
    make_app, faulty, metric_reader, log_exporter, faults, status, code, attempts
):
    server = faulty(**faults)
    retries = 2 if status != 504 else 0
    app = make_app(OPENAI_BASE_URL=server.base_url, OPENAI_TIMEOUT=0.3, OPENAI_MAX_RETRIES=retries)
    client = app.test_client()
    headers = {"Authorization": "Bearer " + client.post("/api/users", json={"name": "a"}).json["token"]}
    entry = client.post("/api/entries", json={"text": "hello"}, headers=headers).json
    resp = client.post(f"/api/entries/{entry['id']}/ai/summarize", headers=headers)
    assert resp.status_code == status, resp.json
    assert resp.json["error"]["code"] == code
    stats = server.stats()
    assert stats["failures_429"] + stats["failures_500"] + stats["timeouts"] == attempts  # bounded retries
    assert client.get(f"/api/entries/{entry['id']}", headers=headers).json == entry
    assert metric_points(metric_reader, "app.ai.cost") == []
    audits = [
        r.log_record.attributes
        for r in log_exporter.get_finished_logs()
        if r.log_record.attributes.get("audit.action") == "ai.summarize"
    ]
    assert [a["audit.outcome"] for a in audits] == ["failure"]


@pytest.mark.parametrize("failing, status", [(2, 200), (3, 502)])
def test_retries_are_the_app_clients_and_bounded(make_app, llm_server, failing, status):
    """The first ``failing`` attempts fail with 500 (header-driven fault). The app's own client (the
    content-free-errors subclass, OPENAI_MAX_RETRIES=2 from the settings) gets the header added the way any
    caller would (``with_options``): two retries recover, a third failure is 502 and stores nothing."""
    app = make_app(OPENAI_MAX_RETRIES=2)
    client = app.test_client()
    headers = {"Authorization": "Bearer " + client.post("/api/users", json={"name": "a"}).json["token"]}
    entry = client.post("/api/entries", json={"text": "hello"}, headers=headers).json
    llm = app.extensions["llm"]
    real = llm.client()
    llm._client = real.with_options(default_headers={FAIL_HEADER: "500", FAIL_ATTEMPTS_HEADER: str(failing)})
    assert type(llm.client()) is type(real) is _ContentFreeErrorsClient and llm.client().max_retries == 2
    before = llm_server.stats()
    resp = client.post(f"/api/entries/{entry['id']}/ai/reflect", headers=headers)
    assert resp.status_code == status, resp.json
    after = llm_server.stats()
    assert after["failures_500"] - before["failures_500"] == min(failing, 3)
    assert after["requests"] - before["requests"] == (1 if status == 200 else 0)
    stored = client.get(f"/api/entries/{entry['id']}", headers=headers).json["ai"]
    assert ("reflect" in stored) is (status == 200)
    if status == 502:
        assert resp.json["error"]["code"] == "llm_upstream_error"


def test_unreachable_llm_is_502(make_app):
    app = make_app(OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", OPENAI_MAX_RETRIES=0)
    client = app.test_client()
    headers = {"Authorization": "Bearer " + client.post("/api/users", json={"name": "a"}).json["token"]}
    eid = client.post("/api/entries", json={"text": "hello"}, headers=headers).json["id"]
    resp = client.post(f"/api/entries/{eid}/ai/mood", headers=headers)
    assert resp.status_code == 502 and resp.json["error"]["code"] == "llm_unreachable"
    assert client.get(f"/api/entries/{eid}", headers=headers).json["ai"] == {}


def test_unconfigured_ai_is_503(make_app, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    app = make_app(OPENAI_BASE_URL=None, OPENAI_API_KEY=None)
    client = app.test_client()
    headers = {"Authorization": "Bearer " + client.post("/api/users", json={"name": "a"}).json["token"]}
    eid = client.post("/api/entries", json={"text": "hello"}, headers=headers).json["id"]
    resp = client.post(f"/api/entries/{eid}/ai/summarize", headers=headers)
    assert resp.status_code == 503 and resp.json["error"]["code"] == "ai_not_configured"


def test_price_list_matches_dated_snapshots_and_file_override(tmp_path):
    prices = PriceList.load()
    assert prices.lookup("gpt-4o-mini-2024-07-18")[0] == "gpt-4o-mini"
    assert prices.lookup("gpt-4o-2024-08-06")[0] == "gpt-4o"
    assert prices.lookup("gpt-4.1-mini")[0] == "gpt-4.1-mini"
    cost = prices.cost(["gpt-4o-2024-08-06", "gpt-4o"], 1_000_000, 1_000_000, 400_000)
    assert cost.known and cost.usd == pytest.approx(0.6 * 2.5 + 0.4 * 1.25 + 10.0)
    custom = tmp_path / "p.json"
    custom.write_text('{"models": {"house": {"input": 1, "output": 2}}}')
    house = PriceList.load(str(custom))
    assert house.cost(["house"], 100, 50, 10).usd == pytest.approx((90 * 1 + 10 * 1 + 50 * 2) / 1e6)
    assert house.cost(["gpt-4o-mini"], 100, 50, 0).known is False


@pytest.mark.parametrize(
    "content",
    ["not json", '{"models": {"m": {"input": "cheap"}}}', '{"models": {"m": {"input": -1, "output": 1}}}', "{}"],
)
def test_bad_pricing_file_fails_at_start_naming_the_variable(make_app, tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match="PRICING_FILE|model 'm'"):
        make_app(PRICING_FILE=str(bad))


def test_concurrent_features_on_one_entry_all_stored(make_app, faulty):
    """Overlapping AI calls (slow model) on the same entry must not overwrite each other's stored result."""
    from concurrent.futures import ThreadPoolExecutor

    server = faulty(latency_ms=300)
    app = make_app(OPENAI_BASE_URL=server.base_url)
    client = app.test_client()
    headers = {"Authorization": "Bearer " + client.post("/api/users", json={"name": "a"}).json["token"]}
    entry = client.post("/api/entries", json={"text": "hello"}, headers=headers).json

    def run(feature):
        return app.test_client().post(f"/api/entries/{entry['id']}/ai/{feature}", headers=headers).status_code

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(pool.map(run, ["summarize", "reflect", "mood"])) == [200, 200, 200]
    got = client.get(f"/api/entries/{entry['id']}", headers=headers).json
    assert set(got["ai"]) == {"summarize", "reflect", "mood"}
    assert got["updated_at"] == entry["updated_at"]  # AI results do not count as edits


@pytest.mark.parametrize("feature", ["translate", "SUMMARIZE", "mood ", ""])
def test_unknown_feature_is_400_and_calls_no_model(client, auth_headers, entry, llm_server, feature):
    before = llm_server.stats()["requests"]
    resp = client.post(f"/api/entries/{entry['id']}/ai/{feature}", headers=auth_headers)
    if feature == "":
        assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found"  # no such route
    else:
        assert resp.status_code == 400 and resp.json["error"]["field"] == "feature"
    assert llm_server.stats()["requests"] == before
    assert client.get(f"/api/entries/{entry['id']}", headers=auth_headers).json == entry


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {"model": "gpt-4o"}},
        {"json": []},
        {"data": "please", "content_type": "text/plain"},
        {"data": "{}", "content_type": "text/plain"},
    ],
)
def test_a_request_body_on_an_ai_feature_is_400_and_calls_no_model(client, auth_headers, entry, llm_server, kwargs):
    before = llm_server.stats()["requests"]
    resp = client.post(f"/api/entries/{entry['id']}/ai/summarize", headers=auth_headers, **kwargs)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"] == {
        "code": "invalid_body",
        "field": "body",
        "message": "this endpoint takes no request body",
    }
    assert llm_server.stats()["requests"] == before
    assert client.get(f"/api/entries/{entry['id']}", headers=auth_headers).json == entry


def test_an_empty_json_object_on_an_ai_feature_is_accepted(client, auth_headers, entry):
    resp = client.post(f"/api/entries/{entry['id']}/ai/mood", headers=auth_headers, json={})
    assert resp.status_code == 200, resp.json
