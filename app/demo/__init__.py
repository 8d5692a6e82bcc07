"""``python -m app.demo`` (``make demo``): the whole pipeline on a bare machine, with embedded defaults; and the
local topology helpers the tests and benchmarks share (``procs``, ``topology``, ``receivers``). Development
tooling: neither the service's wheel nor its image carries this package.

Starts the local OpenAI-compatible endpoint (with injected latency and failures), the service under gunicorn and,
when the collector binary exists, the collector and the W&B bridge; drives DEMO_REQUESTS mixed requests; pushes
the error rate over the alert threshold and back; stops everything cleanly; writes the HTML report; greps every
sink for DEMO_CANARY, the API tokens, user names and secrets; cross-checks the sinks against what was sent; prints
a summary. Everything lands under DEMO_OUT (default demo-output/).

Settings (all optional): DEMO_OUT, DEMO_REQUESTS (600), DEMO_CANARY, DEMO_USERS (4), DEMO_WORKERS,
DEMO_TOPOLOGY (auto|collector|inprocess), DEMO_ALERTS (1), DEMO_ALERT_WINDOW_S (20), DEMO_ALERT_TIMEOUT_S (75),
DEMO_EXPORT_INTERVAL_S (5), DEMO_LLM (auto|local|openai), DEMO_LLM_LATENCY_MS (60), DEMO_SEED.
Exit status: 0 when every phase passed, 1 when a phase failed (the summary says which), 2 on a bad setting.
"""

from __future__ import annotations

from app.demo._run import main

__all__ = ["main"]
