"""`make test` fails on lint and type findings: ruff (format and lint rules) and mypy (strict, [tool.mypy] in
pyproject.toml), run as `make lint` runs them (scripts/lint.sh), from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]  # mypy without its cache takes ~30 s on one core

BIN = Path(sys.executable).parent  # the project's venv: ruff and mypy are its dev dependencies
PATHS = ("app", "exporters/src", "tests", "bench", "gunicorn.conf.py")  # scripts/lint.sh's python_paths


def _run(*cmd: str) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, f"{' '.join([Path(cmd[0]).name, *cmd[1:3]])} failed:\n{proc.stdout}{proc.stderr}"


def test_ruff_format() -> None:
    _run(str(BIN / "ruff"), "format", "--check", *PATHS)


def test_ruff_check() -> None:
    _run(str(BIN / "ruff"), "check", *PATHS)


def test_mypy() -> None:
    _run(str(BIN / "mypy"))


def test_lint_script_runs_the_same_commands() -> None:
    script = (ROOT / "scripts" / "lint.sh").read_text()
    assert f"python_paths=({' '.join(PATHS)})" in script
    for command in ('ruff" format --check "${python_paths[@]}"', 'ruff" check "${python_paths[@]}"', 'mypy"\n'):
        assert command in script, command
