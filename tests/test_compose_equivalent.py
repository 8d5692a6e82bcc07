"""docker-compose.yml run without a Docker engine: every service as a local process with the compose file's own
command, environment (interpolated from .env.example like `docker compose` does from .env), mounted config files
and volumes. Service host names map to 127.0.0.1, container ports to free ports, named volumes to directories;
the collector image runs as collector/_build/otelcol-ai-diary with the same otel-collector.yaml, jaeger is replaced
by a second collector that writes what it receives to files (the OTLP backend), the app image's commands run from
.venv. Then requests are driven and telemetry is checked end to end: rotated log files, the OTLP backend, and ONE
W&B run (written by the bridge, read back from disk) with gunicorn at 2 workers whose series stay distinct.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
COLLECTOR_BIN = ROOT / "collector" / "_build" / "otelcol-ai-diary"
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:"
JAEGER_IMAGE = "jaegertracing/jaeger:"
APP_WORKDIR = "/srv/ai-diary"  # WORKDIR of the Dockerfile's runtime stage (holds gunicorn.conf.py)
CANARY = f"compose-canary-{uuid.uuid4().hex[:12]}"

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_]\w*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|([A-Za-z_]\w*))")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-spec interpolation: $VAR ${VAR} ${VAR:-d} ${VAR-d} ${VAR:?e} ${VAR?e} ${VAR:+a} ${VAR+a} $$."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name, op, arg = m.group(2) or m.group(5), m.group(3), m.group(4) or ""
        val = env.get(name)
        if op is None:
            return val or ""
        if op in (":-", "-"):
            return val if (val if op == ":-" else val is not None) else interpolate(arg, env)
        if op in (":?", "?"):
            if not (val if op == ":?" else val is not None):
                raise ValueError(f"required variable {name} is missing a value: {arg}")
            return val
        return interpolate(arg, env) if (val if op == ":+" else val is not None) else ""

    return _VAR.sub(sub, text)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if re.match(r"^[A-Z_]\w*=", line))
    return {k: v.strip() for k, v in pairs}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_interpolation_follows_the_compose_spec() -> None:
    env = {"A": "1", "E": ""}
    assert interpolate("${A:-x} ${E:-x} ${E-x} ${U-x} ${A:+y} ${E:+y} ${E+y} $$A $A", env) == "1 x  x y  y $A 1"
    assert interpolate("${U:-[]} ${U:-http://h:${A}}", env) == "[] http://h:1"
    with pytest.raises(ValueError, match="E is missing a value: set E"):
        interpolate("${E:?set E}", env)


class Topology:
    """The compose services, translated to local processes."""

    def __init__(self, compose: dict[str, Any], env: Mapping[str, str], tmp: Path) -> None:
        profiles = set(filter(None, env.get("COMPOSE_PROFILES", "").split(",")))
        self.services = {n: s for n, s in compose["services"].items()
                         if not s.get("profiles") or profiles & set(s["profiles"])}
        self.tmp = tmp
        self.env = env
        self.ports = {(n, p): free_port() for n, s in self.services.items() for p in self._container_ports(s)}
        self.volumes = {name: tmp / "volumes" / name for name in compose.get("volumes", {})}
        for path in self.volumes.values():
            path.mkdir(parents=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.order: list[str] = []

    @staticmethod
    def _container_ports(svc: dict[str, Any]) -> list[int]:
        ports = [int(p) for p in svc.get("expose", [])]
        ports += [int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in svc.get("ports", [])]
        return sorted(set(ports))

    def mounts(self, name: str) -> list[tuple[str, Path]]:
        out = []
        for vol in self.services[name].get("volumes", []):
            source, target = vol.split(":")[:2]
            host = (ROOT / source).resolve() if source.startswith((".", "/")) else self.volumes[source]
            out.append((target, host))
        return out

    def rewrite(self, name: str, value: str) -> str:
        for (svc, port), free in self.ports.items():
            value = re.sub(rf"(?<![\w.-]){re.escape(svc)}:{port}\b", f"127.0.0.1:{free}", value)
            if svc == name:
                value = re.sub(rf"\b(?:0\.0\.0\.0|127\.0\.0\.1|localhost):{port}\b", f"127.0.0.1:{free}", value)
                value = str(free) if value == str(port) else value
        value = "127.0.0.1" if value == "0.0.0.0" else value  # loopback only on this machine
        for target, host in self.mounts(name):
            value = re.sub(rf"(?<![\w.-]){re.escape(target)}(?=/|$|[^\w.-])", str(host), value)
        return value.replace(f"{APP_WORKDIR}/", f"{ROOT}/")

    def argv(self, name: str, command: list[str] | str) -> list[str]:
        cmd = shlex.split(command) if isinstance(command, str) else list(command)
        image = self.services[name]["image"]
        if image.startswith(COLLECTOR_IMAGE):
            exe = [str(COLLECTOR_BIN)]
        elif "build" in self.services[name]:  # our image: its PATH starts with the venv
            exe, cmd = [sys.executable if cmd[0] == "python" else str(VENV_BIN / cmd[0])], cmd[1:]
        else:
            raise AssertionError(f"no local equivalent for image {image}")
        return exe + [self.rewrite(name, a) for a in cmd]

    def process_env(self, name: str) -> dict[str, str]:
        env = {"PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}", "LANG": "C.UTF-8",
               "HOME": str(self.tmp / "home" / name), "PYTHONUNBUFFERED": "1"}
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        for key, val in (self.services[name].get("environment") or {}).items():
            env[key] = self.rewrite(name, "" if val is None else str(val))
        return env

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.tmp / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(argv, env=env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.order.append(name)

    def start_backend(self, name: str) -> Path:
        """jaeger's stand-in: a collector receiving OTLP on jaeger's ports and writing every signal to files."""
        out = self.tmp / "backend"
        out.mkdir()
        grpc, http = self.ports[(name, 4317)], self.ports[(name, 4318)]
        config = {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc}"},
                                                 "http": {"endpoint": f"127.0.0.1:{http}"}}}},
            "exporters": {f"file/{s}": {"path": str(out / f"{s}.jsonl"), "flush_interval": "200ms"}
                          for s in ("traces", "metrics", "logs")},
            "service": {"telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
                        "pipelines": {s: {"receivers": ["otlp"], "exporters": [f"file/{s}"]}
                                      for s in ("traces", "metrics", "logs")}},
        }
        (self.tmp / "backend.yaml").write_text(yaml.safe_dump(config))
        self.start(name, [str(COLLECTOR_BIN), f"--config={self.tmp / 'backend.yaml'}"], {"PATH": "/usr/bin:/bin"})
        return out

    def wait_for(self, name: str, condition: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        proc = self.procs[name]
        while time.monotonic() < deadline:
            if condition == "service_completed_successfully":
                if proc.poll() is not None:
                    assert proc.returncode == 0, self.tail(name)
                    return
            elif proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            elif condition == "service_started":
                return
            else:
                test = self.services[name]["healthcheck"]["test"]
                assert test[0] == "CMD", test
                probe = subprocess.run(self.argv(name, test[1:]), env=self.process_env(name),
                                       capture_output=True, timeout=10)
                if probe.returncode == 0:
                    return
            time.sleep(0.3)
        raise AssertionError(f"{name}: not {condition} after {timeout}s\n{self.tail(name)}")

    def up(self) -> dict[str, Path]:
        """Start every active service after its depends_on conditions hold (compose's order)."""
        started: set[str] = set()
        outputs: dict[str, Path] = {}

        def bring_up(name: str) -> None:
            if name in started:
                return
            svc = self.services[name]
            for dep, spec in (svc.get("depends_on") or {}).items():
                if dep not in self.services:
                    assert spec.get("required") is False, f"{name} needs inactive {dep}"
                    continue
                bring_up(dep)
                self.wait_for(dep, spec["condition"])
            if svc["image"].startswith(JAEGER_IMAGE):
                outputs[name] = self.start_backend(name)
            else:
                self.start(name, self.argv(name, svc["command"]), self.process_env(name))
            started.add(name)

        for name in self.services:
            bring_up(name)
        for name in self.services:
            if "healthcheck" in self.services[name]:
                self.wait_for(name, "service_healthy")
        return outputs

    def stop(self, name: str, timeout: float = 45.0) -> int | None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def down(self) -> None:
        for name in reversed(self.order):
            self.stop(name, timeout=10)

    def tail(self, name: str, n: int = 4000) -> str:
        return (self.tmp / f"{name}.out").read_bytes()[-n:].decode(errors="replace")

    def url(self, name: str, port: int) -> str:
        return f"http://127.0.0.1:{self.ports[(name, port)]}"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _resource_spans(backend: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(resource attributes, span) pairs from the backend's OTLP/JSON trace file."""
    out = []
    for doc in _jsonl(backend / "traces.jsonl"):
        for rs in doc.get("resourceSpans", []):
            res = {a["key"]: next(iter(a["value"].values()), None) for a in rs["resource"].get("attributes", [])}
            out += [(res, span) for ss in rs.get("scopeSpans", []) for span in ss.get("spans", [])]
    return out


def _requests_per_worker(backend: Path) -> dict[str, int]:
    """Requests counted by each worker's own http.server.request.duration streams (cumulative: the last point of
    each stream; delta: the sum), from the backend's OTLP/JSON metric file."""
    last: dict[tuple[str, str], int] = {}
    delta: dict[str, int] = {}
    for doc in _jsonl(backend / "metrics.jsonl"):
        for rm in doc.get("resourceMetrics", []):
            res = {a["key"]: next(iter(a["value"].values()), None) for a in rm["resource"].get("attributes", [])}
            worker = str(res.get("app.worker.id"))
            for sm in rm.get("scopeMetrics", []):
                for metric in sm.get("metrics", []):
                    if metric["name"] != "http.server.request.duration":
                        continue
                    data = metric.get("exponentialHistogram") or metric.get("histogram") or {}
                    cumulative = data.get("aggregationTemporality") in (2, "AGGREGATION_TEMPORALITY_CUMULATIVE")
                    for point in data.get("dataPoints", []):
                        if cumulative:
                            stream = (worker, json.dumps(point.get("attributes", []), sort_keys=True))
                            last[stream] = max(last.get(stream, 0), int(point.get("count", 0)))
                        else:
                            delta[worker] = delta.get(worker, 0) + int(point.get("count", 0))
    for (worker, _), count in last.items():
        delta[worker] = delta.get(worker, 0) + count
    return delta


def _drive(base: str, n_entries: int, pause_s: float) -> int:
    """Register, write entries (with the canary), one 400, then AI features concurrently in two rounds separated by
    more than one export interval (so the run gets several rows). Returns the number of requests served."""
    with httpx.Client(base_url=base, timeout=30, headers={"Connection": "close"}) as client:
        user = client.post("/api/users", json={"name": "compose-user"})
        assert user.status_code == 201, user.text
        auth = {"Authorization": f"Bearer {user.json()['token']}", "Connection": "close"}
        ids = []
        for i in range(n_entries):
            r = client.post("/api/entries", json={"text": f"day {i}: {CANARY} walked by the river"}, headers=auth)
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        bad = client.post("/api/entries", json={"text": ""}, headers=auth)
        assert bad.status_code == 400 and "text" in bad.text

    def ai(entry_id: int) -> int:
        with httpx.Client(base_url=base, timeout=30, headers=auth) as c:
            return c.post(f"/api/entries/{entry_id}/ai/summarize").status_code

    with ThreadPoolExecutor(max_workers=6) as pool:  # sync workers: concurrency spreads over both
        for round_ids in (ids[: n_entries // 2], ids[n_entries // 2:]):
            assert list(pool.map(ai, round_ids)) == [200] * len(round_ids)
            time.sleep(pause_s)
    return 1 + n_entries + 1 + n_entries


def _summary(run: Any, key: str) -> Any:
    value = run.summary[key]
    return value["last"] if isinstance(value, dict) and "last" in value else value


def _wait(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_compose_topology_end_to_end(tmp_path: Path) -> None:
    from exporters.runfile import find_runs, read_run

    assert COLLECTOR_BIN.exists(), "build the collector first: collector/build.sh (make test does)"
    env = read_env_file(ROOT / ".env.example")
    env.update(PSEUDONYM_SECRET=uuid.uuid4().hex, WANDB_BRIDGE_TOKEN=uuid.uuid4().hex, WANDB_MODE="offline",
               WANDB_EXPORT_INTERVAL="2", OTEL_METRIC_EXPORT_INTERVAL="1000", OTEL_BSP_SCHEDULE_DELAY="200",
               WEB_CONCURRENCY="2", GUNICORN_THREADS="1", LOCAL_LLM_LATENCY_MS="150",
               DEPLOYMENT_ENVIRONMENT="compose-test", COMPOSE_PROFILES="local-llm",
               OTLP_BACKEND_METRICS_EXPORTER="otlp_http/backend")  # the backend sees each worker's own streams
    compose = resolve(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), env)
    topo = Topology(compose, env, tmp_path)
    assert set(topo.services) >= {"app", "otel-collector", "wandb-bridge", "jaeger", "local-llm", "init-volumes"}
    try:
        outputs = topo.up()
        backend = outputs["jaeger"]
        bridge = topo.url("wandb-bridge", 4319)
        n_requests = _drive(topo.url("app", 8000), n_entries=8, pause_s=3.0)

        # SIGTERM to gunicorn: each worker flushes its providers (worker_exit -> telemetry.shutdown)
        assert topo.stop("app") == 0, topo.tail("app")
        stats = _wait(lambda: (s := httpx.get(f"{bridge}/healthz").json())["spans"] >= n_requests
                      and s["metric_points"] > 0 and s, 60, f"the bridge to receive >= {n_requests} spans")
        assert stats["rejected"] == 0 and stats["errors"] == 0, stats

        def server_spans() -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
            found = [p for p in _resource_spans(backend) if p[1].get("kind") == 2]  # SPAN_KIND_SERVER
            return found if len(found) >= n_requests else None

        spans = _wait(server_spans, 30, "every request as a server span in the OTLP backend")
        time.sleep(3)  # > one bridge interval, so the last row is in the run before it finishes
        for name in ("otel-collector", "wandb-bridge"):
            assert topo.stop(name) == 0, topo.tail(name)
    finally:
        topo.down()

    # OTLP backend (jaeger's place): every request as a server span, from BOTH gunicorn workers
    workers = {str(res.get("app.worker.id")) for res, _ in spans}
    assert workers == {"0", "1"}, workers
    assert {res["deployment.environment.name"] for res, _ in spans} == {"compose-test"}
    assert len({res["service.instance.id"] for res, _ in spans}) == 2

    # rotated log files on the logs volume, written by the collector; init-volumes gave the volumes to uid 10001
    logs = topo.volumes["logs"]
    assert {topo.volumes[v].stat().st_uid for v in ("logs", "wandb-data", "collector-queue")} == {10001}
    combined, audit = _jsonl(logs / "combined.log"), _jsonl(logs / "audit.log")
    assert combined and audit
    audit_text = json.dumps(audit)
    assert "user.register" in audit_text and audit_text.count("entry.create") >= 8
    # error.log takes severity >= ERROR only: nothing here failed on the server side (the 400 is the client's)
    assert _jsonl(logs / "error.log") == [], _jsonl(logs / "error.log")[:3]
    assert any(r.get("resourceLogs") for r in combined)

    # exactly ONE W&B run, from the bridge, on its volume
    runs = find_runs(topo.volumes["wandb-data"])
    assert len(runs) == 1, runs
    run = read_run(runs[0])
    assert run.exit_code == 0
    assert _summary(run, "http/requests_total") == n_requests  # from the server spans
    # The metric streams of the two workers (app.worker.id in the resource) stay apart: their cumulative points are
    # diffed per stream, so the per-interval deltas over several rows add up to exactly the requests served.
    per_row = run.series("http.server.request.duration/count")
    assert len([v for v in per_row if v]) >= 2, per_row
    assert sum(per_row) == n_requests
    # ...and at the source each worker counted only its own share
    per_worker = _requests_per_worker(backend)
    assert set(per_worker) == {"0", "1"} and all(per_worker.values()), per_worker
    assert sum(per_worker.values()) == n_requests, per_worker
    # the ONE run keeps the workers apart in the server-span section too: distinct per-worker keys (from the
    # resource's app.worker.id) whose sum is the total, each equal to what that worker itself counted
    worker_keys = {k for row in run.history for k in row if k.startswith("http/requests@worker=")}
    assert worker_keys == {"http/requests@worker=0", "http/requests@worker=1"}, worker_keys
    in_run = {k.rsplit("=", 1)[1]: sum(run.series(k)) for k in worker_keys}
    assert sum(in_run.values()) == sum(run.series("http/requests")) == n_requests, in_run
    assert in_run == per_worker, (in_run, per_worker)

    # privacy: diary text never reached a sink
    for root in (logs, topo.volumes["wandb-data"], backend):
        for path in root.rglob("*"):
            if path.is_file():
                assert CANARY.encode() not in path.read_bytes(), path
