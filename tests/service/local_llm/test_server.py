"""The local OpenAI-compatible server, driven by the real openai SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest

from app.local_llm import FAIL_ATTEMPTS_HEADER, FAIL_HEADER, Faults, serve_in_thread
from tests.support import ROOT, LineReader

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
    # 3 + (4 + ceil(chars / 4)) per message; below 1024 tokens nothing is ever cached, even when repeated
    assert u1.prompt_tokens == 3 + 4 + -(-len(SYSTEM) // 4) + 4 + -(-len(entry) // 4) < 1024
    assert u1.prompt_tokens_details.cached_tokens == u2.prompt_tokens_details.cached_tokens == 0
    other = c.chat.completions.create(model="local-diary-1", messages=msgs("a different day"))
    assert other.model == "local-diary-1"
    assert other.choices[0].message.content != r1.choices[0].message.content
    stats = llm.stats()
    assert stats["requests"] == 3
    assert stats["prompt_tokens"] == u1.prompt_tokens + u2.prompt_tokens + other.usage.prompt_tokens
    assert stats["completion_tokens"] == u1.completion_tokens + u2.completion_tokens + other.usage.completion_tokens
    assert (
        stats["cached_tokens"]
        == u2.prompt_tokens_details.cached_tokens + other.usage.prompt_tokens_details.cached_tokens
    )


def cacheable(tokens: int) -> int:
    """OpenAI's cache granularity: 0 below 1024 tokens, else 1024 + a multiple of 128, at most ``tokens``."""
    return 0 if tokens < 1024 else 1024 + (tokens - 1024) // 128 * 128


def test_prompt_caching_follows_openai_rules(llm):
    c = client(llm)
    long_entry = "".join(f"Day {i:04d}: rain, then a long walk. " for i in range(150))  # 34 chars each
    assert len(long_entry) == 5100
    first = c.chat.completions.create(model="gpt-4o-mini", messages=msgs(long_entry)).usage
    assert first.prompt_tokens == 3 + 4 + -(-len(SYSTEM) // 4) + 4 + -(-len(long_entry) // 4) == 1304
    assert first.prompt_tokens_details.cached_tokens == 0  # never seen
    repeat = c.chat.completions.create(model="gpt-4o-mini", messages=msgs(long_entry)).usage
    assert repeat.prompt_tokens_details.cached_tokens == cacheable(1304) == 1280
    # same system prompt and first 4800 characters of the entry, then different text: the common prefix is
    # 4 + 18 system tokens + 4 framing tokens + 1200 entry tokens = 1226 tokens -> 1152 cached
    diverging = long_entry[:4800] + "Then the sun came out and everything changed, " * 20
    other = c.chat.completions.create(model="gpt-4o-mini", messages=msgs(diverging)).usage
    assert -(-len(SYSTEM) // 4) == 18 and other.prompt_tokens > 1226
    assert other.prompt_tokens_details.cached_tokens == cacheable(4 + 18 + 4 + 1200) == 1152
    # another system prompt in front: the prefix differs from the first token on
    fresh = c.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "Reply in French."}, {"role": "user", "content": long_entry}],
    ).usage
    assert fresh.prompt_tokens_details.cached_tokens == 0
    assert llm.stats()["cached_tokens"] == 1280 + 1152


def test_streaming_with_usage_chunk(llm):
    c = client(llm)
    plain = c.chat.completions.create(model="gpt-4o-mini", messages=msgs("stream me"))
    stream = c.chat.completions.create(
        model="gpt-4o-mini", messages=msgs("stream me"), stream=True, stream_options={"include_usage": True}
    )
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
    r = c.chat.completions.create(
        model="m", messages=msgs("retry"), extra_headers={FAIL_HEADER: "429", FAIL_ATTEMPTS_HEADER: "2"}
    )
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


@pytest.mark.integration  # `python -m app.local_llm` in its own process
def test_cli_announces_port(tmp_path):
    port_file = tmp_path / "port"
    env = dict(os.environ, LOCAL_LLM_SEED="7")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.local_llm", "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(LineReader(proc.stdout).next(30, "the port announcement"))
        assert first["port"] > 0 and int(port_file.read_text()) == first["port"]
        c = openai.OpenAI(base_url=first["base_url"], api_key="k", max_retries=0)
        assert c.chat.completions.create(model="gpt-4.1-nano", messages=msgs("cli")).model == "gpt-4.1-nano"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.mark.integration  # `python -m app.local_llm` in its own process
def test_cli_stops_cleanly_on_sigterm():
    """SIGTERM ends the server with exit 0 (handled, not the default action): as a container's PID 1 an unhandled
    SIGTERM is ignored, and `docker stop` would wait out the grace period and SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.local_llm", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        json.loads(LineReader(proc.stdout).next(30, "the port announcement"))
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()


@pytest.mark.parametrize(
    "env, value, message",
    [
        ("LOCAL_LLM_FAIL_429_RATE", "5", "LOCAL_LLM_FAIL_429_RATE must be a fraction between 0 and 1"),
        ("LOCAL_LLM_TIMEOUT_RATE", "-0.1", "LOCAL_LLM_TIMEOUT_RATE must be a fraction between 0 and 1"),
        ("LOCAL_LLM_FAIL_500_RATE", "nan", "LOCAL_LLM_FAIL_500_RATE must be a number"),
        ("LOCAL_LLM_LATENCY_MS", "-5", "LOCAL_LLM_LATENCY_MS must be a number >= 0"),
        ("LOCAL_LLM_TIMEOUT_SLEEP_S", "soon", "LOCAL_LLM_TIMEOUT_SLEEP_S must be a number"),
        ("LOCAL_LLM_SEED", "1.5", "LOCAL_LLM_SEED must be an integer"),
    ],
)
def test_bad_fault_settings_are_rejected_naming_the_variable(env, value, message):
    with pytest.raises(ValueError, match=message):
        Faults.from_env(env={env: value})


def test_fault_rates_must_not_exceed_one_together():
    with pytest.raises(ValueError, match="LOCAL_LLM_FAIL_429_RATE .*LOCAL_LLM_TIMEOUT_RATE must not exceed 1"):
        Faults.from_env(env={"LOCAL_LLM_FAIL_429_RATE": "0.6", "LOCAL_LLM_FAIL_500_RATE": "0.6"})
    with pytest.raises(ValueError, match="fail_500_rate must be a fraction"):
        Faults(fail_500_rate=2)
    assert Faults.from_env(env={"LOCAL_LLM_FAIL_429_RATE": "0.5", "LOCAL_LLM_FAIL_500_RATE": "0.5"}) == Faults(
        fail_429_rate=0.5, fail_500_rate=0.5
    )


@pytest.mark.parametrize(
    "argv, env, named",
    [
        (["--fail-500-rate", "-1"], {}, "--fail-500-rate must be a fraction between 0 and 1"),
        (["--latency-ms", "-3"], {}, "--latency-ms must be a number >= 0"),
        ([], {"LOCAL_LLM_FAIL_429_RATE": "5"}, "LOCAL_LLM_FAIL_429_RATE must be a fraction between 0 and 1"),
    ],
)
def test_cli_rejects_bad_fault_settings_naming_the_flag_or_variable(monkeypatch, capsys, argv, env, named):
    from app.local_llm import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exc:
        main(["--port", "0", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_a_flag_wins_over_a_bad_variable(monkeypatch):
    monkeypatch.setenv("LOCAL_LLM_FAIL_429_RATE", "5")
    assert Faults.from_env({"fail_429_rate": 0.25}).fail_429_rate == 0.25


@pytest.mark.parametrize(
    "headers, named",
    [
        ({FAIL_HEADER: "500", FAIL_ATTEMPTS_HEADER: "x"}, FAIL_ATTEMPTS_HEADER),
        ({FAIL_HEADER: "500", FAIL_ATTEMPTS_HEADER: "-1"}, FAIL_ATTEMPTS_HEADER),
        ({FAIL_HEADER: "500", "x-stainless-retry-count": "one"}, "x-stainless-retry-count"),
        ({FAIL_HEADER: "teapot"}, FAIL_HEADER),
    ],
)
def test_bad_fault_headers_are_an_openai_style_400(llm, capfd, headers, named):
    body = json.dumps({"model": "m", "messages": msgs("x")}).encode()
    req = urllib.request.Request(
        llm.base_url + "/chat/completions",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 400
    error = json.load(exc.value)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert named in error["message"]
    with pytest.raises(openai.BadRequestError):  # the SDK reads it as a 400 too
        client(llm).chat.completions.create(model="m", messages=msgs("x"), extra_headers=headers)
    stats = llm.stats()
    assert stats["requests"] == stats["failures_500"] == 0
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("length", ["²", "-1", "abc", "99999999999"])
def test_a_bad_content_length_is_a_400_never_a_traceback(llm, capfd, length):
    import socket
    from urllib.parse import urlparse

    url = urlparse(llm.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
            f"Content-Type: application/json\r\n\r\n".encode()
        )
        reply = s.recv(4096).decode("latin-1")
    assert reply.startswith("HTTP/1.1 400") and "Content-Length" in reply
    assert "Traceback" not in capfd.readouterr().err
