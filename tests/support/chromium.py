"""Headless Chromium for the report tests (a real browser laying out the SVG the report draws)."""

from __future__ import annotations

import shutil
from pathlib import Path


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert exe, "headless Chromium is required: apt-get install -y chromium (the Makefile installs it for CI)"
    return exe


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the browser console (Chromium run with ``--enable-logging=stderr --v=0``): script
    errors, blocked resources (Content-Security-Policy violations), failed loads."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Refused" in line]


def chromium_cmd(tmp_path: Path, *extra: str) -> list[str]:
    """A headless run with a throw-away profile under ``tmp_path``; ``extra``: --dump-dom, --screenshot=..., URL."""
    return [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        *extra,
    ]
