"""Process entry point of the W&B bridge (``wandb-bridge`` / ``python -m otel_wandb.bridge``).

Environment (validated at start by ``otel_wandb.config``; an error names the variable):
  WANDB_BRIDGE_HOST            bind address                      (default 127.0.0.1; 0.0.0.0 in compose)
  WANDB_BRIDGE_PORT            port, 0 = any free port           (default 4319)
  WANDB_BRIDGE_TOKEN           bearer token required when set    (default: no auth)
  WANDB_BRIDGE_MAX_BODY_BYTES  cap on a (decompressed) body, 413 above it (default 33554432 = 32 MiB)
  WANDB_BRIDGE_SHUTDOWN_TIMEOUT_S  bound on the final flush + run finish (default 30)
  WANDB_BRIDGE_LOG_LEVEL       DEBUG, INFO, WARNING or ERROR     (default INFO)
  WANDB_BRIDGE_DASHBOARD       serve the live dashboard of the run (default true; false turns it off)
  WANDB_BRIDGE_DASHBOARD_HOST  its bind address                  (default 127.0.0.1; 0.0.0.0 in compose, which
                               publishes it on the host's 127.0.0.1 only)
  WANDB_BRIDGE_DASHBOARD_PORT  its port, 0 = any free port       (default 8088): GET /dashboard, read-only, no token
The W&B run itself is configured by the WANDB_* variables through ``Pipeline.from_env()``.
Signals: SIGTERM/SIGINT stop (the last interval flushed, the run finished); SIGUSR1 closes the current interval
at once (an operator's "write what you have now"; tests that need exact interval boundaries use it with a long
WANDB_EXPORT_INTERVAL).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from otel_wandb.bridge import _server
from otel_wandb.bridge._server import BridgeServer
from otel_wandb.config import (
    WANDB_BRIDGE_DASHBOARD,
    WANDB_BRIDGE_DASHBOARD_PORT,
    WANDB_BRIDGE_PORT,
    BridgeConfig,
    ConfigError,
    RunConfig,
    bridge_log_level,
)
from otel_wandb.pipeline import Pipeline
from otel_wandb.report import DashboardServer, publish_once, publish_wanted

logger = logging.getLogger("otel_wandb.bridge")


def _publish_dashboard(run: RunConfig) -> None:
    """Save the W&B workspace once per deployment (``publish_once``), off the serving path."""
    threading.Thread(target=publish_once, args=(run.dir or ".",), name="wandb-dashboard", daemon=True).start()


def main(argv: list[str] | None = None, server_factory: Callable[[BridgeConfig, Any], Any] = BridgeServer) -> int:
    """Run the bridge in the foreground until SIGTERM/SIGINT; then stop and finish the W&B run."""
    level_error: ConfigError | None = None
    try:
        level = bridge_log_level()
    except ConfigError as exc:  # reported with the other configuration errors, once logging is set up
        level, level_error = "INFO", exc
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        if argv[0] not in ("-h", "--help"):
            logger.error("wandb-bridge takes no arguments (configure it with WANDB_BRIDGE_* variables): %s", argv)
            return 2
        sys.stdout.write((_server.__doc__ or "") + (__doc__ or ""))
        return 0
    try:
        if level_error is not None:
            raise level_error
        config = BridgeConfig.from_env()
        run = RunConfig.from_env()
        publish = publish_wanted(config, run)

        pipeline = Pipeline.from_env()
    except (ConfigError, ValueError) as exc:
        logger.error("wandb-bridge: invalid configuration: %s", exc)
        return 2
    try:
        server = server_factory(config, pipeline)
    except OSError as exc:
        logger.error(
            "wandb-bridge: cannot listen on %s:%s (%s=%s): %s",
            config.host,
            config.port,
            WANDB_BRIDGE_PORT,
            config.port,
            exc,
        )
        pipeline.shutdown(config.shutdown_timeout_s)
        return 2
    dashboard = None
    if config.dashboard and pipeline.sink is not None:  # from_env always gives it one
        try:
            dashboard = DashboardServer(
                pipeline.sink, config.dashboard_host, config.dashboard_port, pipeline.interval_s
            ).start()
        except OSError as exc:
            logger.error(
                "wandb-bridge: cannot serve the dashboard on %s:%s (%s; %s=false turns it off): %s",
                config.dashboard_host,
                config.dashboard_port,
                WANDB_BRIDGE_DASHBOARD_PORT,
                WANDB_BRIDGE_DASHBOARD,
                exc,
            )
            server.server_close()
            pipeline.shutdown(config.shutdown_timeout_s)
            return 2
        logger.info("wandb-bridge: live dashboard at %s (read-only)", dashboard.url)
    if publish:
        _publish_dashboard(run)
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            logger.info("wandb-bridge: %s received, shutting down", signal.Signals(signum).name)
            threading.Thread(target=server.shutdown, daemon=True).start()

    def _on_flush(_signum: int, _frame: Any) -> None:
        """SIGUSR1: close the current interval now (one W&B row), on the flusher thread; the timer goes on."""

        def flush() -> None:
            ok = pipeline.force_flush(config.shutdown_timeout_s)
            logger.info("wandb-bridge: SIGUSR1: interval flushed (ok=%s)", ok)

        threading.Thread(target=flush, name="wandb-flush-signal", daemon=True).start()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGUSR1, _on_flush)
    logger.info("wandb-bridge listening on %s", server.url)
    if not config.token:
        logger.warning("WANDB_BRIDGE_TOKEN is not set: requests are accepted without a bearer token (development only)")
    try:
        server.serve_forever()
    finally:
        if dashboard is not None:
            dashboard.stop()
        server.stop(config.shutdown_timeout_s)
        logger.info("wandb-bridge stopped; %s", server.stats.snapshot())
    return 0
