"""The original ticket's approach, for comparison only: one ``wandb.log`` per request from a Flask hook.

``install(app, run)`` logs ``{endpoint, response_time, status_code, timestamp}`` after every request on the
request thread, as ``logApiMetrics`` in the ticket did (minus ``user_id``: no user ids in telemetry).
Never use this in the service: it puts W&B on the request path and one history row per request.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, g, request


def install(app: Flask, run: Any) -> None:
    @app.before_request
    def _start() -> None:
        g._naive_t0 = time.perf_counter()

    @app.after_request
    def _log(response):
        t0 = getattr(g, "_naive_t0", None)
        if t0 is not None:
            run.log(
                {
                    "endpoint": request.url_rule.rule if request.url_rule else request.path,
                    "response_time": (time.perf_counter() - t0) * 1000.0,
                    "status_code": response.status_code,
                    "timestamp": time.time(),
                }
            )
        return response
