"""The local OpenAI-compatible server, driven by the real openai SDK."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from app.local_llm import FAIL_ATTEMPTS_HEADER, FAIL_HEADER, Faults, serve_in_thread

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "You are a kind diary assistant. Summarize the entry in two sentences."


@pytest.fixture
def llm():
    running = serve_in_thread(faults=Faults(seed=1))
    yield running
    running.shutdown()


def client(llm, **kw) -> openai.OpenAI:
    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=llm.base_url, api_key="sk-local-test", **kw)


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def test_non_streaming_usage_and_determinism(llm):
    c = client(llm)
    entry = "Walked by the river; the canary-xyzzy bird sang while I worried about work." * 3
    r1 = c.chat.completions.create(model="gpt-4o-mini", messages=msgs(entry))
    r2 = c.chat.completions.create(model="gpt-4o-mini", messages=msgs(entry))
    assert r1.model == "gpt-4o-mini"
    assert r1.choices[0].message.content == r2.choices[0].message.content
    assert "canary-xyzzy" not in r1.choices[0].message.content
    assert r1.choices[0].finish_reason == "stop"
    u1, u2 = r1.usage, r2.usage
    assert u1.prompt_tokens >= len(entry) // 4 and u1.completion_tokens > 0
    assert u1.total_tokens == u1.prompt_tokens + u1.completion_tokens
    # first time the system prompt is seen: nothing cached; the repeat reports it as cached
    assert u1.prompt_tokens_details.cached_tokens == 0
    assert 0 < u2.prompt_tokens_details.cached_tokens < u2.prompt_tokens
    other = c.chat.completions.create(model="local-diary-1", messages=msgs("a different day"))
    assert other.model == "local-diary-1"
    assert other.choices[0].message.content != r1.choices[0].message.content
    stats = llm.stats()
    assert stats["requests"] == 3
    assert stats["prompt_tokens"] == u1.prompt_tokens + u2.prompt_tokens + other.usage.prompt_tokens
    assert stats["completion_tokens"] == u1.completion_tokens + u2.completion_tokens + other.usage.completion_tokens
    assert stats["cached_tokens"] == u2.prompt_tokens_details.cached_tokens + \
        other.usage.prompt_tokens_details.cached_tokens


def test_streaming_with_usage_chunk(llm):
    c = client(llm)
    plain = c.chat.completions.create(model="gpt-4o-mini", messages=msgs("stream me"))
    stream = c.chat.completions.create(model="gpt-4o-mini", messages=msgs("stream me"), stream=True,
                                       stream_options={"include_usage": True})
    parts, usage, finish = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            parts.append(ch.delta.content or "")
            finish = ch.finish_reason or finish
    assert "".join(parts) == plain.choices[0].message.content
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens
    no_usage = c.chat.completions.create(model="gpt-4o-mini", messages=msgs("stream me"), stream=True)
    assert all(ch.usage is None for ch in no_usage)


def test_max_tokens_truncates(llm):
    r = client(llm).chat.completions.create(model="gpt-4o-mini", messages=msgs("long"), max_tokens=3)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3


def test_models_healthz_and_bad_request(llm):
    assert {m.id for m in client(llm).models.list()} >= {"gpt-4o-mini"}
    with urllib.request.urlopen(llm.root_url + "/healthz") as resp:
        assert json.load(resp) == {"status": "ok"}
    with pytest.raises(openai.BadRequestError) as exc:
        client(llm).chat.completions.create(model="m", messages="not-a-list")  # type: ignore[arg-type]
    assert "messages" in str(exc.value)


@pytest.mark.parametrize("fault,error", [("429", openai.RateLimitError), ("500", openai.InternalServerError)])
def test_forced_failures(llm, fault, error):
    with pytest.raises(error):
        client(llm).chat.completions.create(model="m", messages=msgs("x"), extra_headers={FAIL_HEADER: fault})
    key = "failures_429" if fault == "429" else "failures_500"
    assert llm.stats()[key] == 1 and llm.stats()["requests"] == 0


def test_sdk_retries_past_transient_failures(llm):
    c = client(llm, max_retries=2)
    r = c.chat.completions.create(model="m", messages=msgs("retry"),
                                  extra_headers={FAIL_HEADER: "429", FAIL_ATTEMPTS_HEADER: "2"})
    assert r.choices[0].message.content
    s = llm.stats()
    assert s["failures_429"] == 2 and s["requests"] == 1


def test_timeout_injection():
    running = serve_in_thread(faults=Faults(timeout_sleep_s=2.0))
    try:
        c = openai.OpenAI(base_url=running.base_url, api_key="k", max_retries=0, timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            c.chat.completions.create(model="m", messages=msgs("x"), extra_headers={FAIL_HEADER: "timeout"})
        assert time.monotonic() - t0 < 1.5
    finally:
        running.shutdown()


def test_seeded_random_failure_rates():
    def run() -> list[bool]:
        running = serve_in_thread(faults=Faults(fail_500_rate=0.5, seed=42))
        try:
            c = openai.OpenAI(base_url=running.base_url, api_key="k", max_retries=0)
            out = []
            for i in range(20):
                try:
                    c.chat.completions.create(model="m", messages=msgs(str(i)))
                    out.append(True)
                except openai.InternalServerError:
                    out.append(False)
            return out
        finally:
            running.shutdown()

    first, second = run(), run()
    assert first == second and 3 <= first.count(False) <= 17


def test_latency_injection():
    running = serve_in_thread(faults=Faults(latency_ms=100, seed=3))
    try:
        c = openai.OpenAI(base_url=running.base_url, api_key="k", max_retries=0)
        t0 = time.monotonic()
        c.chat.completions.create(model="m", messages=msgs("slow"))
        assert time.monotonic() - t0 >= 0.05
    finally:
        running.shutdown()


def test_cli_announces_port(tmp_path):
    port_file = tmp_path / "port"
    env = dict(os.environ, LOCAL_LLM_SEED="7")
    proc = subprocess.Popen([sys.executable, "-m", "app.local_llm", "--host", "127.0.0.1", "--port", "0",
                             "--port-file", str(port_file)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["port"] > 0 and int(port_file.read_text()) == first["port"]
        c = openai.OpenAI(base_url=first["base_url"], api_key="k", max_retries=0)
        assert c.chat.completions.create(model="gpt-4.1-nano", messages=msgs("cli")).model == "gpt-4.1-nano"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
