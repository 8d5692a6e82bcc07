"""The service under a real gunicorn, for tests that need separate worker processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from tests.support import ROOT, free_port


@contextlib.contextmanager
def gunicorn_app(tmp_path: Path, llm_base_url: str, *, workers: int, database: Path,
                 timeout: float = 20.0, stdout: Path | None = None, tcp: bool = False,
                 env: Mapping[str, str] | None = None) -> Iterator[httpx.Client]:
    """``gunicorn 'app:create_app()'`` with ``workers`` workers on a unix socket (``tmp_path / "g.sock"``), or with
    ``tcp`` on a free 127.0.0.1 port (the client's ``base_url``: for tools that speak only TCP), telemetry off
    unless ``env`` (variables set last) says otherwise; yields a client once ``/readyz`` answers 200 and stops
    gunicorn (terminate, then kill) on exit. The app's JSON log lines (stdout) go to the file ``stdout`` if given,
    else nowhere."""
    sock = tmp_path / "g.sock"
    port = free_port() if tcp else None
    bind = f"127.0.0.1:{port}" if tcp else f"unix:{sock}"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PSEUDONYM_SECRET": "s",
           "OPENAI_BASE_URL": llm_base_url, "OPENAI_API_KEY": "k", "OTEL_SDK_DISABLED": "true",
           "LOG_LEVEL": "WARNING", **(env or {})}
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", bind,
         "--graceful-timeout", "3", "app:create_app()"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE)
    client = httpx.Client(transport=None if tcp else httpx.HTTPTransport(uds=str(sock)),
                          base_url=f"http://127.0.0.1:{port}" if tcp else "http://diary", timeout=timeout)
    try:
        deadline = time.monotonic() + timeout + 10
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "gunicorn did not become ready"
            time.sleep(0.1)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        if stdout:
            out.close()
