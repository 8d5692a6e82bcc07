"""The real docker-compose.yml on a real Docker engine, for tests/integration/deploy/test_compose_real.py.

Everything goes through scripts/docker/*.sh (also usable by hand):
  install.sh   Debian's docker.io when there is no dockerd; Compose v2 built from Go modules when `docker compose
               version` fails (a CLI plugin in a private DOCKER_CONFIG under the tools cache);
  dockerd.sh   a private dockerd + containerd (own socket, exec root; data root in the tools cache, kept warm), stopped
               by pid at the end: nothing is left running;
  standins.sh  the images the repository names: pulled when the registry answers (GitHub Actions), else stand-ins
               with the same roles, built here and said loudly (python base from debootstrap, the collector from our
               OCB build, Jaeger v2 built from Go modules).
The compose project runs like a fresh checkout: no .env (an empty --env-file) and only PATH, HOME, DOCKER_HOST and
DOCKER_CONFIG in the environment of `docker compose` (nothing of the caller's OPENAI_API_KEY, WANDB_* etc. leaks
into the interpolation); the published ports move off 8000/16686 only when those are taken.
Tools cache: ${AI_DIARY_TOOLS_DIR:-${XDG_CACHE_HOME:-~/.cache}/ai-diary-tools}; DOCKER_DATA_ROOT overrides the
engine's data root (default <tools>/docker-data).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import ROOT, free_port, wait_until

SCRIPTS = ROOT / "scripts" / "docker"
PROJECT = "ai-diary-compose-test"  # not the file's own name (ai-diary): a developer's stack is left alone
APP_IMAGE = "ai-diary:local"


def tools_dir() -> Path:
    if os.environ.get("AI_DIARY_TOOLS_DIR"):
        return Path(os.environ["AI_DIARY_TOOLS_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ai-diary-tools"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Harness:
    """A private engine, the images and one compose project; ``timings`` (s) and ``notes`` feed the test's report."""

    work: Path
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # image -> "upstream" | "stand-in"
    ports: dict[str, int] = field(default_factory=dict)
    state: Path = field(init=False)
    docker_env: dict[str, str] = field(init=False)
    engine_started: bool = False

    def __post_init__(self) -> None:
        # unix socket paths are short (108 bytes): the state dir lives in /tmp, not under pytest's deep tmp_path
        self.state = Path(tempfile.mkdtemp(prefix="aid-dk-", dir="/tmp"))
        self.log = self.work / "harness.log"
        self.docker_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home())}
        if os.environ.get("DOCKER_CONFIG"):
            self.docker_env["DOCKER_CONFIG"] = os.environ["DOCKER_CONFIG"]

    # -- plumbing ---------------------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        with self.log.open("a") as fh:
            fh.write(line + "\n")

    def script(self, name: str, *args: str, timeout: float, env: Mapping[str, str] | None = None) -> str:
        """Run scripts/docker/NAME; stderr goes to the harness log (and is shown on failure); stdout returned."""
        t0 = time.monotonic()
        full = {**os.environ, **self.docker_env, **(env or {})}
        with self.log.open("a") as err:
            proc = subprocess.run(
                ["bash", str(SCRIPTS / name), *args],
                cwd=ROOT,
                env=full,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=timeout,
                check=False,
            )
        took = time.monotonic() - t0
        if proc.returncode != 0:
            raise AssertionError(f"{name} {' '.join(args)} failed ({proc.returncode}):\n{self.log_tail()}")
        self._say(f"{name} {' '.join(args)}: {took:.0f} s")
        return proc.stdout

    def log_tail(self, n: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def docker(
        self, *args: str, timeout: float = 120, check: bool = True, **kw: Any
    ) -> subprocess.CompletedProcess[Any]:
        proc = subprocess.run(
            ["docker", *args], env=self.docker_env, capture_output=True, timeout=timeout, check=False, **kw
        )
        if check and proc.returncode != 0:
            err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else proc.stderr
            raise AssertionError(f"docker {' '.join(args)}: exit {proc.returncode}\n{err[-3000:]}")
        return proc

    def compose(
        self, *args: str, timeout: float = 300, check: bool = True, **kw: Any
    ) -> subprocess.CompletedProcess[Any]:
        files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(SCRIPTS / "compose.host-build.yml")]
        base = ["compose", "--project-directory", str(ROOT), "-p", PROJECT, "--env-file", str(self.env_file), *files]
        return self.docker(*base, *args, timeout=timeout, check=check, text=True, **kw)

    # -- set-up -----------------------------------------------------------------------------------------------------
    def install(self) -> None:
        """install.sh (idempotent: docker.io, debootstrap, compose v2); its stdout names DOCKER_CONFIG when the
        compose plugin is the private one."""
        t0 = time.monotonic()
        out = self.script("install.sh", timeout=1800)
        for line in out.splitlines():
            if line.startswith("DOCKER_CONFIG="):
                self.docker_env["DOCKER_CONFIG"] = line.split("=", 1)[1]
        for sbin in ("/usr/local/sbin", "/usr/sbin", "/sbin"):  # dockerd for a non-root PATH
            if sbin not in self.docker_env["PATH"].split(":"):
                self.docker_env["PATH"] += f":{sbin}"
        self.timings["install.sh"] = time.monotonic() - t0
        if self.docker("compose", "version", check=False).returncode != 0:  # the private plugin, found by install.sh
            self.docker_env["DOCKER_CONFIG"] = str(tools_dir() / "docker-config")
        version = self.docker("compose", "version", "--short", text=True).stdout.strip()
        self._say(f"docker compose {version}")

    def start_engine(self) -> None:
        t0 = time.monotonic()
        out = self.script("dockerd.sh", "start", str(self.state), timeout=180)
        self.engine_started = True
        host = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("DOCKER_HOST="))
        self.docker_env["DOCKER_HOST"] = host
        self.timings["dockerd start"] = time.monotonic() - t0
        self.env_file = self.work / "empty.env"  # a fresh checkout has no .env
        self.env_file.write_text("")

    def stop_engine(self) -> None:
        if self.engine_started:
            self.script("dockerd.sh", "stop", str(self.state), timeout=240)
            self.engine_started = False
        shutil.rmtree(self.state, ignore_errors=True)

    def prepare_images(self, require_upstream: bool) -> None:
        """The python base, collector and Jaeger images: upstream when the registry answers, else stand-ins."""
        t0 = time.monotonic()
        env = {"STANDINS_PULL_TIMEOUT": "300"} if require_upstream else {}
        self.script("standins.sh", timeout=3600, env=env)
        self.timings["base images (pull or stand-ins)"] = time.monotonic() - t0
        for image in self.base_images():
            label = self.docker(
                "image", "inspect", "--format", '{{index .Config.Labels "ai-diary.standin"}}', image, text=True
            ).stdout.strip()
            self.images[image] = "stand-in" if label == "true" else "upstream"
        standins = [i for i, kind in self.images.items() if kind == "stand-in"]
        if standins:
            self._say(f"NOTE: no registry here: STAND-IN images (same roles, built locally): {', '.join(standins)}")
        if require_upstream:
            assert not standins, f"AI_DIARY_COMPOSE_IMAGES=upstream, but these are stand-ins: {standins}"

    def base_images(self) -> list[str]:
        dockerfile = (ROOT / "Dockerfile").read_text()
        python = next(line.split("=", 1)[1] for line in dockerfile.splitlines() if line.startswith("ARG PYTHON_IMAGE="))
        config = json.loads(self.compose("config", "--format", "json").stdout)
        others = sorted({s["image"] for s in config["services"].values() if "build" not in s} - {APP_IMAGE})
        return [python, *others]

    def build(self) -> None:
        t0 = time.monotonic()
        proc = self.compose("build", timeout=1800, check=False)
        with self.log.open("a") as fh:
            fh.write(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"compose build failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
        self.timings["app image build"] = time.monotonic() - t0

    def choose_ports(self) -> None:
        """The compose file's published ports (127.0.0.1:<default>) when free; else free ones, said so."""
        config = (ROOT / "docker-compose.yml").read_text()
        for var, default in (("APP_PORT", 8000), ("JAEGER_UI_PORT", 16686), ("DASHBOARD_PORT", 8088)):
            if "${" + var + ":-" not in config:
                continue
            port = default if port_free(default) else free_port()
            if port != default:
                self.notes.append(f"{var}: {default} is taken on this machine, published on 127.0.0.1:{port}")
                # APP_PORT and JAEGER_UI_PORT name the host address too; DASHBOARD_PORT is the port alone
                host_too = "${" + var + ":-127.0.0.1:" in config
                self.docker_env[var] = f"127.0.0.1:{port}" if host_too else str(port)
            self.ports[var] = port

    # -- the running project ----------------------------------------------------------------------------------------
    def ps(self) -> list[dict[str, Any]]:
        out = self.compose("ps", "-a", "--format", "json").stdout.strip()
        if not out:
            return []
        if out.startswith("["):
            return list(json.loads(out))
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_healthy(self, timeout: float) -> float:
        """Seconds until every service with a healthcheck is healthy, the others running, one-shots exited 0."""
        t0 = time.monotonic()
        last: list[str] = []
        while time.monotonic() - t0 < timeout:
            bad = []
            for c in self.ps():
                state, health = c.get("State"), c.get("Health") or ""
                if state == "running" and health in ("", "healthy"):
                    continue
                if state == "exited" and c.get("ExitCode") == 0 and c["Service"] == "init-volumes":
                    continue
                bad.append(f"{c['Service']}={state}/{health or '-'}/{c.get('ExitCode')}")
            if not bad:
                return time.monotonic() - t0
            last = bad
            time.sleep(0.5)
        logs = self.compose("logs", "--no-color", "--tail", "40", check=False).stdout
        raise AssertionError(f"not healthy after {timeout:.0f} s: {last}\n{logs[-6000:]}")

    def container(self, service: str) -> str:
        return str(self.compose("ps", "-a", "-q", service).stdout).strip().splitlines()[0]

    def inspect(self, service: str) -> dict[str, Any]:
        return dict(json.loads(self.docker("inspect", self.container(service), text=True).stdout)[0])

    def exec_python(self, service: str, code: str, timeout: float = 60) -> str:
        return str(self.compose("exec", "-T", service, "python", "-c", code, timeout=timeout).stdout)

    def volume_copy(self, volume: str, dest: Path) -> Path:
        """The files of a named volume of the project, copied out through a throwaway container of the app image
        (the volume belongs to uid 10001 or root; no host path of the engine's data root is read)."""
        proc = self.docker(
            "run", "--rm", "--network", "none", "--user", "0:0", "-v", f"{PROJECT}_{volume}:/v:ro",
            "--entrypoint", "tar", APP_IMAGE, "-C", "/v", "-cf", "-", ".",
            timeout=300,
        )  # fmt: skip
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
            tar.extractall(dest, filter=_files_only)
        return dest

    def image_sizes(self) -> dict[str, int]:
        out = self.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", text=True).stdout
        sizes = {}
        for line in out.splitlines():
            name, image_id = line.split()
            if name.endswith(":<none>"):
                continue
            size = self.docker("image", "inspect", "--format", "{{.Size}}", image_id, text=True).stdout.strip()
            sizes[name] = int(size)
        return sizes

    def app_image_breakdown(self) -> dict[str, int]:
        """Bytes of the app image by what takes the space: the base image, then the venv's largest packages."""
        code = (
            "import os, json, sys\n"
            "sp = [p for p in sys.path if p.endswith('site-packages')][0]\n"
            "def size(p):\n"
            "    if os.path.isfile(p): return os.path.getsize(p)\n"
            "    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(p) for f in fs\n"
            "               if not os.path.islink(os.path.join(r, f)))\n"
            "out = {n: size(os.path.join(sp, n)) for n in os.listdir(sp) if not n.endswith(('.dist-info', '.pth'))}\n"
            "out['/opt/venv (all)'] = size('/opt/venv')\n"
            "print(json.dumps(out))\n"
        )
        proc = self.docker(
            "run", "--rm", "--network", "none", "--entrypoint", "python", APP_IMAGE, "-c", code, text=True
        )
        return dict(json.loads(proc.stdout))


def _files_only(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    """tarfile's "data" filter, links left out (wandb links logs/debug*.log to absolute paths of its container)."""
    return None if member.issym() or member.islnk() else tarfile.data_filter(member, path)


def http_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL of the test
        return json.loads(resp.read())


RESTARTING = (OSError, ValueError, AssertionError, subprocess.SubprocessError)


def poll(check: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """tests.support.wait_until with the failures of a service that is (re)starting counted as "not yet"."""
    return wait_until(check, timeout, what, interval, retry_on=RESTARTING)
