"""A local OpenAI-compatible server for tests, the demo and benchmarks (stdlib only).

``python -m app.local_llm --host 127.0.0.1 --port 0`` prints one JSON line first on stdout,
``{"host": ..., "port": N, "base_url": "http://host:N/v1"}``, and optionally writes the port to ``--port-file``.

Endpoints: ``POST /v1/chat/completions`` (plain and SSE streaming; ``stream_options.include_usage`` adds the final
usage chunk), ``GET /v1/models``, ``GET /healthz``, ``GET /stats`` (running totals of usage served).

Output and usage (deterministic; realistic prompt caching: only prompts >= 1024 tokens, in 128-token steps) come
from app/local_llm/_usage.py; fault injection (latency, 429/500/timeout rates, per-request headers, all validated)
from app/local_llm/_faults.py. A request the server cannot understand (body, or a fault header) is a 400 with an
OpenAI-style error body, never a traceback.
"""

from __future__ import annotations

from app.local_llm._faults import FAIL_ATTEMPTS_HEADER, FAIL_HEADER, Faults
from app.local_llm._server import MODELS, LocalLLMServer, Running, main, make_server, serve_in_thread

__all__ = [
    "FAIL_ATTEMPTS_HEADER",
    "FAIL_HEADER",
    "MODELS",
    "Faults",
    "LocalLLMServer",
    "Running",
    "main",
    "make_server",
    "serve_in_thread",
]
