"""Deployment files linted without a Docker engine: hadolint, compose spec, workflow schema, actionlint, and the
invariants the linters do not know (collector tag = manifest release, non-root, no secrets, least privilege)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT

VENV_BIN = ROOT / ".venv" / "bin"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def run(*cmd: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def actionlint() -> Path:
    proc = run("bash", ROOT / "scripts" / "lint.sh", "--actionlint-path")
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def test_hadolint_clean() -> None:
    proc = run(VENV_BIN / "hadolint", "Dockerfile")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD python app.py\n")
    proc = run(VENV_BIN / "hadolint", bad)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3008" in proc.stdout  # :latest, unpinned apt package


def test_compose_file_valid_against_compose_spec() -> None:
    proc = run(VENV_BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_spec_check_rejects_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  app:\n    image: x\n    depends_on:\n      db:\n        condition: whenever\n")
    proc = run(VENV_BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", bad)
    assert proc.returncode != 0


def test_workflows_valid_against_schema() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "deploy.yml"}
    proc = run(VENV_BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_clean(actionlint: Path) -> None:
    proc = run(actionlint, *WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_bad_workflow(actionlint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.event.nosuch.field }}\n        if: ${{ secrets.X }}\n"
        "      - uses: actions/checkout@v6\n        with:\n          no-such-input: 1\n"
    )
    proc = run(actionlint, bad)
    assert proc.returncode != 0
    assert "no-such-input" in proc.stdout


def test_collector_image_tag_equals_manifest_release() -> None:
    manifest = yaml.safe_load((ROOT / "collector" / "manifest.yaml").read_text())
    release = str(manifest["dist"]["version"]).lstrip("v")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    image = compose["services"]["otel-collector"]["image"]
    assert image == f"otel/opentelemetry-collector-contrib:{release}"
    component_versions = {
        m["gomod"].split()[-1]
        for kind in ("receivers", "processors", "exporters", "connectors", "extensions")
        for m in manifest.get(kind, [])
    }
    assert component_versions == {f"v{release}"}


def test_dockerfile_invariants() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", text, re.M), "pinned slim 3.11 base"
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    assert re.search(r"^USER 10001:10001$", text, re.M), "non-root user"
    assert re.search(r'^HEALTHCHECK .*\n?.*CMD \["python"', text, re.M), "python-based healthcheck"
    assert "requirements.lock" in text and "--constraint requirements.lock" in text
    assert "gunicorn.conf.py" in text
    # no secret ever reaches a layer: no build argument or ENV named like one, no .env copied
    for line in re.findall(r"^(?:ARG|ENV)\s.*$", text, re.M):
        assert not re.search(r"KEY|TOKEN|SECRET|PASSWORD", line), line
    assert not re.search(r"^COPY\s+\.\s", text, re.M), "copy only what the image needs"
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore and "**/.env" in ignore
    # the context is deny-all: everything the Dockerfile copies from it must be let through
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for source in line.split()[:-1]:
            assert f"!{source}" in ignore or f"!{source}/" in ignore, f".dockerignore drops {source}"
    make_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert make_uv and f"uv=={make_uv.group(1)}" in text, "the image installs with the Makefile's uv"


def _workflow(name: str) -> dict:
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_workflows_least_privilege_and_pinned_actions() -> None:
    for path in WORKFLOWS:
        text = path.read_text()
        for ref in re.findall(r"uses:\s*(\S+)", text):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@v\d+", ref), f"{path.name}: pin a major: {ref}"
    ci, deploy = _workflow("ci.yml"), _workflow("deploy.yml")
    assert ci["permissions"] == {"contents": "read"}
    assert {"push", "pull_request"} <= set(ci["on"])
    assert deploy["permissions"] == {}
    assert deploy["on"]["workflow_run"]["branches"] == ["main"]
    assert deploy["jobs"]["image"]["permissions"] == {"contents": "read", "packages": "write"}
    assert deploy["jobs"]["deploy"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert any("docker/build-push-action@" in s.get("uses", "") for s in deploy["jobs"]["image"]["steps"])


def test_ci_gives_the_wandb_key_to_the_report_step_only() -> None:
    ci = _workflow("ci.yml")
    steps = ci["jobs"]["test"]["steps"]
    holders = [s for s in steps if "secrets.WANDB_API_KEY" in str(s.get("env", {}))]
    assert len(holders) == 1 and "ci_wandb_report.py" in holders[0]["run"]
    assert "env.HAS_WANDB_KEY == 'true'" in holders[0]["if"]
    make_test = next(s for s in steps if s.get("run") == "make test")
    assert make_test["env"]["WANDB_MODE"] == "offline"
    assert "--junitxml=junit.xml" in make_test["env"]["PYTEST_ADDOPTS"]
    assert "--cov-report=xml:coverage.xml" in make_test["env"]["PYTEST_ADDOPTS"]
    assert any(s.get("uses", "").startswith("actions/setup-go@") for s in steps)


def test_collector_config_loads_from_env_as_on_ecs(tmp_path: Path) -> None:
    """ECS passes otel-collector.yaml in OTEL_COLLECTOR_CONFIG (--config=env:...); the binary must accept it."""
    binary = ROOT / "collector" / "_build" / "otelcol-ai-diary"
    assert binary.exists(), "build the collector first: collector/build.sh (make test does)"
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_COLLECTOR_CONFIG": (ROOT / "otel-collector.yaml").read_text(),
        "OTEL_COLLECTOR_QUEUE_DIR": str(tmp_path / "queue"),
        "LOG_DIR": str(tmp_path / "logs"),
        "OTLP_BACKEND_TRACES_EXPORTER": "otlp_http/backend",
        "OTLP_BACKEND_HEADERS": "[]",
    }
    ok = subprocess.run(
        [str(binary), "validate", "--config=env:OTEL_COLLECTOR_CONFIG"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    env["OTLP_BACKEND_TRACES_EXPORTER"] = "otlp_grpc/nosuch"
    bad = subprocess.run(
        [str(binary), "validate", "--config=env:OTEL_COLLECTOR_CONFIG"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0


def test_manual_deploys_run_from_main_only() -> None:
    deploy = _workflow("deploy.yml")
    condition = " ".join(deploy["jobs"]["image"]["if"].split())
    assert "(github.event_name == 'workflow_dispatch' && github.ref == 'refs/heads/main') ||" in condition
    assert deploy["jobs"]["deploy"]["needs"] == "image"  # skipped with it
    assert "--query 'service.deployments[0].id'" in (ROOT / ".github" / "workflows" / "deploy.yml").read_text()


SECRET_NAME = re.compile(r"(API_KEY|_TOKEN|_SECRET|PASSWORD|_HEADERS|WEBHOOK_URL)$")


def test_deploy_doc_gives_each_task_what_compose_gives_each_service() -> None:
    """docs/deploy.md 3.7: the env_of lists (app, collector, bridge) hold every non-secret variable compose takes
    from .env for that service; 3.8: ai-diary is replaced stop-first while it runs on SQLite."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    blocks = [set(b.replace("\\", " ").split()) for b in re.findall(r'env_of ([A-Z0-9_ \\\n]+)\)"', doc)]
    fixed = set(re.findall(r'\{name: "([A-Z0-9_]+)", value: "', doc))  # set to a fixed value for ECS
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for block, service in zip(blocks, ("app", "otel-collector", "wandb-bridge"), strict=True):
        block |= fixed
        from_env = {
            k
            for k, v in compose[service]["environment"].items()
            if str(v).startswith("${") and not SECRET_NAME.search(k)
        }
        assert from_env - block == set(), f"{service}: missing in docs/deploy.md env_of"
    create = re.search(r"create-service --cluster \$CLUSTER --service-name ai-diary (.*?)\n(?!\s)", doc, re.S)
    assert create and '--deployment-configuration "$SINGLE"' in create.group(1)
    assert "--subnets ${PUBLIC_SUBNETS//,/ }" in doc
