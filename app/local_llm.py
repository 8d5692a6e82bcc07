"""A local OpenAI-compatible server for tests, the demo and benchmarks (stdlib only).

``python -m app.local_llm --host 127.0.0.1 --port 0`` prints one JSON line first on stdout,
``{"host": ..., "port": N, "base_url": "http://host:N/v1"}``, and optionally writes the port to ``--port-file``.

Endpoints: ``POST /v1/chat/completions`` (plain and SSE streaming; ``stream_options.include_usage`` adds the final
usage chunk), ``GET /v1/models``, ``GET /healthz``, ``GET /stats`` (running totals of usage served).

Output is deterministic: a hash of the model and messages picks canned sentences; the prompt is never echoed.
Usage is realistic: prompt tokens are estimated from text length (~4 characters a token), and when a system prompt
was already seen, its tokens are reported as ``prompt_tokens_details.cached_tokens``.

Fault injection (CLI flag, else env var): ``LOCAL_LLM_LATENCY_MS`` (mean, ±50 % uniform jitter),
``LOCAL_LLM_FAIL_429_RATE``, ``LOCAL_LLM_FAIL_500_RATE``, ``LOCAL_LLM_TIMEOUT_RATE`` (the handler sleeps
``LOCAL_LLM_TIMEOUT_SLEEP_S``, past any sane client timeout), ``LOCAL_LLM_SEED`` (seeded RNG).
Per request: header ``X-Local-LLM-Fail: 429|500|timeout`` forces a failure; with ``X-Local-LLM-Fail-Attempts: N``
only the first N attempts fail (the openai SDK numbers its retries in ``x-stainless-retry-count``), so retry
behaviour is testable deterministically.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

ENV_LATENCY_MS = "LOCAL_LLM_LATENCY_MS"
ENV_FAIL_429_RATE = "LOCAL_LLM_FAIL_429_RATE"
ENV_FAIL_500_RATE = "LOCAL_LLM_FAIL_500_RATE"
ENV_TIMEOUT_RATE = "LOCAL_LLM_TIMEOUT_RATE"
ENV_TIMEOUT_SLEEP_S = "LOCAL_LLM_TIMEOUT_SLEEP_S"
ENV_SEED = "LOCAL_LLM_SEED"
FAIL_HEADER = "X-Local-LLM-Fail"
FAIL_ATTEMPTS_HEADER = "X-Local-LLM-Fail-Attempts"
MODELS = ("gpt-4o-mini", "gpt-4.1-nano", "local-diary-1")

SENTENCES = (
    "It sounds like today asked a lot of you.",
    "You noticed small moments of calm between the busy parts.",
    "There is a quiet pride in how you handled the afternoon.",
    "Some worry remains, and naming it is already a step.",
    "Rest seems to matter more than usual this week.",
    "A conversation with someone close lifted the mood.",
    "You are learning what drains you and what restores you.",
    "Tomorrow might benefit from one unhurried hour.",
    "Gratitude shows up in the details you chose to write down.",
    "Overall the tone is steady, with a hopeful ending.",
)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass
class Faults:
    latency_ms: float = 0.0
    fail_429_rate: float = 0.0
    fail_500_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_sleep_s: float = 30.0
    seed: int | None = None

    @classmethod
    def from_env(cls) -> Faults:
        seed = os.environ.get(ENV_SEED, "").strip()
        return cls(
            latency_ms=_env_float(ENV_LATENCY_MS, 0.0),
            fail_429_rate=_env_float(ENV_FAIL_429_RATE, 0.0),
            fail_500_rate=_env_float(ENV_FAIL_500_RATE, 0.0),
            timeout_rate=_env_float(ENV_TIMEOUT_RATE, 0.0),
            timeout_sleep_s=_env_float(ENV_TIMEOUT_SLEEP_S, 30.0),
            seed=int(seed) if seed else None,
        )


@dataclass
class State:
    faults: Faults
    rng: random.Random = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen_system: set[str] = field(default_factory=set)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "failures_429", "failures_500",
         "timeouts"), 0))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.faults.seed)


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def complete(state: State, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Returns (text, finish_reason, usage) for a chat request, and adds the usage to the running totals."""
    messages = body.get("messages") or []
    model = str(body.get("model", ""))
    digest = hashlib.sha256(json.dumps([model, messages], sort_keys=True, default=str).encode()).digest()
    count = 2 + digest[0] % 3
    text = " ".join(SENTENCES[(digest[1 + i]) % len(SENTENCES)] for i in range(count))
    if body.get("response_format", {}).get("type") == "json_object":
        text = json.dumps({"mood": ("calm", "tired", "hopeful", "anxious", "content")[digest[5] % 5],
                           "score": round((digest[6] % 100) / 100, 2), "summary": SENTENCES[digest[7] % 10]})
    completion_tokens = estimate_tokens(text)
    finish = "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < completion_tokens:
        text, completion_tokens, finish = text[: limit * 4], limit, "length"
    prompt_tokens = 3
    system_tokens, system_key = 0, ""
    for msg in messages:
        text_in = _content_text(msg.get("content")) if isinstance(msg, dict) else ""
        n = estimate_tokens(text_in) + 4
        prompt_tokens += n
        if isinstance(msg, dict) and msg.get("role") in ("system", "developer"):
            system_tokens += n
            system_key += hashlib.sha256(text_in.encode()).hexdigest()
    with state.lock:
        cached = system_tokens if system_key and system_key in state.seen_system else 0
        if system_key:
            state.seen_system.add(system_key)
        t = state.totals
        t["requests"] += 1
        t["prompt_tokens"] += prompt_tokens
        t["completion_tokens"] += completion_tokens
        t["cached_tokens"] += cached
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens,
             "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                           "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
    return text, finish, usage


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local-llm/1.0"
    state: State  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("local_llm %s", self.requestline)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, etype: str, code: str | None = None) -> None:
        headers = {"retry-after-ms": "20", "retry-after": "0"} if status == 429 else {}
        self._json(status, {"error": {"message": message, "type": etype, "param": None, "code": code}}, headers)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "local"} for m in MODELS]})
        elif path == "/stats":
            with self.state.lock:
                self._json(200, dict(self.state.totals))
        else:
            self._error(404, f"no route {path}", "invalid_request_error")

    def _injected_fault(self) -> str | None:
        forced = (self.headers.get(FAIL_HEADER) or "").strip().lower()
        if forced:
            attempts = self.headers.get(FAIL_ATTEMPTS_HEADER)
            retry = int(self.headers.get("x-stainless-retry-count") or 0)
            if attempts is None or retry < int(attempts):
                return forced
            return None
        f = self.state.faults
        with self.state.lock:
            r = self.state.rng.random()
        if r < f.fail_429_rate:
            return "429"
        if r < f.fail_429_rate + f.fail_500_rate:
            return "500"
        if r < f.fail_429_rate + f.fail_500_rate + f.timeout_rate:
            return "timeout"
        return None

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0].rstrip("/")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {path}", "invalid_request_error")
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("'messages' must be a list")
        except ValueError as exc:
            self._error(400, f"invalid request body: {exc}", "invalid_request_error")
            return
        f = self.state.faults
        if f.latency_ms > 0:
            with self.state.lock:
                jitter = self.state.rng.uniform(0.5, 1.5)
            time.sleep(f.latency_ms * jitter / 1000.0)
        fault = self._injected_fault()
        if fault is not None:
            self._fail(fault)
            return
        text, finish, usage = complete(self.state, body)
        model = str(body.get("model") or MODELS[0])
        cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
        if body.get("stream"):
            self._stream(cid, created, model, text, finish, usage,
                         bool((body.get("stream_options") or {}).get("include_usage")))
            return
        self._json(200, {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": "fp_local",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": usage})

    def _fail(self, fault: str) -> None:
        key = {"429": "failures_429", "500": "failures_500", "timeout": "timeouts"}.get(fault, "failures_500")
        with self.state.lock:
            self.state.totals[key] += 1
        if fault == "429":
            self._error(429, "Rate limit reached (injected)", "requests", "rate_limit_exceeded")
        elif fault == "timeout":
            time.sleep(self.state.faults.timeout_sleep_s)
            self._error(504, "upstream timeout (injected)", "server_error")
        else:
            self._error(500, "The server had an error (injected)", "server_error")

    def _stream(self, cid: str, created: int, model: str, text: str, finish: str, usage: dict[str, Any],
                include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_local"}

        def send(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
            chunk = dict(base, choices=choices, **(extra or {}))
            if include_usage and "usage" not in chunk:
                chunk["usage"] = None
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        words = text.split(" ")
        for i in range(0, len(words), 3):
            piece = " ".join(words[i:i + 3]) + (" " if i + 3 < len(words) else "")
            send([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        send([{"index": 0, "delta": {}, "finish_reason": finish}])
        if include_usage:
            send([], {"usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class LocalLLMServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def make_server(host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> LocalLLMServer:
    state = State(faults or Faults.from_env())
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = LocalLLMServer((host, port), handler)
    server.state = state  # type: ignore[attr-defined]
    return server


@dataclass
class Running:
    base_url: str  # ends in /v1, ready for openai.OpenAI(base_url=...)
    server: LocalLLMServer
    thread: threading.Thread

    @property
    def root_url(self) -> str:
        return self.base_url[: -len("/v1")]

    def stats(self) -> dict[str, int]:
        with self.server.state.lock:  # type: ignore[attr-defined]
            return dict(self.server.state.totals)  # type: ignore[attr-defined]

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_in_thread(host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> Running:
    server = make_server(host, port, faults)
    thread = threading.Thread(target=server.serve_forever, name="local-llm", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    return Running(f"http://{bound_host}:{bound_port}/v1", server, thread)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.local_llm", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (announced on stdout)")
    p.add_argument("--port-file", help="also write the bound port to this file")
    p.add_argument("--latency-ms", type=float)
    p.add_argument("--fail-429-rate", type=float)
    p.add_argument("--fail-500-rate", type=float)
    p.add_argument("--timeout-rate", type=float)
    p.add_argument("--timeout-sleep-s", type=float)
    p.add_argument("--seed", type=int)
    args = p.parse_args(argv)
    faults = Faults.from_env()
    for name in ("latency_ms", "fail_429_rate", "fail_500_rate", "timeout_rate", "timeout_sleep_s", "seed"):
        if getattr(args, name) is not None:
            setattr(faults, name, getattr(args, name))
    server = make_server(args.host, args.port, faults)
    host, port = server.server_address[:2]
    if args.port_file:
        with open(args.port_file + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(str(port))
        os.replace(args.port_file + ".tmp", args.port_file)
    sys.stdout.write(json.dumps({"host": host, "port": port, "base_url": f"http://{host}:{port}/v1"}) + "\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
