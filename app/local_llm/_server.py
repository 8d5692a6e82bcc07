"""The local OpenAI-compatible HTTP server (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.local_llm import _faults as local_llm_faults
from app.local_llm._faults import Faults
from app.local_llm._usage import PromptCache, answer, prompt_token_sequence, usage

logger = logging.getLogger(__name__)
MODELS = ("gpt-4o-mini", "gpt-4.1-nano", "local-diary-1")
MAX_BODY = 8 * 1024 * 1024
_DESCRIPTION = "A local OpenAI-compatible server for tests, the demo and benchmarks."


@dataclass
class State:
    faults: Faults
    rng: random.Random = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cache: PromptCache = field(default_factory=PromptCache)
    totals: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "requests",
                "prompt_tokens",
                "completion_tokens",
                "cached_tokens",
                "failures_429",
                "failures_500",
                "timeouts",
            ),
            0,
        )
    )

    def __post_init__(self) -> None:
        self.rng = random.Random(self.faults.seed)


def complete(state: State, body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Returns (text, finish_reason, usage) for a chat request, and adds the usage to the running totals."""
    text, finish, completion_tokens = answer(body)
    tokens = prompt_token_sequence(body.get("messages") or [])
    with state.lock:
        cached = state.cache.cached_tokens(tokens)
        t = state.totals
        t["requests"] += 1
        t["prompt_tokens"] += len(tokens)
        t["completion_tokens"] += completion_tokens
        t["cached_tokens"] += cached
    return text, finish, usage(len(tokens), completion_tokens, cached)


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

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/healthz":
            self._json(200, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            self._json(
                200,
                {
                    "object": "list",
                    "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "local"} for m in MODELS],
                },
            )
        elif path == "/stats":
            with self.state.lock:
                self._json(200, dict(self.state.totals))
        else:
            self._error(404, f"no route {path}", "invalid_request_error")

    def _draw(self) -> float:
        with self.state.lock:
            return self.state.rng.random()

    def do_POST(self) -> None:
        raw_length = (self.headers.get("Content-Length") or "0").strip()
        if not (raw_length.isascii() and raw_length.isdigit()) or int(raw_length) > MAX_BODY:
            self.close_connection = True  # the body cannot be skipped safely
            self._error(400, f"invalid Content-Length (at most {MAX_BODY} bytes)", "invalid_request_error")
            return
        length = int(raw_length)
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
        try:
            fault = local_llm_faults.pick(self.headers, self.state.faults, self._draw)
        except ValueError as exc:
            self._error(400, str(exc), "invalid_request_error")
            return
        if fault is not None:
            self._fail(fault)
            return
        text, finish, usage = complete(self.state, body)
        model = str(body.get("model") or MODELS[0])
        cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
        if body.get("stream"):
            options = body.get("stream_options")
            self._stream(
                cid,
                created,
                model,
                text,
                finish,
                usage,
                isinstance(options, dict) and bool(options.get("include_usage")),
            )
            return
        self._json(
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_local",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            },
        )

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

    def _stream(
        self, cid: str, created: int, model: str, text: str, finish: str, usage: dict[str, Any], include_usage: bool
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_local",
        }

        def send(choices: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
            chunk = dict(base, choices=choices, **(extra or {}))
            if include_usage and "usage" not in chunk:
                chunk["usage"] = None
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        words = text.split(" ")
        for i in range(0, len(words), 3):
            piece = " ".join(words[i : i + 3]) + (" " if i + 3 < len(words) else "")
            send([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        send([{"index": 0, "delta": {}, "finish_reason": finish}])
        if include_usage:
            send([], {"usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class LocalLLMServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    state: State  # set by make_server (the handlers share it)


def make_server(host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> LocalLLMServer:
    state = State(faults or Faults.from_env())
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = LocalLLMServer((host, port), handler)
    server.state = state
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
        with self.server.state.lock:
            return dict(self.server.state.totals)

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_in_thread(host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> Running:
    server = make_server(host, port, faults)
    # poll every 50 ms (not the default 0.5 s): shutdown() returns that much sooner
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="local-llm", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    return Running(f"http://{bound_host}:{bound_port}/v1", server, thread)  # type: ignore[str-bytes-safe]  # typeshed: str | bytes; bound, it is str


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.local_llm", description=_DESCRIPTION)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (announced on stdout)")
    p.add_argument("--port-file", help="also write the bound port to this file")
    for name, env in local_llm_faults.ENV.items():
        p.add_argument(
            local_llm_faults.flag(name),
            type=int if name == "seed" else float,
            help=f"default: ${env} (see app/local_llm/_faults.py)",
        )
    args = p.parse_args(argv)
    try:
        faults = Faults.from_env({name: getattr(args, name) for name in local_llm_faults.ENV})
    except ValueError as exc:
        p.error(str(exc))  # exits 2, naming the flag or variable
    # SIGTERM (docker stop, compose down) ends the process like Ctrl-C does: as a container's PID 1 a signal without
    # a handler is ignored, and every stop would wait out the grace period and end in SIGKILL (exit 137). Installed
    # before the port is announced: whoever reads the announcement may stop it at once.
    signal.signal(signal.SIGTERM, _interrupt)
    server = make_server(args.host, args.port, faults)
    try:
        _announce_and_serve(server, args.port_file)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, also one that comes before serve_forever started
        pass
    finally:
        server.server_close()
    return 0


def _announce_and_serve(server: ThreadingHTTPServer, port_file: str | None) -> None:
    host, port = server.server_address[:2]
    if port_file:
        with open(port_file + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(str(port))
        os.replace(port_file + ".tmp", port_file)
    base_url = f"http://{host}:{port}/v1"  # type: ignore[str-bytes-safe]  # typeshed: str | bytes; bound, it is str
    sys.stdout.write(json.dumps({"host": host, "port": port, "base_url": base_url}) + "\n")
    sys.stdout.flush()
    server.serve_forever()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
