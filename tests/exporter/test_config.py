"""The configuration layer: one parser every component validates its settings with, one meaning of blank, and
errors that name the variable but never echo its value (a secret may have been put in the wrong variable)."""

from __future__ import annotations

import pytest

from otel_wandb.config import (
    AlertSettings,
    BridgeConfig,
    ChannelSettings,
    ConfigError,
    ExportConfig,
    RunConfig,
    env_choice,
    env_flag,
    env_list,
    env_number,
)


def test_env_number_defaults_kinds_and_bounds():
    assert env_number({}, "N", 5, kind=int) == 5 and env_number({"N": "  "}, "N", 2.5) == 2.5
    assert env_number({"N": " 7 "}, "N", 1, lo=0, hi=10, kind=int) == 7
    assert env_number({"N": "0.25"}, "N", 1.0, above=0) == 0.25
    cases = [
        ({"N": "x"}, dict(kind=int), "N must be an integer"),
        ({"N": "x"}, {}, "N must be a number"),
        ({"N": "nan"}, {}, "N must be a number"),
        ({"N": "inf"}, dict(above=0), "N must be a number greater than 0"),
        ({"N": "0"}, dict(above=0), "N must be a number greater than 0"),
        ({"N": "11"}, dict(lo=0, hi=10, kind=int), "N must be an integer between 0 and 10"),
        ({"N": "-1"}, dict(lo=0.5), "N must be a number at least 0.5"),
        ({"N": "9"}, dict(hi=8), "N must be a number at most 8"),
    ]
    for env, kw, msg in cases:
        with pytest.raises(ConfigError) as info:
            env_number(env, "N", 1, **kw)
        assert str(info.value) == msg


def test_env_flag_choice_and_list():
    assert [env_flag({"F": v}, "F") for v in ("1", "TRUE", "yes", "On")] == [True] * 4
    assert [env_flag({"F": v}, "F", True) for v in ("0", "false", "No", "off")] == [False] * 4
    assert env_flag({}, "F", True) is True and env_flag({"F": ""}, "F") is False
    with pytest.raises(ConfigError, match="^F must be true or false"):
        env_flag({"F": "maybe"}, "F")
    assert env_choice({"C": " B "}, "C", "a", ("a", "b")) == "b" and env_choice({"C": ""}, "C", "a", ("a", "b")) == "a"
    with pytest.raises(ConfigError, match="^C must be one of a, b$"):
        env_choice({"C": "c"}, "C", "a", ("a", "b"))
    assert env_list({"L": " a@x, ,b@x "}, "L") == ("a@x", "b@x") and env_list({"L": " "}, "L") == ()


SECRET = "sk-canary-7f3a9c"


@pytest.mark.parametrize(
    "env",
    [
        {"WANDB_EXPORT_INTERVAL": SECRET},
        {"WANDB_BRIDGE_PORT": SECRET},
        {"WANDB_BRIDGE_LOG_LEVEL": SECRET},
        {"WANDB_METRICS_TEMPORALITY": SECRET},
        {"ALERTS_ENABLED": SECRET},
        {"ALERTS_QUEUE_SIZE": SECRET},
        {"SMTP_HOST": "mail", "SMTP_PORT": SECRET},
        {"SMTP_HOST": "mail", "SMTP_STARTTLS": SECRET},
        {"WANDB_INIT_TIMEOUT": SECRET},
        {"WANDB_EXPORT_PRICING": SECRET},
        {"WANDB_EXPORT_TABLES_INTERVAL": SECRET},
        {"WANDB_EXPORT_ERROR_ROWS": SECRET},
        {"WANDB_EXPORT_ERROR_ROWS": "0"},
    ],
)
def test_an_error_names_the_variable_and_never_its_value(env):
    with pytest.raises(ConfigError) as info:
        for settings in (ExportConfig, BridgeConfig, AlertSettings, ChannelSettings, RunConfig):
            settings.from_env(env)
    message = str(info.value)
    assert next(iter(n for n in env if n != "SMTP_HOST")) in message and SECRET not in message


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_means_the_default_everywhere(blank):
    names = (
        "WANDB_EXPORT_INTERVAL",
        "WANDB_EXPORT_MAX_SERIES",
        "WANDB_EXPORT_TABLES_INTERVAL",
        "WANDB_EXPORT_ERROR_ROWS",
        "WANDB_METRICS_TEMPORALITY",
        "WANDB_BRIDGE_PORT",
        "WANDB_BRIDGE_HOST",
        "WANDB_BRIDGE_LOG_LEVEL",
        "WANDB_BRIDGE_PUBLISH_DASHBOARD",
        "ALERTS_ENABLED",
        "ALERTS_STATE_FILE",
        "ALERTS_QUEUE_SIZE",
        "WANDB_PROJECT",
        "WANDB_MODE",
        "WANDB_INIT_TIMEOUT",
    )
    env = dict.fromkeys(names, blank)
    assert ExportConfig.from_env(env) == ExportConfig.from_env({})
    assert BridgeConfig.from_env(env) == BridgeConfig.from_env({})
    assert AlertSettings.from_env(env) == AlertSettings.from_env({})
    assert RunConfig.from_env(env) == RunConfig.from_env({})


def test_specific_variable_wins_over_the_ecosystem_one():
    assert ExportConfig.from_env({"OTEL_METRIC_EXPORT_INTERVAL": "5000"}).interval_s == 5.0
    assert ExportConfig.from_env({"OTEL_METRIC_EXPORT_INTERVAL": "5000", "WANDB_EXPORT_INTERVAL": "2"}).interval_s == 2


def test_run_mode_state_file_and_publish_settings():
    assert RunConfig.from_env({}).mode == "offline" and not RunConfig.from_env({}).online
    assert RunConfig.from_env({"WANDB_API_KEY": "k"}).online
    assert not RunConfig.from_env({"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}).online
    assert AlertSettings.from_env({"ALERTS_STATE_FILE": "off", "WANDB_DIR": "/x"}).state_file is None
    assert str(AlertSettings.from_env({"WANDB_DIR": "/x"}).state_file) == "/x/alerts-state.json"
    assert AlertSettings.from_env({}).state_file is None  # never an implicit file shared by every process in the cwd
    assert BridgeConfig.from_env({"WANDB_BRIDGE_PUBLISH_DASHBOARD": " Yes "}).publish_dashboard == "true"
    assert "s3cr3t" not in repr(ChannelSettings.from_env({"SLACK_WEBHOOK_URL": "https://h/s3cr3t"}))
