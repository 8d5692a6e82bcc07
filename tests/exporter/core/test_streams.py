"""Cumulative metric streams: the first point of an unseen stream (collector ``initial_value: auto``), a restart
of the process that diffs them (the bridge), and eviction past ``max_streams`` -- never counting a total twice."""

from __future__ import annotations

import pytest

from otel_wandb import records as r
from otel_wandb.core import Aggregator, CoreConfig, log_warnings
from otel_wandb.core._metrics import MetricState

S = 1_000_000_000
APP_START = 1_700_000_000 * S  # the app's process start: its cumulative streams' start_time


def cost(value, t, start=APP_START, feature="summarize"):
    return r.MetricPoint(
        "app.ai.cost",
        r.SUM,
        unit="USD",
        temporality=r.CUMULATIVE,
        monotonic=True,
        value=value,
        start_time_ns=start,
        time_ns=t,
        attributes={"app.feature": feature},
    )


def test_bridge_restart_does_not_count_the_apps_running_total_again():
    """The app keeps running (its cumulative app.ai.cost keeps its start time) while the bridge restarts: the
    day's cost must be what the app spent, not that plus the whole running total again."""
    spent = 0.0  # what the alerts' daily cost would hold (restored from its state file across the restart)
    first = Aggregator(CoreConfig(), start_ns=APP_START, process_start_ns=APP_START + 10 * S)  # bridge after app
    for i, total in enumerate((0.5, 0.8)):
        first.add_metrics([cost(total, APP_START + (10 + i) * S)])
        spent += first.flush(APP_START + (10 + i) * S).signals.ai_cost_usd
    # 0.5 counted in full? The stream started before this bridge did: baseline (its value predates us) -> 0.3
    assert spent == pytest.approx(0.3)

    restarted = Aggregator(CoreConfig(), start_ns=APP_START + 100 * S, process_start_ns=APP_START + 100 * S)
    for i, total in enumerate((0.9, 1.4)):
        restarted.add_metrics([cost(total, APP_START + (110 + i) * S)])
        spent += restarted.flush(APP_START + (110 + i) * S).signals.ai_cost_usd
    # 0.9 is a baseline (the 0.1 gained while the bridge was down is the documented loss), then +0.5
    assert spent == pytest.approx(0.3 + 0.5)
    assert spent < 1.4, "never more than the app really spent"


def test_stream_that_starts_after_us_counts_its_first_point_in_full():
    agg = Aggregator(CoreConfig(), start_ns=0, process_start_ns=APP_START)
    agg.add_metrics([cost(0.25, APP_START + 20 * S, start=APP_START + 5 * S)])  # app started after the bridge
    row = agg.flush(APP_START + 20 * S).row
    assert row["app.ai.cost/delta"] == pytest.approx(0.25)
    # unset start time, or start == timestamp: cannot tell -> baseline (as the collector does)
    agg.add_metrics(
        [
            cost(7.0, APP_START + 30 * S, start=0, feature="a"),
            cost(9.0, APP_START + 30 * S, start=APP_START + 30 * S, feature="b"),
        ]
    )
    assert agg.flush(APP_START + 30 * S).row["app.ai.cost/delta"] == 0


def test_first_cumulative_histogram_point_of_an_old_stream_is_a_baseline():
    def hist(count, start, t):
        return r.MetricPoint(
            "lat",
            r.HISTOGRAM,
            temporality=r.CUMULATIVE,
            start_time_ns=start,
            time_ns=t,
            count=count,
            sum=count * 0.1,
            bounds=(0.1, 1.0),
            bucket_counts=(count, 0, 0),
        )

    agg = Aggregator(CoreConfig(), start_ns=0, process_start_ns=APP_START)
    agg.add_metrics([hist(500, APP_START - 3600 * S, APP_START)])
    assert "lat/count" not in agg.flush(1).row
    agg.add_metrics([hist(530, APP_START - 3600 * S, APP_START + 60 * S)])
    assert agg.flush(2).row["lat/count"] == 30


def reqs(value, step, route, start=5 * S):
    return r.MetricPoint(
        "reqs",
        r.SUM,
        temporality=r.CUMULATIVE,
        monotonic=True,
        value=value,
        start_time_ns=start,
        time_ns=start + step * S,
        attributes={"route": route},
    )


def test_more_live_streams_than_the_cap_keep_counting_those_kept(caplog):
    """max_streams=2 with three live streams, +100 each per interval: the two kept keep counting (evicting a live
    stream for each point would make every point a baseline: [300, 0, 0, 0]); the third counts once (it started
    after us) and is then not kept -- never its whole cumulative value again. One warning names the cap."""
    state = MetricState(max_streams=2, process_start_ns=0)
    deltas = []
    for step in range(1, 5):
        state.add([reqs(100.0 * step, step, f"/{k}") for k in range(3)])
        deltas.append(state.sum_deltas["reqs"])
        state.flush(1.0, {})
    assert deltas == [300, 200, 200, 200]
    assert len(state.streams) == 2 and state.streams.refused == 4 and state.streams.evicted == 0
    assert len([m for m in caplog.messages if "more than 2 cumulative metric streams" in m]) == 1


def test_evicted_stream_that_comes_back_is_a_baseline_then_counts_again():
    """A stream gone quiet is forgotten for a new one; when it comes back its first point is a baseline (its value
    up to its last point was counted), its later points count: exact totals, nothing counted twice."""
    state = MetricState(max_streams=2, process_start_ns=0)
    rows = []
    for _step, points in enumerate(
        [
            [reqs(100, 1, "/a"), reqs(10, 1, "/b")],
            [reqs(200, 2, "/a"), reqs(50, 2, "/c")],  # /b quiet: forgotten for /c
            [reqs(300, 3, "/a"), reqs(30, 3, "/b")],  # /b back: baseline; /c forgotten
            [reqs(400, 4, "/a"), reqs(45, 4, "/b")],
        ],
        start=1,
    ):
        state.add(points)
        rows.append(state.sum_deltas["reqs"])
        state.flush(1.0, {})
    assert rows == [110, 150, 100, 115]
    assert state.streams.evicted == 2 and state.streams.refused == 0
    state.add([reqs(80, 5, "/c"), reqs(90, 6, "/c")])  # /c back (baseline 80), then +10
    assert state.sum_deltas["reqs"] == 10


def test_new_stream_with_an_old_start_after_evictions_still_counts():
    """Evicting a stream does not make every other stream with an earlier start a baseline: only the streams it
    forgot are (a new route of the same app process still counts its first point in full)."""
    state = MetricState(max_streams=1, process_start_ns=0)
    state.add([reqs(7, 1, "/a")])
    state.flush(1.0, {})
    state.add([reqs(5, 2, "/b", start=2 * S)])  # /a forgotten (start 5 s)
    state.flush(1.0, {})
    state.add([reqs(4, 3, "/c", start=3 * S)])  # started before /a did, never seen: counts
    assert state.sum_deltas["reqs"] == 4


@pytest.mark.parametrize("order, counted", [((1, 3, 2, 4), 4), ((1, 2, 2, 3, 3, 4), 4), ((2, 1, 4, 3), 4)])
def test_late_and_duplicate_points_are_not_counted(order, counted):
    """The collector's queue to the bridge is at-least-once and drains with 2 consumers after an outage: points
    arrive twice and out of order. Value v at time 10*v s (start 5 s): only the newest counts."""
    agg = Aggregator(CoreConfig(), start_ns=0, process_start_ns=0)
    spent = 0.0
    for v in order:
        agg.add_metrics([cost(float(v), v * 10 * S, start=5 * S)])
        spent += agg.flush(v * 10 * S).signals.ai_cost_usd
    assert spent == counted


def test_late_point_of_a_previous_start_is_dropped_and_a_new_start_is_a_reset():
    state = MetricState(process_start_ns=0)
    totals = []
    for start, t, v in ((5, 10, 8.0), (20, 30, 2.0), (5, 15, 9.0), (20, 40, 6.0)):  # (5, 15): late, old start
        state.add(
            [
                r.MetricPoint(
                    "reqs",
                    r.SUM,
                    temporality=r.CUMULATIVE,
                    monotonic=True,
                    value=v,
                    start_time_ns=start * S,
                    time_ns=t * S,
                )
            ]
        )
        row: dict = {}
        state.flush(1.0, row)
        totals.append(row["reqs/total"])
    assert totals == [8, 10, 10, 14]


def test_same_start_decrease_is_ignored_with_one_warning(caplog):
    """A counter can't decrease without a new start time (two writers with one stream identity): ignored, the
    higher value stays the reference, so the other writer's lower values add nothing."""
    state = MetricState(process_start_ns=0)
    deltas = []
    for step, v in enumerate((100, 10, 101, 11, 103, 12), start=1):
        state.add([reqs(float(v), step, "/a")])
        deltas.append(state.sum_deltas["reqs"])
        state.flush(1.0, {})
    assert deltas == [100, 0, 1, 0, 2, 0]
    assert len([m for m in caplog.messages if "reqs decreased without a new start time" in m]) == 1


def test_without_a_start_time_a_drop_is_a_reset():
    state = MetricState(process_start_ns=0)
    deltas = []
    for step, v in enumerate((50, 60, 4, 9), start=1):
        state.add([reqs(float(v), step, "/a", start=0)])
        deltas.append(state.sum_deltas["reqs"])
        state.flush(1.0, {})
    assert deltas == [0, 10, 4, 5]  # the first point: a baseline (no start time: cannot tell it is new)


def test_cumulative_histogram_late_point_and_same_start_decrease_are_dropped():
    def hist(count, t):
        return r.MetricPoint(
            "lat",
            r.HISTOGRAM,
            temporality=r.CUMULATIVE,
            start_time_ns=5 * S,
            time_ns=t * S,
            count=count,
            sum=count * 0.1,
            bounds=(0.1, 1.0),
            bucket_counts=(count, 0, 0),
        )

    state = MetricState(process_start_ns=0)
    counts = []
    for count, t in ((10, 10), (30, 30), (20, 20), (30, 30), (25, 40), (45, 50)):
        state.add([hist(count, t)])
        row: dict = {}
        state.flush(1.0, row)
        counts.append(row.get("lat/count", 0))
    assert counts == [10, 20, 0, 0, 0, 15]


def test_up_down_counter_total_is_its_level():
    """UpDownCounters are always cumulative and their value is a level (db.client.connections.usage): the first
    point counts in full even if the stream started before us (cumulativetodelta converts only monotonic sums), so
    the total is the current level; deltas are level changes of either sign, also across a new start time."""

    def usage(v, t, start=5 * S, pid=1):
        return r.MetricPoint(
            "db.client.connections.usage",
            r.SUM,
            start_time_ns=start,
            time_ns=t * S,
            temporality=r.CUMULATIVE,
            monotonic=False,
            value=v,
            resource={"process.pid": pid},
        )

    state = MetricState(process_start_ns=100 * S)  # the bridge started after the app
    rows = []
    for points in (
        [usage(3.0, 110)],
        [usage(1.0, 170)],
        [usage(1.0, 175), usage(4.0, 160)],  # late: dropped
        [usage(2.0, 230, start=200 * S), usage(5.0, 231, pid=2)],
    ):  # restart (level 2); a second pid
        state.add(points)
        row: dict = {}
        state.flush(60, row)
        rows.append((row["db.client.connections.usage/delta"], row["db.client.connections.usage/total"]))
    assert rows == [(3, 3), (-2, 1), (0, 1), (6, 7)]


def test_eviction_warning_goes_through_the_aggregator_not_the_log():
    agg = Aggregator(CoreConfig(), start_ns=0, process_start_ns=0)
    agg.metrics.streams.max_streams = 1
    agg.add_metrics([cost(1.0, 2 * S, start=S, feature=f) for f in ("a", "b", "c")])
    warnings = agg.take_warnings()
    assert [w[1].split(":")[0] for w in warnings] == ["more than %d cumulative metric streams"]
    log_warnings(warnings)  # logs (does not raise) once the caller's lock is released
