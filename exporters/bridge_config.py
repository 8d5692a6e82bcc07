"""Configuration and process entry point of the W&B bridge (``wandb-bridge`` / ``python -m exporters.bridge``).

Environment (validated at start; an error names the variable):
  WANDB_BRIDGE_HOST            bind address                      (default 127.0.0.1; 0.0.0.0 in compose)
  WANDB_BRIDGE_PORT            port, 0 = any free port           (default 4319)
  WANDB_BRIDGE_TOKEN           bearer token required when set    (default: no auth)
  WANDB_BRIDGE_MAX_BODY_BYTES  cap on a (decompressed) body, 413 above it (default 33554432 = 32 MiB)
  WANDB_BRIDGE_SHUTDOWN_TIMEOUT_S  bound on the final flush + run finish (default 30)
  WANDB_BRIDGE_LOG_LEVEL       DEBUG, INFO, WARNING or ERROR     (default INFO)
The W&B run itself is configured by the WANDB_* variables through ``Pipeline.from_env()``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from exporters.config import ConfigError, env_choice, env_number

logger = logging.getLogger("exporters.bridge")

ENV_HOST, ENV_PORT, ENV_TOKEN = "WANDB_BRIDGE_HOST", "WANDB_BRIDGE_PORT", "WANDB_BRIDGE_TOKEN"
ENV_MAX_BODY, ENV_SHUTDOWN_TIMEOUT = "WANDB_BRIDGE_MAX_BODY_BYTES", "WANDB_BRIDGE_SHUTDOWN_TIMEOUT_S"
ENV_LOG_LEVEL = "WANDB_BRIDGE_LOG_LEVEL"
DEFAULT_HOST, DEFAULT_PORT, DEFAULT_MAX_BODY = "127.0.0.1", 4319, 32 * 1024 * 1024


__all__ = ["BridgeConfig", "ConfigError", "run_main"]  # ConfigError: exporters.config's, names the variable


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    return env_number(env, name, default, lo=lo, hi=hi, kind=int)


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str = field(default="", repr=False)  # a secret: never in a repr or a log line
    max_body_bytes: int = DEFAULT_MAX_BODY
    shutdown_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BridgeConfig:
        env = os.environ if env is None else env
        return cls(
            host=env.get(ENV_HOST, "").strip() or DEFAULT_HOST,
            port=_int(env, ENV_PORT, DEFAULT_PORT, 0, 65535),
            token=env.get(ENV_TOKEN, "").strip(),
            max_body_bytes=_int(env, ENV_MAX_BODY, DEFAULT_MAX_BODY, 1024, 1 << 31),
            shutdown_timeout_s=float(_int(env, ENV_SHUTDOWN_TIMEOUT, 30, 1, 3600)),
        )


def log_level(env: Mapping[str, str]) -> str:
    """``WANDB_BRIDGE_LOG_LEVEL`` as a ``logging`` level name (ConfigError naming the variable if it is none)."""
    return env_choice(env, ENV_LOG_LEVEL, "info", ("debug", "info", "warning", "error", "critical")).upper()


def _publish_dashboard() -> None:
    """Save the W&B workspace once per deployment (dashboard.publish_once), off the serving path."""
    from exporters import dashboard

    state = os.environ.get("WANDB_DIR") or "."
    threading.Thread(target=dashboard.publish_once, args=(state,), name="wandb-dashboard", daemon=True).start()


def run_main(server_factory: Callable[[BridgeConfig, Any], Any], argv: list[str] | None = None) -> int:
    """Run the bridge in the foreground until SIGTERM/SIGINT; then stop and finish the W&B run."""
    level_error: ConfigError | None = None
    try:
        level = log_level(os.environ)
    except ConfigError as exc:  # reported with the other configuration errors, once logging is set up
        level, level_error = "INFO", exc
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        if argv[0] not in ("-h", "--help"):
            logger.error("wandb-bridge takes no arguments (configure it with WANDB_BRIDGE_* variables): %s", argv)
            return 2
        import importlib

        sys.stdout.write((importlib.import_module("exporters.bridge").__doc__ or "") + (__doc__ or ""))
        return 0
    try:
        if level_error is not None:
            raise level_error
        config = BridgeConfig.from_env()
        from exporters.dashboard import publish_wanted
        from exporters.pipeline import Pipeline

        publish = publish_wanted()  # validated with the rest: a bad value stops the start, naming the variable

        pipeline = Pipeline.from_env()
    except (ConfigError, ValueError) as exc:
        logger.error("wandb-bridge: invalid configuration: %s", exc)
        return 2
    try:
        server = server_factory(config, pipeline)
    except OSError as exc:
        logger.error("wandb-bridge: cannot listen on %s:%s (%s=%s): %s", config.host, config.port, ENV_PORT,
                     config.port, exc)
        pipeline.shutdown(config.shutdown_timeout_s)
        return 2
    if publish:
        _publish_dashboard()
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            logger.info("wandb-bridge: %s received, shutting down", signal.Signals(signum).name)
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    logger.info("wandb-bridge listening on %s", server.url)
    try:
        server.serve_forever()
    finally:
        server.stop(config.shutdown_timeout_s)
        logger.info("wandb-bridge stopped; %s", server.stats.snapshot())
    return 0
