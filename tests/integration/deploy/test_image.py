"""The Dockerfile's build stage without a Docker engine: the same commands build a fresh virtualenv from the lock
(runtime dependencies only, non-editable project), and the image's roles start from it outside the checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.timeout(900)  # a fresh virtualenv from the lock: up to 600 s for the install on a cold cache

UV = ROOT / ".venv" / "bin" / "uv"
BUILD_COMMANDS = (  # verbatim in the Dockerfile's build stage (checked below), with /opt/venv -> the test's venv
    "uv pip install --python /opt/venv/bin/python --no-sources --constraint requirements.lock ./exporters .",
)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for command in BUILD_COMMANDS:
        assert f"RUN {command}" in dockerfile, f"Dockerfile no longer runs: {command}"
    work = tmp_path_factory.mktemp("image")
    src = work / "src"  # the build context: only what the Dockerfile copies
    src.mkdir()
    for name in re.findall(r"^COPY (?!--from)(.+) \./\S*$", dockerfile, re.M):
        for item in name.split():
            if (ROOT / item).is_dir():
                shutil.copytree(ROOT / item, src / item, ignore=shutil.ignore_patterns("__pycache__"))
            elif item != "gunicorn.conf.py" and item != "alerts.yaml":
                shutil.copy2(ROOT / item, src / item)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    env = {**os.environ, "UV_LINK_MODE": "copy"}
    for command in BUILD_COMMANDS:
        argv = [str(UV) if a == "uv" else a for a in command.replace("/opt/venv", str(venv)).split()]
        proc = subprocess.run(argv, cwd=src, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return venv


def _py(venv: Path, code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), **env}
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], cwd=cwd, env=base, capture_output=True, text=True, timeout=120
    )


def test_runtime_venv_has_the_roles_and_no_dev_tools(image_venv: Path) -> None:
    bins = {p.name for p in (image_venv / "bin").iterdir()}
    assert {"gunicorn", "wandb-bridge", "ai-diary-logs", "wandb"} <= bins
    assert not {"pytest", "hadolint", "check-jsonschema"} & bins, "dev extras must not reach the image"
    frozen = subprocess.run(
        [str(UV), "pip", "freeze", "--python", str(image_venv / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    locked = {
        line.strip() for line in (ROOT / "requirements.lock").read_text().splitlines() if re.match(r"^[a-z0-9]", line)
    }
    unpinned = [p for p in frozen if not p.startswith(("ai-diary", "otel-wandb")) and p not in locked]
    assert unpinned == [], "every installed version comes from requirements.lock"


def test_installed_app_serves_outside_the_checkout(image_venv: Path, tmp_path: Path) -> None:
    code = (
        "import app, otel_wandb\n"
        "from app import create_app\n"
        "assert 'site-packages' in app.__file__, app.__file__\n"
        "client = create_app().test_client()\n"
        "r = client.get('/healthz'); assert r.status_code == 200, r.data\n"
        "r = client.post('/api/users', json={'name': 'x'}); assert r.status_code == 201, r.data\n"
        "from otel_wandb.alerts import load_config\n"
        "print(len(load_config().rules))\n"
    )
    proc = _py(
        image_venv,
        code,
        tmp_path,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        PSEUDONYM_SECRET="x" * 32,
        OTEL_SDK_DISABLED="true",
        ALERTS_FILE=str(ROOT / "alerts.yaml"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) >= 3
