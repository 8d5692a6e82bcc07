""".env.example, the Settings object (app/config.py) and docker-compose.yml agree; secrets stay masked; a bad value
fails at start-up with an error naming the variable."""

from __future__ import annotations

import re

import pytest
import yaml
from pydantic import SecretStr

from app.config import ConfigError, Settings, load_settings
from tests.support import ROOT

SECTION = re.compile(r"^# === \[(\w+)\]")
ASSIGN = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
CANARY = "canary-5ecret-7f3a9c"


def parse_env_example() -> dict[str, dict[str, tuple[str, str]]]:
    """section -> {NAME: (value, comment just above)}; fails on a variable without a comment."""
    sections: dict[str, dict[str, tuple[str, str]]] = {}
    current, comment = None, ""
    for line in (ROOT / ".env.example").read_text().splitlines():
        if m := SECTION.match(line):
            current, comment = m.group(1), ""
            sections[current] = {}
        elif line.startswith("#"):
            comment = (comment + " " + line.lstrip("# ")).strip()
        elif m := ASSIGN.match(line):
            assert current is not None, f"{m.group(1)} is outside a [section]"
            assert comment, f".env.example: {m.group(1)} has no comment"
            assert m.group(1) not in {k for s in sections.values() for k in s}, f"duplicate {m.group(1)}"
            sections[current][m.group(1)] = (m.group(2), comment)
            comment = ""
        else:
            assert not line.strip(), f"unexpected line in .env.example: {line!r}"
            comment = ""
    return sections


@pytest.fixture(scope="module")
def env_example() -> dict[str, dict[str, tuple[str, str]]]:
    return parse_env_example()


def compose_references() -> set[str]:
    text = (ROOT / "docker-compose.yml").read_text()
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))  # nested defaults too: ${A:-${B:-x}}


def test_sections(env_example) -> None:
    assert list(env_example) == ["settings", "ecosystem", "compose", "alerts"]


def test_settings_fields_and_env_example_agree(env_example) -> None:
    assert set(env_example["settings"]) == set(Settings.model_fields)


def test_ecosystem_block_holds_only_ecosystem_names(env_example) -> None:
    for name in env_example["ecosystem"]:
        assert name.startswith(("OTEL_", "WANDB_")), name
        assert not name.startswith("WANDB_BRIDGE_"), f"{name} is ours: [compose]"


def test_every_variable_is_used_by_compose_and_every_reference_is_documented(env_example) -> None:
    documented = {name for section in env_example.values() for name in section}
    refs = compose_references()
    assert refs - documented == set(), "referenced in docker-compose.yml, missing in .env.example"
    assert documented - refs == set(), "documented but never passed on by compose"


def test_compose_needs_no_env_file() -> None:
    """A fresh checkout: no .env, no variable set. Nothing is required, the development defaults apply, and the
    published ports are on 127.0.0.1 (dockerd's --ip does not apply to compose networks)."""
    from tests.support.compose import resolve

    compose = resolve(yaml.safe_load((ROOT / "docker-compose.yml").read_text()), {})
    services = compose["services"]
    assert services["app"]["environment"]["PSEUDONYM_SECRET"] == ""
    assert services["app"]["environment"]["OPENAI_BASE_URL"] == ""  # the entrypoint picks local-llm
    assert "local-llm:8001" in " ".join(services["app"]["entrypoint"])
    assert not any(s.get("profiles") for s in services.values()), "every service starts without COMPOSE_PROFILES"
    ports = [p for s in services.values() for p in s.get("ports", [])]
    assert ports and all(str(p).startswith("127.0.0.1:") for p in ports), ports
    assert [n for n, s in services.items() if "build" in s] == ["app"], "one service builds the shared image"
    jaeger = services["otel-collector"]["depends_on"]["jaeger"]
    assert jaeger == {"condition": "service_started", "required": False}, "another OTLP backend can replace Jaeger"


def test_secrets_are_marked_and_empty(env_example) -> None:
    secret_fields = {name for name, f in Settings.model_fields.items() if "SecretStr" in repr(f.annotation)}
    assert secret_fields >= {"OPENAI_API_KEY", "PSEUDONYM_SECRET"}
    for section in env_example.values():
        for name, (value, comment) in section.items():
            looks_secret = re.search(r"(API_KEY|_TOKEN|_SECRET|PASSWORD|_HEADERS|WEBHOOK_URL)$", name) is not None
            if name in secret_fields or looks_secret:
                assert comment.startswith("(secret)"), f"{name}: mark it (secret)"
                assert value == "", f"{name}: never ship a value"


def test_env_example_values_are_valid_settings(env_example, monkeypatch) -> None:
    for name, (value, _) in env_example["settings"].items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.OPENAI_BASE_URL is None  # compose: local-llm unless OPENAI_API_KEY is set (the app's entrypoint)
    assert settings.PSEUDONYM_SECRET is None and settings.AI_MODEL_SUMMARIZE is None  # empty = default


def test_secrets_are_masked_everywhere(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("PSEUDONYM_SECRET", CANARY + "-2")
    settings = load_settings()
    assert isinstance(settings.OPENAI_API_KEY, SecretStr)
    assert settings.OPENAI_API_KEY.get_secret_value() == CANARY
    for rendered in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert CANARY not in rendered


@pytest.mark.parametrize(
    "name, value",
    [("OPENAI_TIMEOUT", "soon"), ("LOG_LEVEL", "LOUD"), ("MAX_CONTENT_LENGTH", "12"), ("OPENAI_MAX_RETRIES", "-1")],
)
def test_bad_value_names_the_variable(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_bad_secret_value_is_not_echoed(monkeypatch) -> None:
    # a mis-typed numeric setting holding a secret by mistake must not be echoed into the start-up error
    monkeypatch.setenv("OPENAI_TIMEOUT", CANARY)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "OPENAI_TIMEOUT" in str(err.value) and CANARY not in str(err.value)


# -- the collector and bridge services get every variable their programs read ----------------------------------


def _env_refs(text: str) -> dict[str, str | None]:
    """NAME -> default (None without one) of every ${env:NAME[:-default]} outside comments; nested defaults kept."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    out: dict[str, str | None] = {}
    for m in re.finditer(r"\$\{env:([A-Z][A-Z0-9_]*)", text):
        i, default = m.end(), None
        if text.startswith(":-", i):
            depth, j = 1, i + 2
            while depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            default = text[i + 2 : j - 1]
        out[m.group(1)] = default
    return out


COLLECTOR_FIXED = {
    "OTEL_COLLECTOR_HOST": "0.0.0.0",
    "OTEL_COLLECTOR_GRPC_PORT": "4317",
    "OTEL_COLLECTOR_HTTP_PORT": "4318",
    "OTEL_COLLECTOR_HEALTH_PORT": "13133",
    "OTEL_COLLECTOR_METRICS_PORT": "8888",
    "OTEL_COLLECTOR_QUEUE_DIR": "/var/lib/otelcol/queue",
    "LOG_DIR": "/var/log/ai-diary",
    "WANDB_BRIDGE_ENDPOINT": "http://wandb-bridge:4319",
}
COMPOSE_DEFAULTS = {
    "DEPLOYMENT_ENVIRONMENT": "compose",
    "OTLP_BACKEND_ENDPOINT": "http://jaeger:4318",
    "OTLP_BACKEND_TRACES_EXPORTER": "otlp_http/backend",  # traces to jaeger
    "WANDB_BRIDGE_LOGS_EXPORTER": "otlp_http/wandb_bridge",  # log panels in the W&B run
    "WANDB_BRIDGE_TOKEN": "",  # no token on both sides: the bridge then takes any (and warns)
}
BRIDGE_NOT_PASSED = {
    "OTEL_METRIC_EXPORT_INTERVAL",  # fallback of WANDB_EXPORT_INTERVAL, which compose always sets
    "WANDB_NAME",  # the run's name is left to W&B (an empty value would name it "")
    "WANDB_METRICS_TEMPORALITY",
    "WANDB_METRICS_HISTOGRAM",
    "WANDB_EXPORT_DASHBOARD_PORT",  # the in-process dashboard; the bridge serves its own (WANDB_BRIDGE_DASHBOARD*)
    "WANDB_EXPORT_DASHBOARD_HOST",
}  # validated, used by SDK exporters only


def _compose_service_env(name: str) -> dict[str, str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return {k: str(v) for k, v in compose["services"][name]["environment"].items()}


def test_collector_service_passes_every_config_variable_with_its_default(env_example) -> None:
    config = _env_refs((ROOT / "otel-collector.yaml").read_text())
    compose = _compose_service_env("otel-collector")
    assert set(config) == set(compose), "otel-collector.yaml and the otel-collector service disagree"
    documented = {k: v for section in env_example.values() for k, (v, _) in section.items()}
    for name, value in compose.items():
        if name in COLLECTOR_FIXED:
            assert value == COLLECTOR_FIXED[name], name
            continue
        m = re.fullmatch(r"\$\{([A-Z][A-Z0-9_]*)(:-|:\?)(.*)\}", value, re.S)
        assert m and m.group(1) == name, f"{name}: {value!r} is not ${{{name}:-default}}"
        assert m.group(2) == ":-", f"{name}: no required variable (`docker compose up` needs no .env)"
        default = m.group(3)
        want = COMPOSE_DEFAULTS.get(name, (config[name] or "").replace("${env:", "${"))
        assert default == want, f"{name}: compose default {default!r}, otel-collector.yaml {config[name]!r}"
        example = documented[name]  # .env.example: empty, or the compose default (nested ones resolved)
        assert example in ("", re.sub(r"\$\{[A-Z_]+:-([^{}]*)\}", r"\1", default)), (name, example, default)


def _bridge_reads() -> set[str]:
    cli_only = {
        "dashboard.py",
        "logq.py",
        "runfile.py",
        "sdk.py",
        "topology.py",
        "distro.py",
        "otel_defaults.py",
    }  # distro, otel_defaults: the app's
    files = [
        p
        for p in sorted((ROOT / "exporters").rglob("*.py"))
        if p.name not in cli_only and not p.name.startswith("report")
    ]
    names = r'"((?:WANDB|ALERTS?|SMTP|SMS|SLACK|OTEL)_[A-Z0-9_]+)"'
    return {n for p in files for n in re.findall(names, p.read_text())}


def test_bridge_service_passes_every_variable_the_bridge_reads() -> None:
    reads = _bridge_reads()
    assert {"WANDB_BRIDGE_MAX_BODY_BYTES", "ALERTS_STATE_FILE", "SMTP_CA_FILE"} <= reads  # the scan finds them
    assert reads >= BRIDGE_NOT_PASSED, "an exclusion for a variable the bridge no longer reads"
    missing = reads - BRIDGE_NOT_PASSED - set(_compose_service_env("wandb-bridge"))
    assert missing == set(), f"read by the bridge, not passed by the wandb-bridge service: {sorted(missing)}"
