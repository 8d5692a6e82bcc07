"""Cumulative metric streams: the first point of an unseen stream (collector ``initial_value: auto``), a restart
of the process that diffs them (the bridge), and eviction past ``max_streams`` -- never counting a total twice."""
from __future__ import annotations

import pytest

from exporters import records as r
from exporters.core import Aggregator, CoreConfig, log_warnings
from exporters.metricstate import MetricState

S = 1_000_000_000
APP_START = 1_700_000_000 * S  # the app's process start: its cumulative streams' start_time


def cost(value, t, start=APP_START, feature="summarize"):
    return r.MetricPoint("app.ai.cost", r.SUM, unit="USD", temporality=r.CUMULATIVE, monotonic=True, value=value,
                         start_time_ns=start, time_ns=t, attributes={"app.feature": feature})


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
    agg.add_metrics([cost(7.0, APP_START + 30 * S, start=0, feature="a"),
                     cost(9.0, APP_START + 30 * S, start=APP_START + 30 * S, feature="b")])
    assert agg.flush(APP_START + 30 * S).row["app.ai.cost/delta"] == 0


def test_first_cumulative_histogram_point_of_an_old_stream_is_a_baseline():
    def hist(count, start):
        return r.MetricPoint("lat", r.HISTOGRAM, temporality=r.CUMULATIVE, start_time_ns=start, time_ns=APP_START,
                             count=count, sum=count * 0.1, bounds=(0.1, 1.0), bucket_counts=(count, 0, 0))

    agg = Aggregator(CoreConfig(), start_ns=0, process_start_ns=APP_START)
    agg.add_metrics([hist(500, start=APP_START - 3600 * S)])
    assert "lat/count" not in agg.flush(1).row
    agg.add_metrics([hist(530, start=APP_START - 3600 * S)])
    assert agg.flush(2).row["lat/count"] == 30


def test_evicted_stream_that_comes_back_is_not_counted_twice(caplog):
    """max_streams=2 with three live streams, +100 each per interval: an evicted stream that comes back must not
    add its whole cumulative value again (it was 300, 600, 900...); one warning names the cap."""
    state = MetricState(max_streams=2, process_start_ns=0)
    start = 5 * S
    deltas = []
    for step in range(1, 5):
        state.add([r.MetricPoint("reqs", r.SUM, temporality=r.CUMULATIVE, monotonic=True, value=100.0 * step,
                                 start_time_ns=start, time_ns=start + step * S, attributes={"route": f"/{k}"})
                   for k in range(3)])
        deltas.append(state.sum_deltas["reqs"])
        state.flush(1.0, {})
    assert deltas[0] == 300, "new streams (started after us) count in full"
    assert all(0 <= d <= 300 for d in deltas), deltas
    assert state.evicted > 0 and len(state._prev) == 2
    assert len([m for m in caplog.messages if "more than 2 cumulative metric streams" in m]) == 1


def test_eviction_warning_goes_through_the_aggregator_not_the_log():
    agg = Aggregator(CoreConfig(), start_ns=0, process_start_ns=0)
    agg.metrics.max_streams = 1
    agg.add_metrics([cost(1.0, 2 * S, start=S, feature=f) for f in ("a", "b", "c")])
    warnings = agg.take_warnings()
    assert [w[1].split(":")[0] for w in warnings] == ["more than %d cumulative metric streams"]
    log_warnings(warnings)  # logs (does not raise) once the caller's lock is released
