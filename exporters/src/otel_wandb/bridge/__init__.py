"""The W&B bridge: an OTLP/HTTP receiver the collector exports to, feeding one ``Pipeline`` (one W&B run).

    wandb-bridge            # or: python -m otel_wandb.bridge

``BridgeServer(config, pipeline)`` serves ``/v1/traces``, ``/v1/metrics`` and ``/v1/logs`` (see
``otel_wandb.bridge._server`` for the protocol), ``main()`` runs it as a process configured by the
``WANDB_BRIDGE_*`` variables (``otel_wandb.config``). ``decode(signal, body)`` turns one OTLP export request into
plain records.
"""

from __future__ import annotations

from otel_wandb.bridge._decode import (
    FORBIDDEN_KEY_PATTERN,
    LOGS,
    METRICS,
    TRACES,
    PayloadError,
    decode,
    is_forbidden_key,
)
from otel_wandb.bridge._main import main
from otel_wandb.bridge._server import BridgeServer

__all__ = [
    "FORBIDDEN_KEY_PATTERN",
    "LOGS",
    "METRICS",
    "TRACES",
    "BridgeServer",
    "PayloadError",
    "decode",
    "is_forbidden_key",
    "main",
]
