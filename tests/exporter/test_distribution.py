"""otel-wandb as a distribution of its own: ``pip install ./exporters`` into a clean virtualenv pulls none of the
service's dependencies, a plain OpenTelemetry program exports through the ``wandb`` entry points, and installing it
changes no other program's resource (the service's distro and configurator are the service's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from otel_wandb.runfile import find_runs, read_run
from tests.support import ROOT

pytestmark = pytest.mark.integration

UV = ROOT / ".venv" / "bin" / "uv"
UPSTREAM_DISTRO = "opentelemetry-distro==0.66b1"  # the release of the instrumentation packages in requirements.lock
SERVICE_PACKAGES = ("flask", "sqlalchemy", "openai", "gunicorn", "ai-diary")

PLAIN_PROGRAM = '''
"""Any OpenTelemetry program: 1,000 server spans, no Flask, no ai-diary code."""
import sys
from opentelemetry import trace
from opentelemetry.trace import SpanKind

tracer = trace.get_tracer("plain")
for i in range(1000):
    route = "/orders/{id}" if i % 2 else "/health"
    with tracer.start_as_current_span(f"GET {route}", kind=SpanKind.SERVER, attributes={
            "http.request.method": "GET", "http.route": route,
            "http.response.status_code": 500 if i % 100 == 0 else 200}):
        pass
print("sent 1000", file=sys.stderr)
'''

THIRD_PARTY_APP = '''
"""Someone else's Flask app, run under opentelemetry-instrument with only otel-wandb installed next to it."""
from flask import Flask

app = Flask(__name__)


@app.get("/hello")
def hello():
    return {"hello": "world"}


client = app.test_client()
for _ in range(25):
    assert client.get("/hello").status_code == 200
'''


def _venv(tmp: Path, *requirements: str) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    proc = subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "--python",
            str(venv / "bin" / "python"),
            "--no-sources",
            "--constraint",
            str(ROOT / "requirements.lock"),
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "UV_LINK_MODE": "copy"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return venv


def _installed(venv: Path) -> set[str]:
    out = subprocess.run(
        [str(UV), "pip", "freeze", "--python", str(venv / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return {line.split("==")[0].split(" @ ")[0].lower() for line in out.splitlines() if line.strip()}


def _run(venv: Path, cwd: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(cwd),
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(cwd / "wandb-out"),
        "WANDB_EXPORT_INTERVAL": "3600",
        "WANDB_SILENT": "true",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    return subprocess.run(args, cwd=cwd, env=base, capture_output=True, text=True, timeout=300)


def _requests_total(wandb_dir: Path) -> float:
    runs = find_runs(wandb_dir)
    assert len(runs) == 1, runs
    return read_run(runs[0]).series("http/requests_total")[-1]


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """otel-wandb without extras, and the upstream distro (what makes ``OTEL_*_EXPORTER`` work in any program)."""
    return _venv(tmp_path_factory.mktemp("core"), str(ROOT / "exporters"), UPSTREAM_DISTRO)


def test_the_core_install_pulls_none_of_the_services_dependencies(core_venv: Path):
    installed = _installed(core_venv)
    assert {"otel-wandb", "wandb", "opentelemetry-sdk"} <= installed
    assert not installed & set(SERVICE_PACKAGES), installed & set(SERVICE_PACKAGES)
    code = (
        "from importlib.metadata import requires; "
        "print('\\n'.join(r for r in requires('otel-wandb') if 'extra ==' not in r))"
    )
    core = _run(core_venv, core_venv, ["python", "-c", code]).stdout.split()
    assert sorted(r.split(">")[0].split("=")[0].split("<")[0] for r in core) == [
        "opentelemetry-api",
        "opentelemetry-sdk",
        "wandb",
    ], core


def test_a_plain_program_exports_1000_server_spans_through_the_wandb_entry_point(core_venv: Path, tmp_path: Path):
    (tmp_path / "plain.py").write_text(PLAIN_PROGRAM)
    proc = _run(
        core_venv,
        tmp_path,
        ["opentelemetry-instrument", "python", "plain.py"],
        OTEL_TRACES_EXPORTER="wandb",
        OTEL_SERVICE_NAME="plain-program",
    )
    assert proc.returncode == 0 and "sent 1000" in proc.stderr, proc.stderr[-3000:]
    assert _requests_total(tmp_path / "wandb-out") == 1000


def test_a_third_party_flask_app_keeps_its_own_resource(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("third-party")
    venv = _venv(work, str(ROOT / "exporters"), UPSTREAM_DISTRO, "flask", "opentelemetry-instrumentation-flask")
    (work / "thirdparty.py").write_text(THIRD_PARTY_APP)
    for service_name, expected in ((None, "unknown_service"), ("shop-frontend", "shop-frontend")):
        env = {"OTEL_TRACES_EXPORTER": "console,wandb", "WANDB_DIR": str(work / f"wandb-{expected}")}
        if service_name:
            env["OTEL_SERVICE_NAME"] = service_name
        proc = _run(venv, work, ["opentelemetry-instrument", "python", "thirdparty.py"], **env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        spans = [json.loads(chunk) for chunk in _json_objects(proc.stdout)]
        names = {s["resource"]["attributes"]["service.name"] for s in spans}
        assert names and all(n.startswith(expected) for n in names), names
        assert "ai-diary" not in proc.stdout  # installing the exporter changed nobody's resource
        assert _requests_total(work / f"wandb-{expected}") == 25


def _json_objects(text: str) -> list[str]:
    """The console exporter prints indented JSON objects one after the other."""
    objects, depth, start = [], 0, None
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                objects.append(text[start : i + 1])
    return objects
