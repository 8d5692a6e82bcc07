from __future__ import annotations

import logging

import pytest

from app import create_app
from app.config import ConfigError, Settings, load_settings


@pytest.mark.parametrize(
    "var, value",
    [("OPENAI_TIMEOUT", "soon"), ("OPENAI_MAX_RETRIES", "-1"), ("MAX_CONTENT_LENGTH", "12"), ("LOG_LEVEL", "LOUD")],
)
def test_bad_environment_fails_at_start_naming_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        create_app({"DATABASE_URL": "sqlite://"})


def test_overrides_win_over_environment_and_secrets_are_masked(monkeypatch):
    monkeypatch.setenv("AI_MODEL_DEFAULT", "gpt-4o")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-very-secret")
    s = load_settings({"AI_MODEL_SUMMARIZE": "gpt-4.1-mini", "UNRELATED": 1})
    assert s.model_for("summarize") == "gpt-4.1-mini" and s.model_for("reflect") == "gpt-4o"
    assert s.OPENAI_API_KEY.get_secret_value() == "sk-live-very-secret"
    assert "sk-live-very-secret" not in repr(s) and "sk-live-very-secret" not in str(s.model_dump())


def test_every_setting_is_documented():
    assert all(field.description for field in Settings.model_fields.values())


def test_flask_config_gets_settings_and_extra_keys(make_app):
    app = make_app(MAX_CONTENT_LENGTH=2048, SOMETHING_ELSE="x")
    assert app.config["MAX_CONTENT_LENGTH"] == 2048 and app.config["SOMETHING_ELSE"] == "x"
    assert app.extensions["db_engine"].dialect.name == "sqlite"
    with app.extensions["db_engine"].connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_defaults_keep_database_and_dev_key_in_the_instance_folder(make_app, monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("PSEUDONYM_SECRET", raising=False)
    instance = tmp_path / "instance"
    app = make_app(INSTANCE_PATH=str(instance), DATABASE_URL=None, PSEUDONYM_SECRET=None)
    client = app.test_client()
    assert client.post("/api/users", json={"name": "a"}).status_code == 201
    assert (instance / "ai-diary.sqlite3").exists()
    assert (instance / "pseudonym.secret").stat().st_mode & 0o777 == 0o600
    again = make_app(INSTANCE_PATH=str(instance), DATABASE_URL=None, PSEUDONYM_SECRET=None)
    assert again.test_client().get("/readyz").status_code == 200
    from app.privacy import pseudonymize

    first = pseudonymize(1)
    make_app(INSTANCE_PATH=str(instance), DATABASE_URL=None, PSEUDONYM_SECRET=None)
    assert pseudonymize(1) == first  # the same key across app instances (workers, restarts)


@pytest.mark.parametrize(
    "url, says",
    [
        ("bogus://x", "sqlalchemy.dialects:bogus"),
        ("not a url", "Could not parse"),
        ("postgresql://u:pw-canary@db:port/x", "malformed host or port"),
    ],
)
def test_unusable_database_url_fails_at_start_naming_the_variable(make_app, url, says):
    with pytest.raises(ConfigError, match="DATABASE_URL") as err:
        make_app(DATABASE_URL=url)
    assert says in str(err.value) and "pw-canary" not in str(err.value)


def test_unopenable_sqlite_file_fails_at_start_naming_the_variable(make_app, tmp_path):
    with pytest.raises(ConfigError, match="DATABASE_URL") as err:
        make_app(DATABASE_URL=f"sqlite:///{tmp_path}/no-such-dir/diary.sqlite3")
    assert "unable to open database file" in str(err.value) and "no-such-dir" not in str(err.value)


@pytest.mark.parametrize("value", ["not-a-url", "ftp://host/v1", "http://", "localhost:8001/v1"])
def test_openai_base_url_must_be_an_http_url(make_app, value):
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        make_app(OPENAI_BASE_URL=value)


@pytest.mark.parametrize("environment", ["production", "Production"])
def test_production_refuses_to_start_without_a_pseudonym_secret(make_app, monkeypatch, tmp_path, environment):
    monkeypatch.delenv("PSEUDONYM_SECRET", raising=False)
    with pytest.raises(ConfigError, match="PSEUDONYM_SECRET") as err:
        make_app(DEPLOYMENT_ENVIRONMENT=environment, PSEUDONYM_SECRET=None, INSTANCE_PATH=str(tmp_path / "i"))
    assert "DEPLOYMENT_ENVIRONMENT" in str(err.value)
    assert not (tmp_path / "i" / "pseudonym.secret").exists()
    assert (
        make_app(DEPLOYMENT_ENVIRONMENT=environment, PSEUDONYM_SECRET="set").test_client().get("/readyz").status_code
        == 200
    )


def test_development_key_warns_at_every_start(make_app, monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("PSEUDONYM_SECRET", raising=False)
    caplog.set_level(logging.WARNING, logger="app")
    for _ in range(2):  # the second start finds the key file already there
        make_app(PSEUDONYM_SECRET=None, INSTANCE_PATH=str(tmp_path / "i"))
    warned = [
        r for r in caplog.records if r.levelno == logging.WARNING and "PSEUDONYM_SECRET is not set" in r.getMessage()
    ]
    assert len(warned) == 2
    caplog.clear()
    make_app()  # with a secret: no warning
    assert "PSEUDONYM_SECRET" not in caplog.text
