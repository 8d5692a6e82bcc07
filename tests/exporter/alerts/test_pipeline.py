"""Through the real Pipeline.from_env (core + offline W&B run) to real receivers, and the run read back from disk."""

from __future__ import annotations

import json

import pytest

from app.demo.receivers import SmtpReceiver, WebhookReceiver
from otel_wandb import records as r
from otel_wandb.pipeline import Pipeline
from otel_wandb.runfile import find_runs, read_run
from tests.support import Clock

RULES = """
timezone: UTC
rules:
  - {name: High Error Rate, metric: error_rate, threshold: 0.05, window: 120, min_samples: 10, wait: 60,
     channels: [slack, email], level: ERROR}
  - {name: High Response Time, metric: p95_response_time, threshold: 1000, window: 120, min_samples: 10,
     wait: 60, channels: [slack]}
  - {name: AI API Cost Spike, metric: daily_ai_cost, threshold: 1.0, wait: 0, channels: [email]}
  - {name: New Error Group, metric: new_error_group, channels: [slack]}
"""
_seq = 0


def spans(
    n: int, *, status: int = 200, ms: float = 20.0, exc: str | None = None, message: str = "boom"
) -> list[r.SpanRecord]:
    global _seq
    out = []
    for _ in range(n):
        _seq += 1
        start = 1_800_000_000_000_000_000 + _seq * 1_000_000
        out.append(
            r.SpanRecord(
                name="GET /entries",
                kind=r.SERVER,
                start_ns=start,
                end_ns=start + int(ms * 1e6),
                trace_id=f"{_seq:032x}",
                span_id=f"{_seq:016x}",
                is_error=status >= 500,
                attributes={
                    "http.route": "/entries",
                    "http.request.method": "GET",
                    "http.response.status_code": status,
                },
                exceptions=(
                    r.ExceptionInfo(exc, message, f'File "app/api/entries.py", line 9, in list\n{exc}: {message}'),
                )
                if exc
                else (),
            )
        )
    return out


@pytest.fixture
def receivers():
    with SmtpReceiver() as smtp, WebhookReceiver() as hooks:
        yield smtp, hooks


@pytest.fixture
def env(tmp_path, receivers):
    smtp, hooks = receivers
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES)
    return {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path / "wb"),
        "WANDB_SILENT": "true",
        "WANDB_PROJECT": "ai-diary-alerts-test",
        "WANDB_EXPORT_INTERVAL": "3600",
        "ALERTS_FILE": str(rules),
        "ALERTS_STATE_FILE": str(tmp_path / "alerts-state.json"),
        "SLACK_WEBHOOK_URL": hooks.url("/slack"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "ALERT_EMAIL_TO": "oncall@ai-diary.test",
    }


def test_from_env_installs_alerts_and_the_offline_run_holds_them(env, receivers, tmp_path):
    smtp, hooks = receivers
    pipeline = Pipeline.from_env(env=env)
    manager = pipeline.alerts
    try:
        assert manager is not None and manager.on_interval in pipeline._listeners
        pipeline.add_spans(spans(30) + spans(10, status=500, exc="ZeroDivisionError"))  # 25 % errors
        pipeline.flush_once()
        fired = [(e.kind, e.rule) for e in manager.events]
        assert ("fire", "High Error Rate") in fired and ("fire", "New Error Group") in fired
        assert ("fire", "High Response Time") not in fired

        pipeline.add_spans(spans(20, ms=2500.0))  # slow requests: p95 over the window > 1 s
        pipeline.add_spans(spans(3000))  # and plenty of good ones: error rate back under 5 %
        pipeline.add_metrics(
            [r.MetricPoint("app.ai.cost", r.SUM, unit="USD", temporality=r.DELTA, monotonic=True, value=2.5, time_ns=1)]
        )
        pipeline.flush_once()
        second = [(e.kind, e.rule) for e in manager.events[len(fired) :]]
        assert ("resolve", "High Error Rate") in second and ("fire", "AI API Cost Spike") in second
        assert manager.dispatcher.wait_idle(10)
    finally:
        assert pipeline.shutdown(30)
        manager.shutdown(5)

    subjects = sorted(m.subject for m in smtp.wait_for(3))
    assert subjects == [
        "[ai-diary] [FIRING] AI API Cost Spike",
        "[ai-diary] [FIRING] High Error Rate",
        "[ai-diary] [RESOLVED] High Error Rate",
    ]
    slack = [q.json["text"] for q in hooks.requests]
    assert any("New Error Group: ZeroDivisionError" in t for t in slack)
    assert sum("High Error Rate" in t for t in slack) == 2

    runs = find_runs(tmp_path / "wb")
    assert len(runs) == 1
    run = read_run(runs[0])
    titles = [a["title"] for a in run.alerts]
    assert "[FIRING] High Error Rate" in titles and "[RESOLVED] High Error Rate" in titles
    assert "[FIRING] AI API Cost Spike" in titles and "New Error Group: ZeroDivisionError" in titles
    firing = next(a for a in run.alerts if a["title"] == "[FIRING] High Error Rate")
    assert "25.0%" in firing["text"] and firing["wait_duration"] == 60
    assert run.series("http/errors")[0] == 10  # the same interval logged its row


def test_p95_rule_through_long_spans_in_the_core(env, receivers):
    _, hooks = receivers
    pipeline = Pipeline.from_env(env=dict(env, WANDB_MODE="disabled"))
    manager = pipeline.alerts
    try:
        pipeline.add_spans(spans(40, ms=30.0))
        pipeline.flush_once()
        assert manager.events == []
        pipeline.add_spans(spans(20, ms=1800.0))  # 20 of 60 samples at 1.8 s: p95 = 1800 ms
        pipeline.flush_once()
        assert [(e.kind, e.rule) for e in manager.events] == [("fire", "High Response Time")]
        assert manager.events[0].value == pytest.approx(1800.0, rel=0.01)
        assert manager.dispatcher.wait_idle(10)
        assert [q.json["text"].splitlines()[0] for q in hooks.wait_for(1)] == [
            ":rotating_light: *[FIRING] High Response Time*"
        ]
    finally:
        pipeline.shutdown(10)
        manager.shutdown(5)


def test_alerts_enabled_false_leaves_the_pipeline_alone(env):
    pipeline = Pipeline.from_env(env=dict(env, ALERTS_ENABLED="false", WANDB_MODE="disabled"))
    try:
        assert pipeline._listeners == [] and getattr(pipeline, "alerts", None) is None
    finally:
        pipeline.shutdown(5)


CANARY = "CANARY-diary-7f3a9c"


@pytest.mark.parametrize(
    "message",
    [
        f"cannot summarize '{CANARY} my secret day'",
        # a quoted literal longer than the core reads (2000 characters): the closing quote is cut off
        f"cannot summarize '{CANARY} my secret day" + " and then" * 300 + "'",
    ],
)
def test_error_group_alerts_carry_no_diary_text(env, receivers, message):
    _, hooks = receivers
    canary = CANARY
    pipeline = Pipeline.from_env(env=dict(env, WANDB_MODE="disabled"))
    manager = pipeline.alerts
    try:
        pipeline.add_spans(spans(5, status=500, exc="ValueError", message=message))
        pipeline.flush_once()
        assert manager.dispatcher.wait_idle(10)
        texts = [q.json["text"] for q in hooks.wait_for(1)]
        assert any("New Error Group: ValueError" in t and "cannot summarize <str>" in t for t in texts)
        assert not any(canary in t for t in texts) and not any(canary in e.text for e in manager.events)
    finally:
        pipeline.shutdown(10)
        manager.shutdown(5)


def _worker_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "otel_wandb.alerts" and r.levelname == "WARNING" and "gunicorn worker" in r.getMessage()
    ]


@pytest.mark.parametrize(
    "extra",
    [
        {"AI_DIARY_WORKER_ID": "1"},  # gunicorn.conf.py's default: 2 workers
        {"AI_DIARY_WORKER_ID": "0", "WEB_CONCURRENCY": "4"},
    ],
)
def test_in_process_alerts_are_off_in_one_of_several_gunicorn_workers(env, caplog, extra):
    caplog.set_level("INFO", logger="otel_wandb.alerts")
    pipeline = Pipeline.from_env(env=dict(env, WANDB_MODE="disabled", **extra))
    try:
        assert getattr(pipeline, "alerts", None) is None and pipeline._listeners == []
    finally:
        pipeline.shutdown(5)
    [warning] = _worker_warnings(caplog)
    assert warning.startswith(f"alerts OFF in gunicorn worker {extra['AI_DIARY_WORKER_ID']} of ")
    assert "W&B bridge" in warning and "ALERTS_ENABLED=true" in warning


@pytest.mark.parametrize(
    "extra, warned",
    [
        (
            {"AI_DIARY_WORKER_ID": "1", "WEB_CONCURRENCY": "3", "ALERTS_ENABLED": "true"},  # explicit: on, warned
            ["alerts ON (ALERTS_ENABLED=true) in gunicorn worker 1 of 3"],
        ),
        ({"AI_DIARY_WORKER_ID": "0", "WEB_CONCURRENCY": "1"}, []),  # the only worker
        ({"WEB_CONCURRENCY": "4"}, []),  # not a gunicorn worker (the bridge, sharing .env)
    ],
)
def test_alerts_stay_on_when_asked_for_a_single_worker_or_outside_gunicorn(env, caplog, extra, warned):
    caplog.set_level("INFO", logger="otel_wandb.alerts")
    pipeline = Pipeline.from_env(env=dict(env, WANDB_MODE="disabled", **extra))
    manager = pipeline.alerts
    try:
        assert manager is not None and manager.on_interval in pipeline._listeners
    finally:
        pipeline.shutdown(5)
        manager.shutdown(5)
    assert [w.split(":")[0] for w in _worker_warnings(caplog)] == warned


def test_daily_cost_resets_at_local_midnight_through_the_pipeline(env, receivers, tmp_path):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from otel_wandb.alerts import install

    smtp, _ = receivers
    tokyo = ZoneInfo("Asia/Tokyo")
    env = dict(env, WANDB_MODE="disabled", ALERTS_TIMEZONE="Asia/Tokyo")
    pipeline = Pipeline.from_env(env=dict(env, ALERTS_ENABLED="false"))  # the real pipeline; alerts added below
    clock = Clock(datetime(2026, 11, 29, 23, 40, tzinfo=tokyo).timestamp())  # 14:40 UTC: still the 29th in UTC
    manager = install(pipeline, env=env, clock=clock)  # the clock seam: no sleeping until midnight

    def spend(usd: float, hh: int, mm: int, day: int) -> list[tuple[str, str]]:
        clock.t = datetime(2026, 11, day, hh, mm, tzinfo=tokyo).timestamp()
        before = len(manager.events)
        pipeline.add_metrics(
            [r.MetricPoint("app.ai.cost", r.SUM, unit="USD", temporality=r.DELTA, monotonic=True, value=usd, time_ns=1)]
        )
        assert pipeline.flush_once()
        return [(e.kind, e.rule) for e in manager.events[before:]]

    try:
        assert spend(0.6, 23, 40, 29) == []
        assert spend(0.6, 23, 55, 29) == [("fire", "AI API Cost Spike")]  # $1.20 on the 29th (Tokyo)
        assert spend(0.3, 0, 5, 30) == [("resolve", "AI API Cost Spike")]  # Tokyo midnight: a new day at $0.30
        assert spend(0.5, 0, 30, 30) == []  # $0.80
        assert spend(0.4, 1, 0, 30) == [("fire", "AI API Cost Spike")]  # $1.20 on the 30th: fires again
        assert manager.dispatcher.wait_idle(10)
    finally:
        pipeline.shutdown(10)
        manager.shutdown(5)
    mails = smtp.wait_for(3)
    assert [m.subject for m in mails] == [
        "[ai-diary] [FIRING] AI API Cost Spike",
        "[ai-diary] [RESOLVED] AI API Cost Spike",
        "[ai-diary] [FIRING] AI API Cost Spike",
    ]
    assert "2026-11-29, Asia/Tokyo" in mails[0].body and "2026-11-30, Asia/Tokyo" in mails[2].body
    state = json.loads((tmp_path / "alerts-state.json").read_text())
    assert state["day"] == "2026-11-30" and state["daily_ai_cost"] == pytest.approx(1.2)
