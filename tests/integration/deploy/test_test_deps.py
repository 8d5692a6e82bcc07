"""scripts/test-deps.sh (make test's system packages) on machines like a GitHub-hosted runner: any of the browser
names the report test accepts is enough; installing needs root, or passwordless sudo when not root; the Docker part
(scripts/docker/install.sh) always runs (it installs only what is missing). Run with a PATH of recording stand-ins
for id, sudo and apt-get and a recording Docker installer, so nothing is installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "scripts" / "test-deps.sh"
BASH = "/bin/bash"


def _bin(tmp: Path, uid: int, *, sudo: bool, browser: str | None = None) -> Path:
    bindir = tmp / "bin"
    bindir.mkdir()
    calls = tmp / "calls"
    tools = {
        "id": f"echo {uid}",
        "apt-get": f'echo "apt-get $*" >> {calls}',
        "docker-install": f"echo docker-install >> {calls}",
    }
    if sudo:
        tools["sudo"] = f'echo "sudo $*" >> {calls}; [ "$1" = "-n" ] && shift; [ "$1" = true ] && exit 0; exec "$@"'
    if browser:
        tools[browser] = "exit 0"
    for name, body in tools.items():
        (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bindir / name).chmod(0o755)
    (bindir / "env").symlink_to("/usr/bin/env")
    return bindir


def _run(bindir: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    env = {"PATH": str(bindir), "AI_DIARY_DOCKER_INSTALL": str(bindir / "docker-install")}
    proc = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    calls = bindir.parent / "calls"
    return proc, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("browser", ["chromium", "chromium-browser", "google-chrome"])
def test_any_accepted_browser_means_nothing_to_install(tmp_path: Path, browser: str) -> None:
    proc, calls = _run(_bin(tmp_path, 1001, sudo=True, browser=browser))
    assert proc.returncode == 0, proc.stderr
    assert calls == ["docker-install"]


def test_not_root_installs_through_passwordless_sudo(tmp_path: Path) -> None:
    proc, calls = _run(_bin(tmp_path, 1001, sudo=True))
    assert proc.returncode == 0, proc.stderr
    assert [c for c in calls if c.startswith("apt-get")] == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends chromium",
    ]
    assert "sudo -n apt-get update -q" in calls and calls[-1] == "docker-install"


def test_root_installs_directly(tmp_path: Path) -> None:
    proc, calls = _run(_bin(tmp_path, 0, sudo=False))
    assert proc.returncode == 0, proc.stderr
    assert calls == ["apt-get update -q", "apt-get install -y -q --no-install-recommends chromium", "docker-install"]


def test_not_root_without_sudo_fails_with_a_clear_message(tmp_path: Path) -> None:
    proc, calls = _run(_bin(tmp_path, 1001, sudo=False))
    assert proc.returncode == 1 and calls == []
    assert "needs root" in proc.stderr and "google-chrome" in proc.stderr


def test_the_script_accepts_the_report_tests_browsers() -> None:
    report_test = (ROOT / "tests" / "support" / "chromium.py").read_text()  # the report tests' browser lookup
    for browser in ("chromium", "chromium-browser", "google-chrome"):
        assert f'shutil.which("{browser}")' in report_test and browser in SCRIPT.read_text()
    assert os.access(SCRIPT, os.X_OK)


def test_the_script_installs_what_the_compose_test_needs() -> None:
    """Without AI_DIARY_DOCKER_INSTALL the Docker part is scripts/docker/install.sh: docker.io and Compose v2."""
    text = SCRIPT.read_text()
    assert 'docker_install="${AI_DIARY_DOCKER_INSTALL:-$here/docker/install.sh}"' in text
    install = (ROOT / "scripts" / "docker" / "install.sh").read_text()
    assert "apt_install docker.io" in install and "github.com/docker/compose/v2@" in install
