"""gunicorn.conf.py on a real gunicorn: per-worker telemetry init in post_fork with stable worker slots (0..N-1),
reused when a worker dies, settings from the environment."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx

from tests.support import free_port
from tests.support.gunicorn import run_gunicorn

INIT_LINE = re.compile(r"telemetry initialised in worker (\d+) \(pid (\d+)\)")

MINI_APP = """
import os

def app(environ, start_response):
    body = ("%s %s" % (os.getpid(), os.environ.get("AI_DIARY_WORKER_ID"))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def init_lines(log: Path) -> list[tuple[int, int]]:
    return [(int(w), int(p)) for w, p in INIT_LINE.findall(log.read_text())]


def test_workers_get_stable_slots_and_a_replacement_reuses_the_dead_ones(tmp_path: Path) -> None:
    (tmp_path / "mini.py").write_text(MINI_APP)
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PORT": str(port),
        "GUNICORN_BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "3",
        "GUNICORN_THREADS": "1",
        "OTEL_SDK_DISABLED": "true",
    }
    log = tmp_path / "gunicorn.log"
    with run_gunicorn("mini:app", env=env, cwd=tmp_path, log=log, args=["--chdir", str(tmp_path)]) as server:
        first = server.wait_until(
            lambda: lines if len(lines := init_lines(log)) == 3 else None, 30, "3 workers initialised"
        )
        assert sorted(w for w, _ in first) == [0, 1, 2]
        pid_of = {w: p for w, p in first}
        slot_of = {p: w for w, p in first}
        for _ in range(6):  # each worker sees its own slot as AI_DIARY_WORKER_ID
            pid, seen = httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text.split()
            assert int(seen) == slot_of[int(pid)]
        os.kill(pid_of[1], signal.SIGKILL)
        after = server.wait_until(
            lambda: lines if len(lines := init_lines(log)) == 4 else None, 30, "the replacement worker initialised"
        )
        slot, new_pid = after[-1]
        assert slot == 1 and new_pid != pid_of[1]
    assert server.returncode == 0, log.read_text()[-2000:]
    text = log.read_text()
    assert f"Listening at: http://127.0.0.1:{port}" in text and "Using worker: sync" in text
    assert not (tmp_path / ".gunicorn").exists()  # no control socket under $HOME (shared across servers)
