"""End to end: rules -> evaluator -> dispatcher -> a real SMTP server (aiosmtpd) and real HTTP webhook receivers."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from app.demo.receivers import SmtpReceiver, WebhookReceiver
from otel_wandb.alerts import build
from otel_wandb.records import Signals
from tests.support import Clock, free_port, silent_server, wait_until

RULES = """
timezone: UTC
rules:
  - {name: High Error Rate, metric: error_rate, threshold: 0.05, window: 60, min_samples: 10, wait: 30,
     channels: [slack, email], level: ERROR}
  - {name: AI API Cost Spike, metric: daily_ai_cost, threshold: 0.5, wait: 0, channels: [email, sms]}
  - {name: New Error Group, metric: new_error_group, channels: [slack]}
"""
SMTP_PASSWORD = "smtp-pw-canary-31337"
SMS_TOKEN = "sms-auth-token-canary-4242"
SLACK_TOKEN = "T0CANARY/B0CANARY/slack-token-canary"
T0 = 1_800_000_000.0


@pytest.fixture
def smtp_receiver():
    with SmtpReceiver(auth=("alerts", SMTP_PASSWORD)) as server:
        yield server


@pytest.fixture
def webhook_receiver():
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def closed_port():
    return free_port()  # nothing listens there: connection refused


@pytest.fixture
def blackhole():
    """Accepts TCP connections and never answers (a hung webhook); yields its port."""
    with silent_server() as server:
        yield server.port


@pytest.fixture
def hung_webhook():
    """A webhook that hangs until the test releases it (tests.support.SilentServer)."""
    with silent_server() as server:
        yield server


@pytest.fixture
def env(tmp_path, smtp_receiver, webhook_receiver):
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES)
    return {
        "ALERTS_FILE": str(rules),
        "ALERTS_STATE_FILE": str(tmp_path / "state.json"),
        "ALERTS_CHANNEL_RETRIES": "2",
        "ALERTS_CHANNEL_TIMEOUT": "2",
        "SLACK_WEBHOOK_URL": webhook_receiver.url(f"/services/{SLACK_TOKEN}"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_receiver.port),
        "SMTP_USERNAME": "alerts",
        "SMTP_PASSWORD": SMTP_PASSWORD,
        "ALERT_EMAIL_FROM": "alerts@ai-diary.test",
        "ALERT_EMAIL_TO": "oncall@ai-diary.test,backup@ai-diary.test",
        "SMS_WEBHOOK_URL": webhook_receiver.url("/2010-04-01/Accounts/AC123/Messages.json"),
        "SMS_FROM": "+15550000",
        "SMS_TO": "+15550101",
        "SMS_ACCOUNT_SID": "AC123",
        "SMS_AUTH_TOKEN": SMS_TOKEN,
    }


@pytest.fixture
def manager_factory():
    made = []

    def make(env, clock, **kw):
        m = build(env=env, clock=clock, backoff=0.01, **kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.shutdown(2.0)


def slack_posts(hooks):
    return [r for r in hooks.requests if r.path.startswith("/services/")]


def sms_posts(hooks):
    return [r for r in hooks.requests if r.path.endswith("/Messages.json")]


def test_one_alert_per_breach_none_within_wait_then_resolved(env, smtp_receiver, webhook_receiver, manager_factory):
    clock = Clock(T0)
    m = manager_factory(env, clock)
    assert m.on_interval(Signals(0, 0, requests=100, errors=2)) == []
    clock.t += 10
    fired = m.on_interval(Signals(0, 0, requests=100, errors=20))  # 22/200 = 11 % > 5 %
    assert [(e.kind, e.rule) for e in fired] == [("fire", "High Error Rate")]
    assert m.dispatcher.wait_idle(10)
    mails = smtp_receiver.wait_for(1)
    assert len(mails) == 1 and mails[0].subject == "[ai-diary] [FIRING] High Error Rate"
    assert mails[0].recipients == ["oncall@ai-diary.test", "backup@ai-diary.test"]
    assert mails[0].auth_user == "alerts" and "11.0%" in mails[0].body and "ERROR" in mails[0].body
    posts = slack_posts(webhook_receiver)
    assert len(posts) == 1 and "[FIRING] High Error Rate" in posts[0].json["text"]

    for _ in range(3):  # still breaching within the 30 s wait: nothing more goes out
        clock.t += 5
        assert m.on_interval(Signals(0, 0, requests=100, errors=20)) == []
    assert m.dispatcher.wait_idle(10)
    assert len(smtp_receiver.messages) == 1 and len(slack_posts(webhook_receiver)) == 1

    clock.t += 5
    resolved = m.on_interval(Signals(0, 0, requests=5000, errors=0))
    assert [(e.kind, e.rule) for e in resolved] == [("resolve", "High Error Rate")]
    assert m.dispatcher.wait_idle(10)
    assert [x.subject for x in smtp_receiver.wait_for(2)][1] == "[ai-diary] [RESOLVED] High Error Rate"
    assert "[RESOLVED] High Error Rate" in slack_posts(webhook_receiver)[1].json["text"]
    assert len(smtp_receiver.messages) == 2 and len(slack_posts(webhook_receiver)) == 2


def test_cost_rule_reaches_email_and_sms_webhook(env, smtp_receiver, webhook_receiver, manager_factory):
    m = manager_factory(env, Clock(T0))
    fired = m.on_interval(Signals(0, 0, ai_cost_usd=0.75))
    assert [e.rule for e in fired] == ["AI API Cost Spike"]
    assert m.dispatcher.wait_idle(10)
    sms = sms_posts(webhook_receiver)
    assert len(sms) == 1 and sms[0].auth_user == "AC123"
    assert sms[0].form["From"] == "+15550000" and sms[0].form["To"] == "+15550101"
    assert sms[0].form["Body"].startswith("[FIRING] AI API Cost Spike") and "$0.75" in sms[0].form["Body"]
    assert SMS_TOKEN.encode() not in sms[0].body
    assert [x.subject for x in smtp_receiver.wait_for(1)] == ["[ai-diary] [FIRING] AI API Cost Spike"]
    assert slack_posts(webhook_receiver) == []  # not one of this rule's channels


def test_new_error_group_alert_per_fingerprint(env, webhook_receiver, manager_factory):
    m = manager_factory(env, Clock(T0))
    group = {
        "fingerprint": "9f86d081884c7d65",
        "type": "ZeroDivisionError",
        "message": "division by zero",
        "count": 2,
        "first_seen_ns": int(T0 * 1e9),
        "sample_trace_ids": ["0af7651916cd43dd8448eb211c80319c"],
    }
    m.on_interval(Signals(0, 0, new_error_groups=(group,)))
    m.on_interval(Signals(0, 0, new_error_groups=(dict(group, count=5),)))  # same group again
    assert m.dispatcher.wait_idle(10)
    posts = slack_posts(webhook_receiver)
    assert len(posts) == 1
    assert "ZeroDivisionError" in posts[0].json["text"] and "0af7651916cd43dd8448eb211c80319c" in posts[0].json["text"]


def test_one_channel_down_others_delivered_failure_logged(
    env, smtp_receiver, webhook_receiver, closed_port, manager_factory, caplog
):
    caplog.set_level(logging.INFO)
    env = dict(env, SLACK_WEBHOOK_URL=f"http://127.0.0.1:{closed_port}/services/{SLACK_TOKEN}")
    webhook_receiver.status = 500  # the SMS provider answers 500
    m = manager_factory(env, Clock(T0))
    m.on_interval(Signals(0, 0, requests=50, errors=25, ai_cost_usd=1.0))
    assert m.dispatcher.wait_idle(15)
    subjects = sorted(x.subject for x in smtp_receiver.wait_for(2))
    assert subjects == ["[ai-diary] [FIRING] AI API Cost Spike", "[ai-diary] [FIRING] High Error Rate"]
    assert len(sms_posts(webhook_receiver)) == 3  # 1 attempt + 2 retries, all answered 500
    workers = m.dispatcher.workers
    assert (workers["email"].sent, workers["slack"].failed, workers["sms"].failed) == (2, 1, 1)
    msgs = [r.getMessage() for r in caplog.records if r.name == "otel_wandb.alerts._dispatcher"]
    slack_fail = [x for x in msgs if "via slack" in x and "failed" in x]
    assert [x.split("attempt ")[1][:3] for x in slack_fail] == ["1/3", "2/3", "3/3"]
    assert "ConnectError" in slack_fail[0] and slack_fail[-1].endswith("giving up")
    assert any("via sms" in x and "HTTP 500" in x for x in msgs)
    assert any("via email: delivered on attempt 1/3" in x for x in msgs)
    for secret in (SMTP_PASSWORD, SMS_TOKEN, SLACK_TOKEN, "slack-token-canary"):  # no secrets in any log
        assert secret not in caplog.text


def test_sms_retries_only_the_recipient_that_failed(env, caplog, manager_factory):
    caplog.set_level(logging.INFO, logger="otel_wandb.alerts._dispatcher")
    flaky = {"n": 0}

    def status_for(req):  # the provider rejects +15550102 twice, then accepts it
        if req.form.get("To") == "+15550102":
            flaky["n"] += 1
            return 503 if flaky["n"] <= 2 else 200
        return 200

    with WebhookReceiver(status_for=status_for) as sms_hooks:
        env = dict(env, SMS_WEBHOOK_URL=sms_hooks.url("/Messages.json"), SMS_TO="+15550101,+15550102,+15550103")
        m = manager_factory(env, Clock(T0))
        m.on_interval(Signals(0, 0, ai_cost_usd=1.0))
        assert m.dispatcher.wait_idle(15)
        to = [r.form["To"] for r in sms_hooks.requests]
    assert to == ["+15550101", "+15550102", "+15550102", "+15550102", "+15550103"]  # no duplicate for 1 or 3
    sms = m.dispatcher.workers["sms"]
    assert (sms.sent, sms.failed) == (1, 0)
    msgs = [r.getMessage() for r in caplog.records if "via sms" in r.getMessage()]
    assert sum("to recipient 2/3: attempt" in x and "failed" in x and "HTTP 503" in x for x in msgs) == 2
    assert any("via sms to recipient 2/3: delivered on attempt 3/3" in x for x in msgs)
    assert not any("+1555" in x for x in msgs)  # phone numbers stay out of the logs


def test_sms_recipient_that_keeps_failing_does_not_stop_the_next(env, manager_factory):
    with WebhookReceiver(status_for=lambda req: 500 if req.form.get("To") == "+15550101" else 200) as sms_hooks:
        env = dict(env, SMS_WEBHOOK_URL=sms_hooks.url("/Messages.json"), SMS_TO="+15550101,+15550102")
        m = manager_factory(env, Clock(T0))
        m.on_interval(Signals(0, 0, ai_cost_usd=1.0))
        assert m.dispatcher.wait_idle(15)
        to = [r.form["To"] for r in sms_hooks.requests]
    assert to == ["+15550101"] * 3 + ["+15550102"]  # 1 attempt + 2 retries for the first, then the second once
    sms = m.dispatcher.workers["sms"]
    assert (sms.sent, sms.failed) == (0, 1)


def test_hung_channel_does_not_block_the_others(env, smtp_receiver, hung_webhook, manager_factory):
    """Slack hangs for as long as the test says (not racing a timer): email is delivered meanwhile."""
    env = dict(
        env,
        SLACK_WEBHOOK_URL=f"http://127.0.0.1:{hung_webhook.port}/services/x",
        ALERTS_CHANNEL_TIMEOUT="60",
        ALERTS_CHANNEL_RETRIES="0",
    )
    m = manager_factory(env, Clock(T0))
    m.on_interval(Signals(0, 0, requests=50, errors=25))  # returns at once: delivery is on the workers
    slack = m.dispatcher.workers["slack"]
    assert (slack.sent, slack.failed) == (0, 0)
    wait_until(lambda: hung_webhook.accepted, 10, "slack to connect to the hung webhook")
    assert len(smtp_receiver.wait_for(1, timeout=10)) == 1  # email delivered while slack still hangs
    assert (slack.sent, slack.failed) == (0, 0)
    hung_webhook.release()  # the webhook drops the connection: slack's one attempt fails
    assert m.dispatcher.wait_idle(10) and (slack.sent, slack.failed) == (0, 1)


def test_hung_channel_gives_up_after_its_timeout(env, blackhole, manager_factory, caplog):
    caplog.set_level(logging.WARNING, logger="otel_wandb.alerts._dispatcher")
    env = dict(
        env,
        SLACK_WEBHOOK_URL=f"http://127.0.0.1:{blackhole}/services/x",
        ALERTS_CHANNEL_TIMEOUT="0.5",
        ALERTS_CHANNEL_RETRIES="0",
    )
    m = manager_factory(env, Clock(T0))
    m.on_interval(Signals(0, 0, requests=50, errors=25))
    assert m.dispatcher.wait_idle(10) and m.dispatcher.workers["slack"].failed == 1
    (failure,) = [r.getMessage() for r in caplog.records if "via slack" in r.getMessage()]
    seconds = float(failure.split("failed after ")[1].split("s:")[0])
    assert 0.5 <= seconds < 5 and "Timeout" in failure and failure.endswith("giving up"), failure


def test_shutdown_is_bounded_and_idempotent(env, blackhole, manager_factory):
    env = dict(
        env,
        SLACK_WEBHOOK_URL=f"http://127.0.0.1:{blackhole}/services/x",
        ALERTS_CHANNEL_TIMEOUT="5",
        ALERTS_CHANNEL_RETRIES="0",
    )
    m = manager_factory(env, Clock(T0))
    m.on_interval(Signals(0, 0, requests=50, errors=25))
    done = threading.Event()
    result = []
    threading.Thread(target=lambda: (result.append(m.shutdown(0.3)), done.set()), daemon=True).start()
    assert done.wait(3)  # returns after its timeout although slack is still hanging
    assert result == [False] and m.shutdown(0.1) is True
    fired = m.on_interval(Signals(0, 0, ai_cost_usd=5.0))  # evaluated after shutdown, but not delivered
    assert [e.rule for e in fired] == ["AI API Cost Spike"]
    email = m.dispatcher.workers["email"]
    assert email._queue.qsize() == 0 and not email.submit(fired[0])


def test_restart_keeps_the_day_and_does_not_resend(env, smtp_receiver, manager_factory):
    clock = Clock(T0)
    first = manager_factory(env, clock)
    first.on_interval(Signals(0, 0, requests=50, errors=25, ai_cost_usd=0.3))
    assert first.dispatcher.wait_idle(10)
    first.shutdown(2)
    assert len(smtp_receiver.wait_for(1)) == 1  # the error-rate alert

    clock.t += 5  # the process restarts with the same state file
    second = manager_factory(env, clock)
    fired = second.on_interval(Signals(0, 0, requests=50, errors=25, ai_cost_usd=0.3))
    assert [e.rule for e in fired] == ["AI API Cost Spike"]  # 0.3 + 0.3 > 0.5: the day was not zeroed
    assert fired[0].value == pytest.approx(0.6)  # and the error rate, still firing, was not re-sent
    assert second.dispatcher.wait_idle(10)
    assert sorted(x.subject for x in smtp_receiver.wait_for(2)) == [
        "[ai-diary] [FIRING] AI API Cost Spike",
        "[ai-diary] [FIRING] High Error Rate",
    ]


def test_wandb_channel_gets_every_alert_through_the_sink_seam(env, manager_factory):
    import wandb

    from otel_wandb.sink import WandbSink
    from tests.support.wandb_run import RecorderRun

    run = RecorderRun()
    m = manager_factory(env, Clock(T0), sink=WandbSink(run=run))
    m.on_interval(Signals(0, 0, requests=50, errors=25))
    m.on_interval(Signals(0, 0, requests=50_000, errors=0))
    assert m.dispatcher.wait_idle(10)
    assert [(a["title"], a["level"], a["wait_duration"]) for a in run.alerts] == [
        ("[FIRING] High Error Rate", wandb.AlertLevel.ERROR, 30.0),
        ("[RESOLVED] High Error Rate", wandb.AlertLevel.INFO, 30.0),
    ]
    assert "50.0%" in run.alerts[0]["text"]


@pytest.fixture
def tls_cert(tmp_path):
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    import subprocess

    cert, key = tmp_path / "smtp.pem", tmp_path / "smtp.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


def test_email_over_starttls_with_auth(tmp_path, tls_cert, manager_factory):
    rules = tmp_path / "tls.yaml"
    rules.write_text("rules:\n  - {name: Spend, metric: daily_ai_cost, threshold: 0.1, channels: [email]}\n")
    with SmtpReceiver(auth=("alerts", SMTP_PASSWORD), tls_cert=tls_cert) as smtp:
        base = {
            "ALERTS_FILE": str(rules),
            "ALERTS_STATE_FILE": "off",
            "ALERTS_CHANNEL_RETRIES": "0",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_USERNAME": "alerts",
            "SMTP_PASSWORD": SMTP_PASSWORD,
            "ALERT_EMAIL_TO": "oncall@ai-diary.test",
        }
        plain = manager_factory(base, Clock(T0))  # the server demands STARTTLS: plain delivery must fail
        plain.on_interval(Signals(0, 0, ai_cost_usd=1.0))
        assert plain.dispatcher.wait_idle(10) and plain.dispatcher.workers["email"].failed == 1
        secure = manager_factory(dict(base, SMTP_STARTTLS="true", SMTP_CA_FILE=tls_cert[0]), Clock(T0))
        secure.on_interval(Signals(0, 0, ai_cost_usd=1.0))
        assert secure.dispatcher.wait_idle(10) and secure.dispatcher.workers["email"].sent == 1
        mails = smtp.wait_for(1)
        assert len(mails) == 1 and mails[0].tls and mails[0].auth_user == "alerts"
        assert mails[0].subject == "[ai-diary] [FIRING] Spend"


def test_full_channel_queue_drops_and_counts_never_blocks(env, blackhole, manager_factory, caplog):
    """A channel that hangs fills its bounded queue (ALERTS_QUEUE_SIZE): further events for it are dropped, counted
    and logged at once -- the flusher thread that submits them never waits -- and closing drops what is left."""
    from otel_wandb.alerts import AlertEvent

    caplog.set_level(logging.WARNING, logger="otel_wandb.alerts._dispatcher")
    env = dict(
        env,
        SLACK_WEBHOOK_URL=f"http://127.0.0.1:{blackhole}/services/x",
        ALERTS_CHANNEL_TIMEOUT="5",
        ALERTS_CHANNEL_RETRIES="0",
        ALERTS_QUEUE_SIZE="1",
    )
    m = manager_factory(env, Clock(T0))
    slack = m.dispatcher.workers["slack"]
    events = [AlertEvent("fire", f"Rule {i}", 1.0, 0.5, f"rule {i} fired", "ERROR", ("slack",)) for i in range(4)]
    m.dispatcher.submit(events[0], ["slack"])
    wait_until(
        lambda: slack._queue.qsize() == 0 and slack._queue.unfinished_tasks == 1,
        10,
        "the slack worker to be stuck on the first event",
    )
    t0 = time.monotonic()
    for event in events[1:]:
        m.dispatcher.submit(event, ["slack"])  # one fits in the queue, two do not
    assert time.monotonic() - t0 < 1.0, "submitting never waits for the channel"
    assert (slack.sent, slack.failed, slack.dropped, slack._queue.qsize()) == (0, 0, 2, 1)
    full = [r.getMessage() for r in caplog.records if "queue for channel slack full" in r.getMessage()]
    assert full == [
        "alert queue for channel slack full: dropped '[FIRING] Rule 2' (fire)",
        "alert queue for channel slack full: dropped '[FIRING] Rule 3' (fire)",
    ]
    assert m.shutdown(0.2) is False  # slack still hangs: shutdown gives up after its timeout
    assert slack.dropped == 3 and any(
        "closing with a full queue: dropped '[FIRING] Rule 1'" in r.getMessage() for r in caplog.records
    )
