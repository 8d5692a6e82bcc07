"""Start and stop the collector topology as local processes (tests, benchmarks, ``app.demo``).

    from app.demo.topology import start_collector, start_bridge
    bridge = start_bridge(env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp)})
    col = start_collector(log_dir=tmp / "logs", env={"WANDB_BRIDGE_ENDPOINT": bridge.url})
    ... send OTLP to col.http_endpoint (http://127.0.0.1:<port>) or col.grpc_endpoint ...
    col.stop(); bridge.stop()

Every port is a free one picked here (or given), so several topologies can run at once. The collector runs the
repository's ``otel-collector.yaml`` with the binary from ``collector/build.sh``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.demo.procs import free_port
from otel_wandb.config import environ

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_BINARY = REPO / "collector" / "_build" / "otelcol-ai-diary"
COLLECTOR_CONFIG = REPO / "otel-collector.yaml"
BUILD_SCRIPT = REPO / "collector" / "build.sh"


def build_collector(timeout: float = 900) -> Path:
    """Run collector/build.sh (a no-op while the manifest is unchanged); raise if it cannot build."""
    res = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0 or not COLLECTOR_BINARY.exists():
        raise RuntimeError(
            f"collector/build.sh failed (rc={res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
        )
    return COLLECTOR_BINARY


def _get(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
            status: int = r.status
            return status
    except OSError:
        return 0


class _Proc:
    """A child process whose stderr is drained into a bounded buffer (kept for error messages)."""

    name = "process"

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.args, self.env, self.cwd = args, dict(env), cwd
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stderr or ():  # a pipe: _spawn asks for one
            self.lines.append(line.rstrip())
            if len(self.lines) > 2000:
                del self.lines[:1000]

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def output(self, last: int = 40) -> str:
        return "\n".join(self.lines[-last:])

    def _wait_until(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            if ready():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.output()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, then SIGKILL. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %.0fs: killing pid %d", self.name, timeout, self.proc.pid)
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL (a crash), no cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class CollectorPorts:
    grpc: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    health: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)


def wandb_files_env(directory: Path, mode: str = "offline") -> dict[str, str]:
    """W&B settings that keep every file of a run under ``directory`` (its config, cache, data and artifact dirs
    too), quiet: the demo's, the benchmarks' and the tests' runs leave nothing in ~/.config or ~/.cache."""
    return {
        "WANDB_MODE": mode,
        "WANDB_DIR": str(directory),
        "WANDB_CONFIG_DIR": str(directory / ".config"),
        "WANDB_CACHE_DIR": str(directory / ".cache"),
        "WANDB_DATA_DIR": str(directory / ".data"),
        "WANDB_ARTIFACT_DIR": str(directory / ".artifacts"),
        "WANDB_SILENT": "true",
    }


# Passed to every collector started here (harmless where unused): the gateway's tail_sampling names the policy that
# kept a trace, which its bridge pipeline reads (collector/gateway.yaml). Alpha upstream: off unless asked for.
FEATURE_GATES = ("processor.tailsamplingprocessor.recordpolicy",)


def collector_command(config: str | Path) -> list[str]:
    """The collector's command line for ``config``."""
    return [str(COLLECTOR_BINARY), f"--config=file:{config}", f"--feature-gates={','.join(FEATURE_GATES)}"]


class CollectorHandle(_Proc):
    name = "collector"

    def __init__(self, env: Mapping[str, str], ports: CollectorPorts, log_dir: Path, config: Path) -> None:
        super().__init__(collector_command(config), env)
        self.ports, self.log_dir, self.config = ports, log_dir, config

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.grpc}"

    def healthy(self) -> bool:
        return _get(f"http://127.0.0.1:{self.ports.health}/") == 200

    def start(self, timeout: float = 30.0) -> CollectorHandle:
        self._spawn()
        self._wait_until(self.healthy, timeout)
        return self

    def restart(self, *, kill: bool = False, timeout: float = 30.0) -> CollectorHandle:
        """Stop (SIGTERM, or SIGKILL with kill=True) and start again on the same ports and queue directory."""
        self.kill() if kill else self.stop()
        return self.start(timeout)


def collector_env(
    log_dir: Path, ports: CollectorPorts, queue_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    base = {k: v for k, v in environ().items() if not k.startswith(("OTEL_COLLECTOR_", "OTLP_BACKEND_"))}
    base.update(
        {
            "LOG_DIR": str(log_dir),
            "OTEL_COLLECTOR_HOST": "127.0.0.1",
            "OTEL_COLLECTOR_GRPC_PORT": str(ports.grpc),
            "OTEL_COLLECTOR_HTTP_PORT": str(ports.http),
            "OTEL_COLLECTOR_HEALTH_PORT": str(ports.health),
            "OTEL_COLLECTOR_METRICS_PORT": str(ports.metrics),
            "OTEL_COLLECTOR_QUEUE_DIR": str(queue_dir or (log_dir.parent / f"{log_dir.name}-queue")),
        }
    )
    base.update(env or {})
    return base


def start_collector(
    env: Mapping[str, str] | None = None,
    log_dir: str | Path = "logs",
    *,
    queue_dir: str | Path | None = None,
    config: str | Path = COLLECTOR_CONFIG,
    ports: CollectorPorts | None = None,
    timeout: float = 30.0,
) -> CollectorHandle:
    """Start the collector binary on free ports with LOG_DIR=log_dir; returns once /health answers 200."""
    if not COLLECTOR_BINARY.exists():
        raise FileNotFoundError(f"{COLLECTOR_BINARY} is missing: run collector/build.sh")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    ports = ports or CollectorPorts()
    full_env = collector_env(log_dir, ports, Path(queue_dir) if queue_dir else None, env)
    return CollectorHandle(full_env, ports, log_dir, Path(config)).start(timeout)


class BridgeHandle(_Proc):
    name = "wandb-bridge"
    _LISTEN = re.compile(r"listening on (http://\S+)")
    _DASHBOARD = re.compile(r"live dashboard at (http://\S+)")

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__([sys.executable, "-m", "otel_wandb.bridge"], env, cwd=REPO)
        self.url = ""
        self.dashboard_url = ""  # http://host:port/dashboard, when the bridge serves it

    def _listening(self) -> bool:
        for line in self.lines:
            if m := self._DASHBOARD.search(line):
                self.dashboard_url = m.group(1)
            if m := self._LISTEN.search(line):
                self.url = m.group(1)
                return _get(self.url + "/healthz") == 200
        return False

    def start(self, timeout: float = 60.0) -> BridgeHandle:
        self._spawn()
        self._wait_until(self._listening, timeout)
        return self

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:  # noqa: S310 - loopback only
            stats: dict[str, int] = json.loads(r.read())
            return stats


def start_bridge(env: Mapping[str, str] | None = None, *, port: int = 0, timeout: float = 60.0) -> BridgeHandle:
    """Start ``python -m otel_wandb.bridge`` (its W&B run from the WANDB_* env); returns once /healthz answers. Its
    live dashboard takes any free port unless ``env`` says otherwise (``dashboard_url``)."""
    full_env = dict(environ())
    full_env.update(
        {"WANDB_BRIDGE_HOST": "127.0.0.1", "WANDB_BRIDGE_PORT": str(port), "WANDB_BRIDGE_DASHBOARD_PORT": "0"}
    )
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full_env.get("PYTHONPATH", "")]))
    return BridgeHandle(full_env).start(timeout)
