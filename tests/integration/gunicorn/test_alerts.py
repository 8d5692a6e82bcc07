"""On a real gunicorn with gunicorn.conf.py: in-process alerting is off in each of several workers, with one warning
per worker naming the bridge; a single worker keeps it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.gunicorn import run_gunicorn

MINI_APP = """
import logging, os, sys
logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
from otel_wandb.alerts import install
manager = install(None, state_path=None)  # what Pipeline.from_env does in a worker, without the W&B run
print("worker %s alerts %s" % (os.environ["AI_DIARY_WORKER_ID"], "on" if manager else "off"), file=sys.stderr,
      flush=True)
if manager:
    manager.shutdown(1)

def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]
"""
STATE = re.compile(r"^worker (\d+) alerts (on|off)$", re.M)


def run_workers(tmp_path: Path, workers: str, expect: int, **extra: str) -> str:
    (tmp_path / "mini.py").write_text(MINI_APP)
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "PORT": "0",
        "GUNICORN_BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": workers,
        "OTEL_SDK_DISABLED": "true",
        "ALERTS_STATE_FILE": "off",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
    }
    env.pop("ALERTS_ENABLED", None)
    env.update(extra)
    with run_gunicorn("mini:app", env=env, cwd=tmp_path, log=tmp_path / "gunicorn.log") as server:
        server.wait_until(lambda: len(STATE.findall(server.output())) >= expect, 60, f"{expect} worker line(s)")
    return server.output()


def test_two_workers_turn_in_process_alerting_off_with_one_warning_each(tmp_path):
    text = run_workers(tmp_path, "2", 2)
    assert sorted(STATE.findall(text)) == [("0", "off"), ("1", "off")]
    warnings = [line for line in text.splitlines() if line.startswith("WARNING otel_wandb.alerts: alerts OFF")]
    assert len(warnings) == 2 and all("of 2" in w and "W&B bridge" in w for w in warnings)


@pytest.mark.parametrize("workers, extra, state", [("1", {}, "on"), ("2", {"ALERTS_ENABLED": "true"}, "on")])
def test_one_worker_or_explicit_opt_in_keeps_it(tmp_path, workers, extra, state):
    text = run_workers(tmp_path, workers, int(workers), **extra)
    assert {s for _, s in STATE.findall(text)} == {state}
    assert ("alerts ON (ALERTS_ENABLED=true)" in text) == bool(extra)
