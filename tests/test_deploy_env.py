""".env.example, the Settings object (app/config.py) and docker-compose.yml agree; secrets stay masked; a bad value
fails at start-up with an error naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
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
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?+][^}]*)?\}", text))


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
    # COMPOSE_PROFILES is read by docker compose itself
    assert documented - refs - {"COMPOSE_PROFILES"} == set(), "documented but never passed on by compose"


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
    assert settings.OPENAI_BASE_URL == "http://local-llm:8001/v1"
    assert settings.PSEUDONYM_SECRET is None and settings.AI_MODEL_SUMMARIZE is None  # empty = default


def test_secrets_are_masked_everywhere(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("PSEUDONYM_SECRET", CANARY + "-2")
    settings = load_settings()
    assert isinstance(settings.OPENAI_API_KEY, SecretStr)
    assert settings.OPENAI_API_KEY.get_secret_value() == CANARY
    for rendered in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert CANARY not in rendered


@pytest.mark.parametrize("name, value", [("OPENAI_TIMEOUT", "soon"), ("LOG_LEVEL", "LOUD"),
                                         ("MAX_CONTENT_LENGTH", "12"), ("OPENAI_MAX_RETRIES", "-1")])
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
