"""alerts.yaml: the ticket's defaults, ALERTS_FILE / ALERTS_TIMEZONE, and errors that name the rule and field."""

from __future__ import annotations

import pytest

from otel_wandb.alerts import AlertsConfigError, build, install, load_config
from otel_wandb.alerts._channels import channels_from_settings
from otel_wandb.alerts._rules import DEFAULT_MIN_SAMPLES, parse_config, parse_duration
from otel_wandb.config import ChannelSettings
from otel_wandb.config import ConfigError as ChannelConfigError
from tests.support import ROOT


def test_default_rules_match_the_ticket():
    cfg = load_config(env={})
    rules = {r.name: r for r in cfg.rules}
    err = rules["High Error Rate"]
    assert (err.metric, err.comparison, err.threshold, err.window, err.wait) == ("error_rate", ">", 0.05, 300, 300)
    assert err.channels == ("slack", "email") and err.min_samples > 1
    p95 = rules["High Response Time"]
    assert (p95.metric, p95.threshold, p95.wait, p95.channels) == ("p95_response_time", 1000, 600, ("slack",))
    cost = rules["AI API Cost Spike"]
    assert (cost.metric, cost.threshold, cost.wait, cost.channels) == ("daily_ai_cost", 100, 0, ("email", "sms"))
    groups = rules["New Error Group"]
    assert groups.metric == "new_error_group" and groups.enabled
    assert cfg.timezone == "UTC" and cfg.wandb


def test_built_in_defaults_equal_the_top_level_file():
    from_file = load_config(env={"ALERTS_FILE": str(ROOT / "alerts.yaml")})
    assert load_config(env={}) == from_file
    assert load_config(env={"ALERTS_TIMEZONE": "Asia/Tokyo"}).timezone == "Asia/Tokyo"


def _write(tmp_path, text):
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    return path


def channels_from_env(env):
    return channels_from_settings(ChannelSettings.from_env(env))


@pytest.mark.parametrize(
    "metric", ["error_rate", "p95_response_time", "daily_ai_cost", "error_count", "request_count", "window_ai_cost"]
)
def test_a_rule_without_threshold_is_refused_naming_rule_and_field(metric):
    with pytest.raises(AlertsConfigError) as err:
        parse_config({"rules": [{"name": "Oops", "metric": metric}]}, source="alerts.yaml")
    assert str(err.value) == (
        f"alerts.yaml: rule 'Oops': field 'threshold': required for metric {metric!r} (a number to compare against)"
    )


def test_min_samples_defaults_per_metric():
    cfg = parse_config(
        {
            "rules": [
                {"name": "Rate", "metric": "error_rate", "threshold": 0.05},
                {"name": "P99", "metric": "p99_response_time", "threshold": 500},
                {"name": "Count", "metric": "error_count", "threshold": 3},
                {"name": "Cost", "metric": "daily_ai_cost", "threshold": 10},
                {"name": "Rate1", "metric": "error_rate", "threshold": 0.05, "min_samples": 1},  # explicit wins
                {"name": "Groups", "metric": "new_error_group"},  # needs no threshold
            ]
        }
    )
    assert {r.name: r.min_samples for r in cfg.rules} == {
        "Rate": DEFAULT_MIN_SAMPLES,
        "P99": DEFAULT_MIN_SAMPLES,
        "Count": 1,
        "Cost": 1,
        "Rate1": 1,
        "Groups": 1,
    }
    assert DEFAULT_MIN_SAMPLES == 20
    groups = cfg.rules[-1]
    assert groups.threshold is None


def test_alerts_file_env_overrides_path(tmp_path):
    path = _write(
        tmp_path,
        "timezone: Asia/Tokyo\nrules:\n  - {name: Few, metric: request_count, "
        "comparison: '<', threshold: 1, window: 30s}\n",
    )
    cfg = load_config(env={"ALERTS_FILE": str(path)})
    assert [r.name for r in cfg.rules] == ["Few"] and cfg.rules[0].window == 30 and cfg.timezone == "Asia/Tokyo"
    assert load_config(env={"ALERTS_FILE": str(path), "ALERTS_TIMEZONE": "Europe/Paris"}).timezone == "Europe/Paris"


@pytest.mark.parametrize(
    "rule, needles",
    [
        ("{name: Bad Threshold, metric: error_rate, threshold: lots}", ["'Bad Threshold'", "'threshold'"]),
        ("{name: Bad Metric, metric: error_ratio}", ["'Bad Metric'", "'metric'", "error_ratio"]),
        ("{name: Bad Window, metric: error_rate, window: 5 fortnights}", ["'Bad Window'", "'window'"]),
        ("{name: Bad Channel, metric: error_rate, channels: [pager]}", ["'Bad Channel'", "'channels.0'"]),
        ("{name: Bad Samples, metric: error_rate, min_samples: 0}", ["'Bad Samples'", "'min_samples'"]),
        ("{name: Typo, metric: error_rate, treshold: 1}", ["'Typo'", "'treshold'"]),
        ("{metric: error_rate}", ["rule #1", "'name'"]),
    ],
)
def test_invalid_rule_names_rule_and_field(tmp_path, rule, needles):
    path = _write(tmp_path, f"rules:\n  - {rule}\n")
    with pytest.raises(AlertsConfigError) as err:
        load_config(path, env={})
    for needle in needles:
        assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_invalid_file_stops_install(tmp_path):
    path = _write(tmp_path, "rules:\n  - {name: X, metric: error_rate, level: LOUD}\n")
    with pytest.raises(AlertsConfigError, match="rule 'X': field 'level'"):
        install(None, env={"ALERTS_FILE": str(path), "ALERTS_STATE_FILE": "off"})


def test_missing_file_and_bad_timezone_name_the_variable(tmp_path):
    with pytest.raises(AlertsConfigError, match="^ALERTS_FILE "):
        load_config(env={"ALERTS_FILE": str(tmp_path / "nope.yaml")})
    with pytest.raises(AlertsConfigError, match="ALERTS_TIMEZONE"):
        load_config(env={"ALERTS_TIMEZONE": "Mars/Olympus_Mons"})
    with pytest.raises(AlertsConfigError, match="duplicate rule name"):
        load_config(
            _write(
                tmp_path,
                "rules:\n  - {name: A, metric: error_rate, threshold: 0.1}\n"
                "  - {name: A, metric: error_count, threshold: 5}\n",
            ),
            env={},
        )


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"SLACK_WEBHOOK_URL": "hooks.slack.com/x"}, "SLACK_WEBHOOK_URL"),
        ({"SMTP_HOST": "mail"}, "ALERT_EMAIL_TO"),
        ({"SMTP_HOST": "mail", "ALERT_EMAIL_TO": "a@b", "SMTP_PORT": "smtp"}, "SMTP_PORT"),
        ({"SMTP_HOST": "mail", "ALERT_EMAIL_TO": "a@b", "SMTP_PORT": "70000"}, "SMTP_PORT"),
        ({"SMTP_HOST": "mail", "ALERT_EMAIL_TO": "a@b", "SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS"),
        ({"SMTP_HOST": "mail", "ALERT_EMAIL_TO": "a@b", "SMTP_USERNAME": "u"}, "SMTP_PASSWORD"),
        ({"SMS_WEBHOOK_URL": "http://sms.local/x"}, "SMS_TO"),
        ({"SMS_WEBHOOK_URL": "http://sms.local/x", "SMS_TO": "+1", "SMS_ACCOUNT_SID": "AC"}, "SMS_AUTH_TOKEN"),
        ({"ALERTS_CHANNEL_TIMEOUT": "0"}, "ALERTS_CHANNEL_TIMEOUT"),
        ({"SMTP_HOST": "mail", "ALERT_EMAIL_TO": "a@b", "SMTP_CA_FILE": "/nonexistent/ca.pem"}, "SMTP_CA_FILE"),
        # a typo where the value does not matter (STARTTLS on, no login, loopback) is still an error
        (
            {
                "SMTP_HOST": "mail",
                "ALERT_EMAIL_TO": "a@b",
                "SMTP_STARTTLS": "true",
                "SMTP_ALLOW_PLAINTEXT_LOGIN": "maybe",
            },
            "SMTP_ALLOW_PLAINTEXT_LOGIN",
        ),
        (
            {"SMTP_HOST": "localhost", "ALERT_EMAIL_TO": "a@b", "SMTP_ALLOW_PLAINTEXT_LOGIN": "yes please"},
            "SMTP_ALLOW_PLAINTEXT_LOGIN",
        ),
    ],
)
def test_channel_env_errors_name_the_variable(env, variable):
    with pytest.raises(ChannelConfigError, match=variable):
        channels_from_env(env)


LOGIN = {"ALERT_EMAIL_TO": "a@b", "SMTP_USERNAME": "u", "SMTP_PASSWORD": "pw-canary-5150"}


@pytest.mark.parametrize("host", ["mail.example.com", "10.0.0.25", "2001:db8::25"])
def test_smtp_login_without_starttls_to_a_remote_host_is_refused(host):
    with pytest.raises(ChannelConfigError) as err:
        channels_from_env({**LOGIN, "SMTP_HOST": host})
    message = str(err.value)
    assert message.startswith("SMTP_USERNAME: a login without STARTTLS to a remote host") and "clear text" in message
    assert "SMTP_STARTTLS=true" in message and "SMTP_ALLOW_PLAINTEXT_LOGIN=true" in message
    assert "pw-canary-5150" not in message
    with pytest.raises(ChannelConfigError, match="SMTP_ALLOW_PLAINTEXT_LOGIN"):
        channels_from_env({**LOGIN, "SMTP_HOST": host, "SMTP_ALLOW_PLAINTEXT_LOGIN": "sure"})


@pytest.mark.parametrize(
    "extra",
    [
        {"SMTP_HOST": "mail.example.com", "SMTP_STARTTLS": "true"},
        {"SMTP_HOST": "mail.example.com", "SMTP_ALLOW_PLAINTEXT_LOGIN": "true"},
        {"SMTP_HOST": "127.0.0.1"},
        {"SMTP_HOST": "localhost"},
        {"SMTP_HOST": "::1"},
    ],
)
def test_smtp_login_allowed_with_starttls_on_loopback_or_by_opt_in(extra):
    email = channels_from_env({**LOGIN, **extra})["email"]
    assert email.username == "u"
    assert not channels_from_env({"SMTP_HOST": "mail.example.com", "ALERT_EMAIL_TO": "a@b"})["email"].username


def test_channel_env_defaults():
    chans = channels_from_env({"SMTP_HOST": "mail", "ALERT_EMAIL_TO": "a@x, b@x", "SMTP_STARTTLS": "true"})
    email = chans["email"]
    assert email.port == 587 and email.starttls and email.recipients == ("a@x", "b@x")
    assert channels_from_env({"SMTP_HOST": "mail", "ALERT_EMAIL_TO": "a@x"})["email"].port == 25
    assert channels_from_env({}) == {}


def test_alerts_enabled_false_installs_nothing():
    assert install(None, env={"ALERTS_ENABLED": "false"}) is None
    with pytest.raises(ChannelConfigError, match="ALERTS_ENABLED"):
        install(None, env={"ALERTS_ENABLED": "perhaps"})


def test_durations():
    assert [parse_duration(x) for x in (90, "90", "30s", "5m", "1h", "1.5m", "250ms")] == [
        90,
        90,
        30,
        300,
        3600,
        90,
        0.25,
    ]
    for bad in ("-1", "5 min", True, "m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_build_with_unconfigured_channels_logs_once(caplog):
    caplog.set_level("INFO", logger="otel_wandb.alerts")
    manager = build(env={}, state_path=None)
    try:
        skipped = [r.getMessage() for r in caplog.records if "not configured" in r.getMessage()]
        assert sorted(skipped) == sorted(
            f"alert channel {c} not configured: its alerts are skipped" for c in ("email", "slack", "sms", "wandb")
        )
    finally:
        manager.shutdown()
