"""The pure evaluator: deterministic given (signals, now); one alert per breach, wait, resolve, windows, day reset."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from otel_wandb.alerts import Evaluator
from otel_wandb.alerts._rules import parse_config
from otel_wandb.alerts._state import StateStore
from otel_wandb.config import AlertSettings
from otel_wandb.records import Signals

RULES = {
    "timezone": "UTC",
    "rules": [
        {
            "name": "High Error Rate",
            "metric": "error_rate",
            "threshold": 0.05,
            "window": 60,
            "min_samples": 20,
            "wait": 30,
            "channels": ["slack", "email"],
            "level": "ERROR",
        },
        {
            "name": "High Response Time",
            "metric": "p95_response_time",
            "threshold": 1000,
            "window": 60,
            "min_samples": 10,
            "wait": 60,
            "channels": ["slack"],
        },
        {
            "name": "AI API Cost Spike",
            "metric": "daily_ai_cost",
            "threshold": 1.0,
            "wait": 0,
            "channels": ["email", "sms"],
        },
        {"name": "New Error Group", "metric": "new_error_group", "channels": ["slack"], "max_per_interval": 2},
    ],
}
T0 = 1_800_000_000.0  # an arbitrary epoch second


def sig(requests=0, errors=0, latency=(), cost=0.0, groups=(), p95=None) -> Signals:
    return Signals(
        0,
        0,
        requests=requests,
        errors=errors,
        latency_ms=tuple(latency),
        p95_ms=p95,
        ai_cost_usd=cost,
        new_error_groups=tuple(groups),
    )


def make(rules=None, state=None, **overrides) -> Evaluator:
    data = {**RULES, **overrides}
    if rules is not None:
        data["rules"] = [r for r in RULES["rules"] if r["name"] in rules]
    return Evaluator(parse_config(data), state)


def kinds(events):
    return [(e.kind, e.rule) for e in events]


def test_one_alert_per_breach_then_none_within_wait_then_resolve():
    ev = make(["High Error Rate"])
    assert ev.evaluate(sig(100, 1), T0) == []
    fired = ev.evaluate(sig(100, 30), T0 + 10)  # window: 31/200 = 15.5 %
    assert kinds(fired) == [("fire", "High Error Rate")]
    e = fired[0]
    assert e.value == pytest.approx(31 / 200) and e.threshold == 0.05 and e.level == "ERROR"
    assert e.channels == ("slack", "email") and e.title == "[FIRING] High Error Rate" and "15.5%" in e.text
    for t in (20, 30):  # still breaching, inside the 30 s wait: nothing
        assert ev.evaluate(sig(100, 30), T0 + t) == []
    reminder = ev.evaluate(sig(100, 30), T0 + 41)  # wait elapsed, still breaching: one reminder
    assert kinds(reminder) == [("fire", "High Error Rate")] and reminder[0].reminder
    assert "still firing" in reminder[0].text
    out = ev.evaluate(sig(10_000, 0), T0 + 45)  # recovery: 121 errors / 10,500 requests in the window
    assert kinds(out) == [("resolve", "High Error Rate")] and out[0].title == "[RESOLVED] High Error Rate"
    assert out[0].value == pytest.approx(121 / 10_500) and out[0].level == "INFO" and "RESOLVED" in out[0].text
    assert ev.evaluate(sig(100, 0), T0 + 50) == []
    assert ev.evaluate(sig(100, 0), T0 + 200) == []


def test_min_samples_one_failed_request_is_not_a_100_percent_error_rate():
    ev = make(["High Error Rate"])
    assert ev.evaluate(sig(1, 1), T0) == []
    assert ev.evaluate(sig(5, 5), T0 + 5) == []  # 6 requests < 20
    assert kinds(ev.evaluate(sig(14, 0), T0 + 10)) == [("fire", "High Error Rate")]  # 20 requests, 30 %


def test_window_slides_old_intervals_out():
    ev = make(["High Error Rate"])
    assert kinds(ev.evaluate(sig(100, 50), T0)) == [("fire", "High Error Rate")]
    assert ev.evaluate(sig(100, 0), T0 + 20) == []  # 50/200 still in the 60 s window
    assert kinds(ev.evaluate(sig(100, 0), T0 + 61)) == [("resolve", "High Error Rate")]  # first interval aged out


def test_flapping_within_wait_is_held_back_then_sent_if_still_breaching():
    ev = make(["High Error Rate"])
    assert kinds(ev.evaluate(sig(100, 50), T0)) == [("fire", "High Error Rate")]
    assert kinds(ev.evaluate(sig(10_000, 0), T0 + 5)) == [("resolve", "High Error Rate")]
    assert ev.evaluate(sig(100_000, 20_000), T0 + 10) == []  # breaches again within the wait: held back
    assert ev.rules["High Error Rate"].firing and not ev.rules["High Error Rate"].notified
    out = ev.evaluate(sig(100, 50), T0 + 31)  # wait over, still breaching: the held-back alert goes out
    assert kinds(out) == [("fire", "High Error Rate")] and not out[0].reminder


def test_wait_zero_notifies_transitions_only():
    ev = make(["AI API Cost Spike"])
    assert kinds(ev.evaluate(sig(cost=2.0), T0)) == [("fire", "AI API Cost Spike")]
    for t in range(1, 20):
        assert ev.evaluate(sig(cost=0.5), T0 + t) == []


def test_p95_from_injected_latency_samples():
    ev = make(["High Response Time"])
    assert ev.evaluate(sig(5, latency=[2000] * 5), T0) == []  # 5 samples < min 10
    out = ev.evaluate(sig(20, latency=[100] * 17 + [2500] * 3), T0 + 10)  # 25 samples, 8 slow: p95 = 2500
    assert kinds(out) == [("fire", "High Response Time")] and out[0].value == 2500
    assert "2,500 ms" in out[0].text and "1,000 ms" in out[0].text


def test_p95_resolve_event_is_emitted():
    ev = make(["High Response Time"])
    ev.evaluate(sig(20, latency=[3000] * 20), T0)
    out = ev.evaluate(sig(400, latency=[50] * 400), T0 + 10)
    assert kinds(out) == [("resolve", "High Response Time")] and out[0].value == 50


def test_p95_falls_back_to_interval_p95_without_samples():
    ev = make(["High Response Time"])
    assert kinds(ev.evaluate(sig(50, p95=1500.0), T0)) == [("fire", "High Response Time")]


def test_daily_cost_accumulates_and_resets_at_local_midnight():
    tokyo = ZoneInfo("Asia/Tokyo")
    ev = make(["AI API Cost Spike"], timezone="Asia/Tokyo")
    before = datetime(2026, 11, 29, 23, 50, tzinfo=tokyo).timestamp()  # 14:50 UTC: still "today" in UTC too
    assert ev.evaluate(sig(cost=0.6), before) == []
    out = ev.evaluate(sig(cost=0.6), before + 60)
    assert kinds(out) == [("fire", "AI API Cost Spike")] and out[0].value == pytest.approx(1.2)
    assert "2026-11-29" in out[0].text and "Asia/Tokyo" in out[0].text
    after = datetime(2026, 11, 30, 0, 0, 5, tzinfo=tokyo).timestamp()  # local midnight (15:00 UTC)
    out = ev.evaluate(sig(cost=0.1), after)
    assert kinds(out) == [("resolve", "AI API Cost Spike")] and out[0].value == pytest.approx(0.1)
    assert ev.day == "2026-11-30" and ev.daily_cost == pytest.approx(0.1)


def test_daily_cost_in_utc_does_not_reset_at_tokyo_midnight():
    ev = make(["AI API Cost Spike"])  # UTC
    t = datetime(2026, 11, 29, 14, 50, tzinfo=ZoneInfo("UTC")).timestamp()
    ev.evaluate(sig(cost=0.6), t)
    assert kinds(ev.evaluate(sig(cost=0.6), t + 20 * 60)) == [("fire", "AI API Cost Spike")]  # 15:10 UTC, same day


def test_state_survives_restart_through_the_state_file(tmp_path):
    store = StateStore(tmp_path / "state" / "alerts.json")
    ev = make(state=store.load())
    ev.evaluate(sig(100, 50, cost=0.7, groups=[{"fingerprint": "f1", "type": "KeyError"}]), T0)
    assert store.save(ev.snapshot()) and not store.save(ev.snapshot())  # unchanged: no rewrite
    assert not list((tmp_path / "state").glob(".alerts-state-*"))  # temp files renamed away
    saved = json.loads((tmp_path / "state" / "alerts.json").read_text())
    assert saved["daily_ai_cost"] == pytest.approx(0.7) and saved["rules"]["High Error Rate"]["firing"]

    again = make(state=StateStore(tmp_path / "state" / "alerts.json").load())  # the "restarted" process
    out = again.evaluate(sig(cost=0.4, groups=[{"fingerprint": "f1", "type": "KeyError"}]), T0 + 10)
    assert kinds(out) == [("fire", "AI API Cost Spike")] and out[0].value == pytest.approx(1.1)  # day kept
    assert again.evaluate(sig(100, 50), T0 + 20) == []  # still firing, within wait: not re-sent after restart
    assert kinds(again.evaluate(sig(10_000, 0), T0 + 25)) == [("resolve", "High Error Rate")]


def test_state_file_corrupt_or_other_zone_starts_fresh(tmp_path, caplog):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    assert StateStore(path).load() == {}
    assert "unreadable" in caplog.text
    ev = make(["AI API Cost Spike"])
    ev.evaluate(sig(cost=0.9), T0)
    paris = make(["AI API Cost Spike"], timezone="Europe/Paris", state=ev.snapshot())
    assert paris.daily_cost == 0.0  # a day in another zone is another day


@pytest.mark.parametrize(
    "content, warning",
    [
        (None, "unreadable"),  # a directory where the file should be: the read fails (OSError)
        (b"\xff\xfe not utf-8", "unreadable"),
        (b'{"version": 99, "daily_ai_cost": 5}', "unknown format"),
        (b"[1, 2, 3]", "unknown format"),
    ],
)
def test_unusable_state_file_starts_empty_with_one_warning(tmp_path, caplog, content, warning):
    path = tmp_path / "alerts.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with caplog.at_level("WARNING", logger="otel_wandb.alerts._state"):
        assert StateStore(path).load() == {}
    (message,) = caplog.messages
    assert f"alert state file {path}" in message and warning in message and "starting with empty state" in message


@pytest.mark.parametrize("broken", ["corrupt", "directory"])
def test_alerting_starts_and_works_with_a_broken_state_file(tmp_path, caplog, broken):
    """build() with an unusable ALERTS_STATE_FILE: alerting still starts, evaluates and fires; a corrupt file is
    replaced by a good one on the next save, a path it cannot write is warned about and never raises."""
    from otel_wandb.alerts import build

    rules = tmp_path / "alerts.yaml"
    rules.write_text("rules:\n  - {name: Spend, metric: daily_ai_cost, threshold: 1.0, wait: 0, channels: [email]}\n")
    state = tmp_path / "state.json"
    if broken == "corrupt":
        state.write_text('{"version": 1, "daily_ai_cost": ')  # cut off mid-write
    else:
        state.mkdir()
    caplog.set_level("WARNING", logger="otel_wandb.alerts")
    manager = build(env={"ALERTS_FILE": str(rules), "ALERTS_STATE_FILE": str(state)}, clock=lambda: T0)
    try:
        assert [e.rule for e in manager.on_interval(sig(cost=1.5))] == ["Spend"]
    finally:
        manager.shutdown(2)
    assert any("unreadable" in m and "starting with empty state" in m for m in caplog.messages)
    if broken == "corrupt":
        saved = json.loads(state.read_text())
        assert saved["version"] == 1 and saved["daily_ai_cost"] == pytest.approx(1.5)
    else:
        assert any(m.startswith(f"could not write alert state file {state}") for m in caplog.messages)


def test_state_path_precedence(tmp_path):
    def default_state_path(env):
        return AlertSettings.from_env(env).state_file

    assert default_state_path({"ALERTS_STATE_FILE": str(tmp_path / "a.json"), "WANDB_DIR": "/x"}) == tmp_path / "a.json"
    assert default_state_path({"ALERTS_STATE_FILE": "off"}) is None
    assert str(default_state_path({"WANDB_DIR": str(tmp_path)})) == str(tmp_path / "alerts-state.json")
    assert default_state_path({}) is None  # never an implicit file shared by every process in the cwd


def test_new_error_groups_alert_once_per_fingerprint_and_cap():
    ev = make(["New Error Group"])
    g = [
        {
            "fingerprint": f"fp{i}",
            "type": "ValueError",
            "message": f"bad {i}",
            "count": 1,
            "first_seen_ns": int(T0 * 1e9),
            "sample_trace_ids": ["ab" * 16],
        }
        for i in range(4)
    ]
    out = ev.evaluate(sig(groups=g[:1]), T0)
    assert [e.key for e in out] == ["fp0"] and out[0].title == "New Error Group: ValueError"
    assert "bad 0" in out[0].text and "abab" in out[0].text and out[0].threshold is None
    assert ev.evaluate(sig(groups=g[:1]), T0 + 1) == []  # same fingerprint again: deduplicated
    out = ev.evaluate(sig(groups=g), T0 + 2)  # 3 new, cap 2: the last one mentions the rest
    assert [e.key for e in out] == ["fp1", "fp2"] and "1 more new error groups" in out[-1].text
    assert all(e.kind == "fire" for e in out)


def test_deterministic_given_signals_and_now():
    inputs = [(sig(100, i % 7 * 3, latency=[100 * (i % 13)] * 20, cost=0.2), T0 + 7 * i) for i in range(60)]
    runs = []
    for _ in range(2):
        ev = make()
        runs.append([(e.kind, e.rule, e.value, e.text, e.at) for s, t in inputs for e in ev.evaluate(s, t)])
    assert runs[0] == runs[1] and runs[0]


def test_titles_stay_under_64_chars():
    long_name = "X" * 56
    ev = Evaluator(parse_config({"rules": [{"name": long_name, "metric": "error_count", "threshold": 0}]}), None)
    out = ev.evaluate(sig(5, 5), T0) + ev.evaluate(sig(10, 0), T0 + 1000)
    assert out and all(len(e.title) < 64 for e in out)
    with pytest.raises(Exception, match="name"):
        parse_config({"rules": [{"name": "Y" * 57, "metric": "error_count"}]})


def test_p95_weights_reservoir_samples_by_the_requests_they_stand_for():
    ev = make(["High Response Time"])
    # 1000 fast requests represented by 10 samples, then 10 slow requests sampled in full: 1 % are slow
    assert ev.evaluate(sig(1000, latency=[100] * 10), T0) == []
    assert ev.evaluate(sig(10, latency=[5000] * 10), T0 + 1) == []  # unweighted, 10 of 20 samples would fire
    assert ev.read(ev.config.rules[0], T0 + 1).value == 100
    assert kinds(ev.evaluate(sig(100, latency=[5000] * 100), T0 + 2)) == [("fire", "High Response Time")]


def test_restart_after_local_midnight_starts_a_new_day(tmp_path):
    tokyo = ZoneInfo("Asia/Tokyo")
    store = StateStore(tmp_path / "s.json")
    ev = make(["AI API Cost Spike"], timezone="Asia/Tokyo")
    assert kinds(ev.evaluate(sig(cost=1.5), datetime(2026, 11, 29, 23, 0, tzinfo=tokyo).timestamp())) == [
        ("fire", "AI API Cost Spike")
    ]
    store.save(ev.snapshot())
    again = make(["AI API Cost Spike"], timezone="Asia/Tokyo", state=StateStore(tmp_path / "s.json").load())
    assert again.daily_cost == pytest.approx(1.5) and again.rules["AI API Cost Spike"].firing
    out = again.evaluate(sig(cost=0.2), datetime(2026, 11, 30, 0, 1, tzinfo=tokyo).timestamp())
    assert kinds(out) == [("resolve", "AI API Cost Spike")] and again.daily_cost == pytest.approx(0.2)


def test_resolve_threshold_adds_hysteresis():
    rule = dict(RULES["rules"][0], resolve_threshold=0.03)
    ev = Evaluator(parse_config({"rules": [rule]}), None)
    assert kinds(ev.evaluate(sig(100, 10), T0)) == [("fire", "High Error Rate")]  # 10 %
    assert ev.evaluate(sig(400, 10), T0 + 5) == []  # 4 %: under the threshold, not yet clear
    out = ev.evaluate(sig(1000, 10), T0 + 10)  # 2.0 %: clear
    assert kinds(out) == [("resolve", "High Error Rate")] and "resolve threshold 3.0%" in out[0].text
    with pytest.raises(Exception, match="resolve_threshold"):
        parse_config({"rules": [dict(rule, resolve_threshold=0.2)]})


def _group(i: int) -> dict:
    return {"fingerprint": f"held{i}", "type": "KeyError", "message": f"missing key '{i}-secret'", "count": 1}


def test_error_groups_arriving_during_the_wait_are_announced_when_it_ends(tmp_path):
    rules = {
        "rules": [
            {
                "name": "New Error Group",
                "metric": "new_error_group",
                "wait": 300,
                "channels": ["slack"],
                "max_per_interval": 3,
            }
        ]
    }
    ev = Evaluator(parse_config(rules), None)
    assert [e.key for e in ev.evaluate(sig(groups=[_group(0)]), T0)] == ["held0"]
    assert ev.evaluate(sig(groups=[_group(1)]), T0 + 60) == []  # within the 300 s wait: held, not lost
    assert ev.evaluate(sig(groups=[_group(1), _group(2)]), T0 + 120) == []  # held1 again is not held twice
    # a restart while groups are held keeps them (the state file), content-free
    store = StateStore(tmp_path / "state.json")
    store.save(ev.snapshot())
    saved = json.loads((tmp_path / "state.json").read_text())
    assert [g["fingerprint"] for g in saved["error_groups"]["New Error Group"]["held_groups"]] == ["held1", "held2"]
    assert "secret" not in json.dumps(saved)
    ev = Evaluator(parse_config(rules), store.load())
    out = ev.evaluate(sig(), T0 + 300)  # the wait is over: no new group this interval, the held ones go out
    assert [e.key for e in out] == ["held1", "held2"] and all(e.kind == "fire" for e in out)
    assert "missing key <str>" in out[0].text
    assert ev.evaluate(sig(groups=[_group(1), _group(2)]), T0 + 900) == []  # announced once, ever
    assert [e.key for e in ev.evaluate(sig(groups=[_group(3)]), T0 + 901)] == ["held3"]  # wait over: at once
    for i in range(4, 9):  # five more during the wait
        assert ev.evaluate(sig(groups=[_group(i)]), T0 + 910 + i) == []
    out = ev.evaluate(sig(groups=[_group(9)]), T0 + 1201)  # held 4..8 plus the new 9, cap 3
    assert [e.key for e in out] == ["held4", "held5", "held6"] and "3 more new error groups" in out[-1].text


TWO_GROUP_RULES = {
    "timezone": "UTC",
    "rules": [
        {"name": "Groups to SMS hourly", "metric": "new_error_group", "wait": 3600, "channels": ["sms"]},
        {"name": "Groups to Slack", "metric": "new_error_group", "wait": 0, "channels": ["slack"]},
    ],
}


def test_each_error_group_rule_announces_every_group_on_its_own_channels(tmp_path):
    """Two new_error_group rules (SMS hourly, Slack at once): each sees every fingerprint and announces it on its
    own channels once; a group held by the waiting SMS rule is not announced by the Slack rule's channels -- also
    across a restart (one memory per rule in the state file)."""
    ev = Evaluator(parse_config(TWO_GROUP_RULES), None)

    def announced(t, *fps):
        out = ev.evaluate(
            sig(groups=[{"fingerprint": fp, "type": "ValueError", "message": "boom", "count": 1} for fp in fps]), T0 + t
        )
        return [(e.rule, e.key, e.channels) for e in out]

    sms, slack = ("Groups to SMS hourly", ("sms",)), ("Groups to Slack", ("slack",))
    assert announced(0, "a") == [(sms[0], "a", sms[1]), (slack[0], "a", slack[1])]
    assert announced(60, "b") == [(slack[0], "b", slack[1])]  # SMS holds b (within its hour)
    assert announced(120, "a", "b") == []  # each rule announced (or holds) them already
    store = StateStore(tmp_path / "state.json")
    store.save(ev.snapshot())
    ev = Evaluator(parse_config(TWO_GROUP_RULES), store.load())
    assert announced(3700, "c") == [(sms[0], "b", sms[1]), (sms[0], "c", sms[1]), (slack[0], "c", slack[1])]
    assert announced(3800, "a", "b", "c") == []


def test_state_with_one_shared_group_memory_is_migrated_to_every_rule():
    """State files written before one memory per rule had top-level ``fingerprints`` / ``held_groups``: every
    new_error_group rule takes them over (no group announced again after the upgrade; held ones still go out)."""
    old = {
        "timezone": "UTC",
        "rules": {"Groups to SMS hourly": {"last_notified": T0 - 10}},
        "fingerprints": ["a", "b"],
        "held_groups": [{"fingerprint": "b", "type": "KeyError", "count": 1}],
        "held_more": 0,
    }
    ev = Evaluator(parse_config(TWO_GROUP_RULES), old)
    out = ev.evaluate(sig(groups=[{"fingerprint": fp, "type": "KeyError"} for fp in ("a", "c")]), T0)
    assert [(e.rule, e.key) for e in out] == [("Groups to Slack", "b"), ("Groups to Slack", "c")]
    snap = ev.snapshot()
    assert "fingerprints" not in snap and set(snap["error_groups"]) == {"Groups to SMS hourly", "Groups to Slack"}
    assert [g["fingerprint"] for g in snap["error_groups"]["Groups to SMS hourly"]["held_groups"]] == ["b", "c"]
