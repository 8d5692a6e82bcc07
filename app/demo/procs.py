"""Child processes of the demo: start with stdout captured under DEMO_OUT, wait until ready, stop cleanly.

Every process runs in its own session so that a last-resort SIGKILL can reach its whole group (gunicorn workers
included) by the id we started, never by name. Stopping is SIGTERM, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger(__name__)


class DemoError(RuntimeError):
    """A demo phase failed; the message says which and where to look."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (only for programs that cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_or_any(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` when it is free now, else 0 (the program binds any free port and reports it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, preferred))
        except OSError:
            return 0
    return preferred


@dataclass
class Proc:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    stop_seconds: float = 0.0
    killed: bool = False  # needed SIGKILL: it did not stop within the timeout

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab", buffering=0)
        try:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(self.env),
                cwd=self.cwd,
                start_new_session=True,
            )
        finally:
            out.close()
        log.info("started %s pid=%s", self.name, self.popen.pid)
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen else -1

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until ``pattern`` appears in the captured output; fail if the process dies first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = rx.search(self.output())
            if match:
                return match
            if not self.alive():
                break
            time.sleep(0.05)
        if not self.alive():
            raise DemoError(self._why(f"exited before printing /{pattern}/"))
        raise DemoError(self._why(f"did not print /{pattern}/ within {timeout:.0f}s"))

    def wait_http(self, url: str, timeout: float, ok: Callable[[httpx.Response], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                break
            try:
                resp = httpx.get(url, timeout=2.0)
                if ok(resp) if ok else resp.status_code < 400:
                    return
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        if not self.alive():
            raise DemoError(self._why(f"exited before {url} was ready"))
        raise DemoError(self._why(f"{url} not ready within {timeout:.0f}s ({last})"))

    def _why(self, what: str) -> str:
        state = "running" if self.alive() else f"exited with {self.popen.poll() if self.popen else '?'}"
        return f"{self.name} {what}; {state}; output in {self.log_path}:\n{self.tail()}"

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL the process group. Idempotent."""
        if self.popen is None or self.exit_code is not None:
            return self.exit_code
        t0 = time.monotonic()
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs: SIGKILL", self.name, timeout)
                self.killed = True
                self._kill_group()
                self.popen.wait(5)
        self._kill_group()  # leftovers of the group (e.g. an orphaned worker), if any
        self.exit_code = self.popen.returncode
        if self.exit_code == -signal.SIGTERM and not self.killed:
            self.exit_code = 0  # no SIGTERM handler (e.g. a stdlib server): the signal we sent ended it
        self.stop_seconds = time.monotonic() - t0
        return self.exit_code

    def _kill_group(self) -> None:
        if self.popen is None:  # never started
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Procs:
    """The demo's children, stopped in reverse start order (service before collector before bridge)."""

    def __init__(self, out_dir: Path, base_env: Mapping[str, str]) -> None:
        self.out_dir = out_dir
        self.base_env = dict(base_env)
        self.started: list[Proc] = []

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Proc:
        full_env = {**self.base_env, **(env or {})}
        proc = Proc(name, argv, self.out_dir / "stdout" / f"{name}.log", full_env, cwd).start()
        self.started.append(proc)
        return proc

    def python(self, name: str, module: str, *args: str, env: Mapping[str, str] | None = None) -> Proc:
        return self.start(name, [sys.executable, "-m", module, *args], env)

    def stop(self, proc: Proc, timeout: float = 20.0) -> int | None:
        code = proc.stop(timeout)
        log.info("stopped %s exit=%s in %.1fs", proc.name, code, proc.stop_seconds)
        return code

    def stop_all(self, timeout: float = 20.0, first: Sequence[str] = ()) -> dict[str, int | None]:
        """Stop the processes named in ``first`` in that order, then the rest newest first."""
        rank = {name: i for i, name in enumerate(first)}
        order = sorted(reversed(self.started), key=lambda p: rank.get(p.name, len(rank)))
        return {p.name: self.stop(p, timeout) for p in order}
