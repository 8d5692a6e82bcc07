"""The scale-out topology as processes on one machine (tests/integration/collector/test_fleet.py).

- ``GatewayHandle``: a gateway collector (collector/gateway.yaml) on its own loopback address (127.0.0.2, 127.0.0.3...),
  all on one OTLP/gRPC port, as the pods behind a Kubernetes headless service are.
- ``AgentHandle``: an agent collector (collector/agent.yaml) in its own mount namespace (``unshare --mount``: as
  root, or through passwordless ``sudo -n`` with the collector itself back under our own uid, as on GitHub's runners)
  whose /etc/hosts is a private file bind-mounted over it: the agents' ``dns`` resolver looks the gateways' name up
  there, and ``HostsHealthChecker`` (the orchestrator's part) rewrites those files when a gateway stops answering its
  health check. Go re-reads /etc/hosts when it changed (checked at most every 5 s), so this exercises the
  load_balancing exporter's real topology change.
- ``SpanTap``: an incremental reader of the agents' ``file/spans`` tap (every span, before sampling).
- ``scrape``/``metric``: the collectors' own Prometheus metrics.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.demo.procs import free_port
from app.demo.topology import CollectorHandle, CollectorPorts, collector_command, collector_env

GATEWAYS_NAME = "gateways.fleet.test"
SERVER, EXCEPTION = 2, "exception"


def _root_prefix() -> list[str]:
    """[] as root, else ``sudo -n --preserve-env`` (tests/support/compose.py runs its root services the same way)."""
    return [] if os.geteuid() == 0 else ["sudo", "-n", "--preserve-env"]


def can_unshare() -> str:
    """'' when this process may run a command in a private mount namespace (as root or through passwordless sudo),
    else why not."""
    try:
        res = subprocess.run(
            [*_root_prefix(), "unshare", "--mount", "--propagation", "private", "true"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare: {exc}"
    return "" if res.returncode == 0 else f"unshare --mount failed: {res.stderr.strip()[:200]}"


def port_free_on(port: int, hosts: Iterable[str]) -> bool:
    for host in hosts:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port_on(hosts: Sequence[str]) -> int:
    """A port that was free a moment ago on every one of ``hosts`` (loopback addresses)."""
    for _ in range(100):
        port = free_port()
        if port_free_on(port, hosts):
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


def _get(url: str, timeout: float = 1.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
            return r.read().decode() if r.status == 200 else None
    except OSError:
        return None


class GatewayHandle(CollectorHandle):
    name = "gateway"

    def __init__(self, host: str, env: Mapping[str, str], ports: CollectorPorts, log_dir: Path, config: Path) -> None:
        super().__init__(env, ports, log_dir, config)
        self.host = host
        self.name = f"gateway {host}"

    def healthy(self) -> bool:
        return _get(f"http://{self.host}:{self.ports.health}/") is not None

    def start(self, timeout: float = 30.0) -> GatewayHandle:
        super().start(timeout)
        return self

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return scrape(self.host, self.ports.metrics)


def start_gateway(
    host: str, grpc_port: int, base: Path, config: Path, env: Mapping[str, str], timeout: float = 30.0
) -> GatewayHandle:
    ports = CollectorPorts(
        grpc=grpc_port, http=free_port_on([host]), health=free_port_on([host]), metrics=free_port_on([host])
    )
    full = collector_env(base / "logs", ports, base / "queue", env)
    full["OTEL_COLLECTOR_HOST"] = host
    (base / "logs").mkdir(parents=True, exist_ok=True)
    return GatewayHandle(host, full, ports, base / "logs", config).start(timeout)


class AgentHandle(CollectorHandle):
    """An agent whose /etc/hosts is ``hosts_file`` (bind-mounted in its own mount namespace). unshare and sh exec into
    the collector, whose pid the shell writes to ``pid_file`` first; not root, the namespace comes through ``sudo -n``
    and ``setpriv`` gives the collector our own uid back. Stop and kill signal that pid, so they reach the collector
    itself either way (sudo would relay SIGTERM but cannot relay SIGKILL)."""

    name = "agent"

    def __init__(self, hosts_file: Path, env: Mapping[str, str], ports: CollectorPorts, log_dir: Path, config: Path):
        super().__init__(env, ports, log_dir, config)
        self.hosts_file, self.pid_file = hosts_file, log_dir.parent / "agent.pid"
        as_us = (
            []
            if os.geteuid() == 0
            else ["setpriv", f"--reuid={os.getuid()}", f"--regid={os.getgid()}", "--clear-groups"]
        )
        self.args = [
            *_root_prefix(),
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'echo $$ > "$0" && mount --bind "$1" /etc/hosts && shift && exec "$@"',
            str(self.pid_file),
            str(hosts_file),
            *as_us,
            *collector_command(config),
        ]

    def _signal(self, sig: int) -> None:
        try:
            os.kill(int(self.pid_file.read_text()), sig)
        except (OSError, ValueError):  # not started, or already gone
            pass

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self._signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            return self.proc.wait(5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(5)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return scrape("127.0.0.1", self.ports.metrics)

    def start(self, timeout: float = 30.0) -> AgentHandle:
        super().start(timeout)
        return self


def hosts_text(addresses: Sequence[str]) -> str:
    return "127.0.0.1 localhost\n" + "".join(f"{a} {GATEWAYS_NAME}\n" for a in addresses)


def start_agent(
    base: Path, config: Path, env: Mapping[str, str], gateways: Sequence[str], timeout: float = 30.0
) -> AgentHandle:
    base.mkdir(parents=True, exist_ok=True)
    hosts = base / "hosts"
    hosts.write_text(hosts_text(gateways))
    ports = CollectorPorts()
    full = collector_env(base / "logs", ports, base / "queue", env)
    (base / "logs").mkdir(parents=True, exist_ok=True)
    return AgentHandle(hosts, full, ports, base / "logs", config).start(timeout)


class HostsHealthChecker:
    """The orchestrator's health checking: polls every gateway's health endpoint; after ``misses`` failed checks in
    a row the gateway leaves the name's answer -- every agent's hosts file is rewritten IN PLACE (the bind mount
    holds the inode: a rename would not be seen)."""

    def __init__(
        self, gateways: Sequence[GatewayHandle], hosts_files: Sequence[Path], every: float = 0.2, misses: int = 2
    ):
        self.gateways, self.hosts_files, self.every, self.misses = list(gateways), list(hosts_files), every, misses
        self.healthy = [g.host for g in gateways]
        self.removed: dict[str, float] = {}  # host -> time.monotonic() of the rewrite
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hosts-health-checker", daemon=True)

    def start(self) -> HostsHealthChecker:
        self._thread.start()
        return self

    def _run(self) -> None:
        failed: dict[str, int] = {}
        while not self._stop.wait(self.every):
            for g in self.gateways:
                if g.host not in self.healthy:
                    continue
                failed[g.host] = 0 if g.healthy() else failed.get(g.host, 0) + 1
                if failed[g.host] >= self.misses:
                    self.healthy.remove(g.host)
                    for path in self.hosts_files:
                        path.write_text(hosts_text(self.healthy))
                    self.removed[g.host] = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- the collectors' own metrics ---------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(host: str, port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a collector's Prometheus endpoint: (name, labels) -> value ({} if it does not answer)."""
    text = _get(f"http://{host}:{port}/metrics", timeout=2.0) or ""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            labels = frozenset(_LABEL.findall(m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` (or ``name_total``) whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n in (name, name + "_total") and want <= ls)


# -- the tap: every span the agents received ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TapSpan:
    trace_id: str
    kind: int
    route: str  # the bridge's rule: http.route, else the method, else "unknown" (server spans)
    status_code: int | None  # http.response.status_code
    error_status: bool  # span status ERROR
    exception: bool  # an "exception" event
    duration_ms: float
    instance: str  # service.instance.id
    gen_ai: bool

    @property
    def server(self) -> bool:
        return self.kind == SERVER

    @property
    def server_error(self) -> bool:
        """What the bridge counts as a failed request: status ERROR or a 5xx."""
        return self.server and (self.error_status or (self.status_code is not None and self.status_code >= 500))


def _value(v: dict[str, Any]) -> Any:
    for k in ("stringValue", "intValue", "doubleValue", "boolValue"):
        if k in v:
            return int(v[k]) if k == "intValue" else v[k]
    return None


def _attrs(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: _value(a.get("value", {})) for a in items or ()}


class SpanTap:
    """Reads the agents' ``file/spans`` output (OTLP/JSON lines) as it grows; ``spans`` in arrival order per file."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self._offsets = {p: 0 for p in self.paths}
        self.spans: list[TapSpan] = []

    def poll(self) -> list[TapSpan]:
        for path in self.paths:
            if not path.exists():
                continue
            with path.open("rb") as fh:
                fh.seek(self._offsets[path])
                chunk = fh.read()
            end = chunk.rfind(b"\n")
            if end < 0:
                continue
            self._offsets[path] += end + 1
            for line in chunk[: end + 1].splitlines():
                if line.strip():
                    self._add(json.loads(line))
        return self.spans

    def _add(self, doc: dict[str, Any]) -> None:
        for rs in doc.get("resourceSpans", []):
            instance = str(_attrs(rs.get("resource", {}).get("attributes")).get("service.instance.id", ""))
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    a = _attrs(s.get("attributes"))
                    code = a.get("http.response.status_code", a.get("http.status_code"))
                    method = a.get("http.request.method") or a.get("http.method") or ""
                    self.spans.append(
                        TapSpan(
                            trace_id=s["traceId"].lower(),
                            kind=int(s.get("kind", 0)),
                            route=str(a.get("http.route") or method or "unknown"),
                            status_code=int(code) if code is not None else None,
                            error_status=s.get("status", {}).get("code") in (2, "STATUS_CODE_ERROR"),
                            exception=any(e.get("name") == EXCEPTION for e in s.get("events", [])),
                            duration_ms=(int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])) / 1e6,
                            instance=instance,
                            gen_ai="gen_ai.operation.name" in a or "gen_ai.request.model" in a,
                        )
                    )

    def server_count(self) -> int:
        return sum(1 for s in self.poll() if s.server)


def error_traces(spans: Iterable[TapSpan]) -> set[str]:
    """The traces the bridge records errors for: an exception event on any span, or a failed server span."""
    return {s.trace_id for s in spans if s.exception or s.server_error}
