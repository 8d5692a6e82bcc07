"""docker-compose.yml without a Docker engine: every service as a local process with the compose file's own command,
environment (interpolated from .env.example like `docker compose` does from .env), mounted config files and volumes.
Service host names map to 127.0.0.1, container ports to free ports, named volumes to directories; the collector
image runs as collector/_build/otelcol-ai-diary with the same otel-collector.yaml, jaeger is replaced by a second
collector that writes what it receives to files (the OTLP backend), the app image's commands run from .venv.
Used by tests/integration/deploy/test_compose_equivalent.py and tests/integration/collector/test_service_kill.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT, free_port

VENV_BIN = ROOT / ".venv" / "bin"
COLLECTOR_BIN = ROOT / "collector" / "_build" / "otelcol-ai-diary"
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:"
JAEGER_IMAGE = "jaegertracing/jaeger:"
APP_WORKDIR = "/srv/ai-diary"  # WORKDIR of the Dockerfile's runtime stage (holds gunicorn.conf.py)

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


class Topology:
    """The compose services, translated to local processes."""

    def __init__(self, compose: dict[str, Any], env: Mapping[str, str], tmp: Path) -> None:
        profiles = set(filter(None, env.get("COMPOSE_PROFILES", "").split(",")))
        self.services = {
            n: s for n, s in compose["services"].items() if not s.get("profiles") or profiles & set(s["profiles"])
        }
        self.tmp = tmp
        self.env = env
        # the image the app service builds (the other services of our image name it without a build: section)
        self.app_image = next(s["image"] for s in compose["services"].values() if "build" in s)
        self.ports = {(n, p): free_port() for n, s in self.services.items() for p in self._container_ports(s)}
        self.volumes = {name: tmp / "volumes" / name for name in compose.get("volumes", {})}
        for path in self.volumes.values():
            path.mkdir(parents=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.launch: dict[str, tuple[list[str], dict[str, str]]] = {}  # argv, env (for restart)
        self.order: list[str] = []
        self.owners: dict[str, int] = {}  # volume -> uid, right after the root services that prepare them ran
        self.sudo: set[str] = set()  # root services run through `sudo -n` (we are not root)
        self.done: set[str] = set()  # one-shot services that completed
        self.skipped: set[str] = set()  # root services that cannot run here (not root, no passwordless sudo)

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

    def argv(self, name: str, command: list[str] | str, *, entrypoint: bool = True) -> list[str]:
        """The service's process: its command, after its entrypoint (a `/bin/sh -c SCRIPT sh` wrapper that ends in
        `exec "$@"` runs as is, the command then found on the venv-first PATH). Healthchecks run without it."""
        cmd = shlex.split(command) if isinstance(command, str) else list(command)
        image = self.services[name]["image"]
        wrapper = list(self.services[name].get("entrypoint") or []) if entrypoint else []
        if wrapper:
            assert wrapper[:2] == ["/bin/sh", "-c"], f"{name}: no local equivalent for entrypoint {wrapper}"
            return [self.rewrite(name, a) for a in wrapper + cmd]
        if image.startswith(COLLECTOR_IMAGE):
            exe = [str(COLLECTOR_BIN)]
        elif image == self.app_image:  # our image: its PATH starts with the venv
            exe, cmd = [sys.executable if cmd[0] == "python" else str(VENV_BIN / cmd[0])], cmd[1:]
        else:
            raise AssertionError(f"no local equivalent for image {image}")
        return exe + [self.rewrite(name, a) for a in cmd]

    def process_env(self, name: str) -> dict[str, str]:
        env = {
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            "HOME": str(self.tmp / "home" / name),
            "PYTHONUNBUFFERED": "1",
        }
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
        if os.environ.get("PYTHONPATH"):  # a worktree's code wins over the venv's editable install (not in compose)
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        for key, val in (self.services[name].get("environment") or {}).items():
            env[key] = self.rewrite(name, "" if val is None else str(val))
        return env

    def as_user(self, name: str, argv: list[str]) -> list[str] | None:
        """compose's `user: "0:..."` for a local process: as is when we are root, through `sudo -n` when that works
        without a password (a GitHub-hosted runner), else None: the service cannot run here."""
        if not str(self.services[name].get("user", "")).startswith("0:") or os.geteuid() == 0:
            return argv
        if (
            shutil.which("sudo")
            and subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=30).returncode == 0
        ):
            self.sudo.add(name)
            return ["sudo", "-n", *argv]
        self.skipped.add(name)
        return None

    def completed(self, name: str) -> None:
        """After a one-shot service ran: note who owns its volumes; if it ran through sudo, hand them back to us
        (the local processes of the other services run as the current user, not as the image's uid 10001)."""
        if name in self.done:
            return
        self.done.add(name)
        volumes = [host for _, host in self.mounts(name) if host in self.volumes.values()]
        self.owners.update({host.name: host.stat().st_uid for host in volumes})
        if name in self.sudo and volumes:
            subprocess.run(
                ["sudo", "-n", "chown", "-R", f"{os.getuid()}:{os.getgid()}", *map(str, volumes)],
                check=True,
                capture_output=True,
                timeout=120,
            )

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.tmp / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(
            argv, env=env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.launch[name] = (argv, env)
        if name not in self.order:
            self.order.append(name)

    def kill(self, name: str) -> None:
        """SIGKILL the service's process group: a crash, no cleanup."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)

    def relaunch(self, name: str) -> None:
        """Start a stopped service again: the same command and environment (compose's restart policy)."""
        assert self.procs[name].poll() is not None, f"{name} is still running"
        self.start(name, *self.launch[name])

    def start_backend(self, name: str) -> Path:
        """jaeger's stand-in: a collector receiving OTLP on jaeger's ports and writing every signal to files."""
        out = self.tmp / "backend"
        out.mkdir()
        grpc, http = self.ports[(name, 4317)], self.ports[(name, 4318)]
        config = {
            "receivers": {
                "otlp": {
                    "protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc}"}, "http": {"endpoint": f"127.0.0.1:{http}"}}
                }
            },
            "exporters": {
                f"file/{s}": {"path": str(out / f"{s}.jsonl"), "flush_interval": "200ms"}
                for s in ("traces", "metrics", "logs")
            },
            "service": {
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
                "pipelines": {
                    s: {"receivers": ["otlp"], "exporters": [f"file/{s}"]} for s in ("traces", "metrics", "logs")
                },
            },
        }
        if (name, 13133) in self.ports:  # jaeger v2's health endpoint (healthcheckv2: /status)
            config["extensions"] = {
                "health_check": {"endpoint": f"127.0.0.1:{self.ports[(name, 13133)]}", "path": "/status"}
            }
            config["service"]["extensions"] = ["health_check"]
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
                    self.completed(name)
                    return
            elif proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            elif condition == "service_started":
                return
            else:
                if self.healthy(name):
                    return
            time.sleep(0.3)  # poll interval (the deadline above bounds the wait)
        raise AssertionError(f"{name}: not {condition} after {timeout}s\n{self.tail(name)}")

    def healthy(self, name: str) -> bool:
        """Run the service's healthcheck: our image's commands from .venv; a `wget URL` probe (jaeger's alpine
        image) as an HTTP GET of the rewritten URL."""
        test = self.services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        if test[1] == "wget":
            try:
                with urllib.request.urlopen(self.rewrite(name, test[-1]), timeout=5) as resp:  # noqa: S310
                    return resp.status == 200
            except OSError:
                return False
        probe = subprocess.run(
            self.argv(name, test[1:], entrypoint=False), env=self.process_env(name), capture_output=True, timeout=10
        )
        return probe.returncode == 0

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
            elif (
                argv := self.as_user(name, self.argv(name, svc["command"]))
            ) is None:  # cannot run as root here: a stand-in that completes (the test checks the volumes)
                self.start(name, [sys.executable, "-c", ""], {"PATH": "/usr/bin:/bin"})
            else:
                self.start(name, argv, self.process_env(name))
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


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def resource_spans(backend: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(resource attributes, span) pairs from the backend's OTLP/JSON trace file."""
    out = []
    for doc in jsonl(backend / "traces.jsonl"):
        for rs in doc.get("resourceSpans", []):
            res = {a["key"]: next(iter(a["value"].values()), None) for a in rs["resource"].get("attributes", [])}
            out += [(res, span) for ss in rs.get("scopeSpans", []) for span in ss.get("spans", [])]
    return out


def run_summary(run: Any, key: str) -> Any:
    value = run.summary[key]
    return value["last"] if isinstance(value, dict) and "last" in value else value


def compose_topology(tmp: Path, **overrides: str) -> Topology:
    """docker-compose.yml interpolated from .env.example plus fresh secrets and the given overrides."""
    env = read_env_file(ROOT / ".env.example")
    env.update(PSEUDONYM_SECRET=uuid.uuid4().hex, WANDB_BRIDGE_TOKEN=uuid.uuid4().hex, WANDB_MODE="offline")
    env.update(overrides)
    return Topology(resolve(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), env), env, tmp)
