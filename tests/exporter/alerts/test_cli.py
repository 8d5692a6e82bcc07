"""``python -m otel_wandb.alerts check|send-test`` as a subprocess against real receivers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.demo.receivers import SmtpReceiver, WebhookReceiver
from tests.support import ROOT as REPO

pytestmark = pytest.mark.integration  # `python -m otel_wandb.alerts` in its own process


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ALERT", "SMTP_", "SMS_", "SLACK_"))}
    return subprocess.run(
        [sys.executable, "-m", "otel_wandb.alerts", *args],
        env={**base, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_lists_rules_and_channels(tmp_path):
    out = run({"ALERTS_STATE_FILE": str(tmp_path / "s.json"), "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook"}, "check")
    assert out.returncode == 0, out.stderr
    assert "High Error Rate: error_rate > 5.0% over 300s" in out.stdout
    assert "channel slack: Slack webhook at http://127.0.0.1:9" in out.stdout and "/hook" not in out.stdout
    assert "channel email: not configured" in out.stdout


def test_check_rejects_invalid_rules_without_a_traceback(tmp_path):
    bad = tmp_path / "alerts.yaml"
    bad.write_text("rules:\n  - {name: Oops, metric: error_rate, wait: soon}\n")
    out = run({"ALERTS_FILE": str(bad)}, "check")
    assert out.returncode == 2 and "rule 'Oops': field 'wait'" in out.stderr and "Traceback" not in out.stderr


def test_send_test_delivers_through_every_configured_channel():
    with SmtpReceiver() as smtp, WebhookReceiver() as hooks:
        out = run(
            {
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(smtp.port),
                "ALERT_EMAIL_TO": "ops@ai-diary.test",
                "SLACK_WEBHOOK_URL": hooks.url("/slack"),
                "SMS_WEBHOOK_URL": hooks.url("/sms"),
                "SMS_TO": "+15550100",
            },
            "send-test",
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert [m.subject for m in smtp.wait_for(1)] == ["[ai-diary] TEST alert pipeline: delivery check"]
        assert sorted(r.path for r in hooks.wait_for(2)) == ["/slack", "/sms"]


def test_send_test_fails_when_a_channel_is_down():
    with WebhookReceiver(status=503) as hooks:
        out = run(
            {"SLACK_WEBHOOK_URL": hooks.url("/slack"), "ALERTS_CHANNEL_RETRIES": "1", "ALERTS_CHANNEL_BACKOFF": "0"},
            "send-test",
        )
        assert out.returncode == 1 and "slack: FAILED" in out.stdout
        assert len(hooks.requests) == 2 and "HTTP 503" in out.stderr
