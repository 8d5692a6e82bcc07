"""A real gunicorn for the tests that need separate worker processes: one launcher (``run_gunicorn``) and, on top of
it, the service itself on a unix socket (``gunicorn_app``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

from tests.support import ROOT, free_port, wait_until

T = TypeVar("T")
CONFIG = ROOT / "gunicorn.conf.py"


class Gunicorn:
    """A running gunicorn master (its own session: stopping it reaches the workers too) and its log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_until(self, check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
        """``tests.support.wait_until``, failing at once (with the log's tail) if gunicorn exits meanwhile."""

        def alive_check() -> T:
            value = check()
            if not value and self.proc.poll() is not None:
                raise AssertionError(
                    f"gunicorn exited with {self.proc.returncode} while waiting for {what}:\n{self.output()[-3000:]}"
                )
            return value

        try:
            return wait_until(alive_check, timeout, what, interval)
        except AssertionError as exc:
            if self.proc.poll() is not None:
                raise
            raise AssertionError(f"{exc}\n{self.output()[-3000:]}") from None

    def wait_for_text(self, text: str, timeout: float = 60.0, count: int = 1) -> str:
        """Wait until ``text`` occurs ``count`` times in the log; returns the log."""
        return self.wait_until(
            lambda: (out := self.output()).count(text) >= count and out,
            timeout,
            f"{count} x {text!r} in the gunicorn log",
        )

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM to the process group, a bounded wait, then SIGKILL. Returns the master's exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


@contextlib.contextmanager
def run_gunicorn(
    app: str,
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    config: bool = True,
    args: Sequence[str] = (),
    stdout: Path | str | None = "log",
    stop_timeout: float = 20.0,
) -> Iterator[Gunicorn]:
    """``python -m gunicorn [--config gunicorn.conf.py] *args app`` with exactly ``env``, in its own session;
    stderr goes to ``log``, stdout to ``log`` too (``"log"``), to another file, or nowhere (None). Stopped on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "gunicorn", *(["--config", str(CONFIG)] if config else []), *args, app]
    with contextlib.ExitStack() as files:
        err = files.enter_context(open(log, "wb"))
        if stdout == "log":
            out, err = err, subprocess.STDOUT
        elif stdout is None:
            out = subprocess.DEVNULL
        else:
            out = files.enter_context(open(stdout, "wb"))
        proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
        )
    server = Gunicorn(proc, log)
    try:
        yield server
    finally:
        server.stop(stop_timeout)


@contextlib.contextmanager
def gunicorn_app(
    tmp_path: Path,
    llm_base_url: str,
    *,
    workers: int,
    database: Path,
    timeout: float = 20.0,
    stdout: Path | None = None,
    tcp: bool = False,
    env: Mapping[str, str] | None = None,
) -> Iterator[httpx.Client]:
    """``gunicorn 'app:create_app()'`` with ``workers`` workers on a unix socket (``tmp_path / "g.sock"``), or with
    ``tcp`` on a free 127.0.0.1 port (the client's ``base_url``: for tools that speak only TCP), telemetry off
    unless ``env`` (variables set last) says otherwise; yields a client once ``/readyz`` answers 200 and stops
    gunicorn on exit. The app's JSON log lines (stdout) go to the file ``stdout`` if given, else nowhere;
    gunicorn's stderr to ``tmp_path/gunicorn.err``."""
    sock = tmp_path / "g.sock"
    port = free_port() if tcp else None
    bind = f"127.0.0.1:{port}" if tcp else f"unix:{sock}"
    full_env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "PSEUDONYM_SECRET": "s",
        "OPENAI_BASE_URL": llm_base_url,
        "OPENAI_API_KEY": "k",
        "OTEL_SDK_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    args = ["--workers", str(workers), "--bind", bind, "--graceful-timeout", "3"]
    with (
        run_gunicorn(
            "app:create_app()",
            env=full_env,
            cwd=ROOT,
            log=tmp_path / "gunicorn.err",
            config=False,
            args=args,
            stdout=stdout,
            stop_timeout=10,
        ) as server,
        httpx.Client(
            transport=None if tcp else httpx.HTTPTransport(uds=str(sock)),
            base_url=f"http://127.0.0.1:{port}" if tcp else "http://diary",
            timeout=timeout,
        ) as client,
    ):

        def ready() -> bool:
            try:
                return client.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        server.wait_until(ready, timeout + 10, "gunicorn to answer /readyz")
        yield client
