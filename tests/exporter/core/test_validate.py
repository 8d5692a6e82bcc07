"""The core's boundary: each invalid record is rejected alone with its reason counted in the row, the rest of the
batch is aggregated, and an interval that cannot be closed is dropped without silencing the next one."""

from __future__ import annotations

import math

import pytest

from otel_wandb import records as r
from otel_wandb.core import Aggregator, CoreConfig, label

S = 1_000_000_000


def exp_point(**kw) -> r.MetricPoint:
    base = dict(
        name="lat",
        kind=r.EXP_HISTOGRAM,
        temporality=r.DELTA,
        time_ns=S,
        count=3,
        sum=1.5,
        scale=3,
        positive_offset=0,
        positive_counts=(1, 2),
    )
    return r.MetricPoint(**{**base, **kw})


INVALID = [
    (exp_point(scale=20, positive_offset=2**31 - 1, positive_counts=(1,), count=1), "offset"),
    (exp_point(scale=-10), "scale"),
    (exp_point(scale=21), "scale"),
    (exp_point(count=2**64 - 1), "count"),
    (exp_point(count=4), "buckets"),  # 1 + 2 buckets, count 4
    (exp_point(sum=math.nan), "sum"),
    (exp_point(min=math.inf), "sum"),
    (
        r.MetricPoint("h", r.HISTOGRAM, temporality=r.DELTA, count=3, sum=1.0, bounds=(0.1, 0.5), bucket_counts=(1, 2)),
        "buckets",
    ),
    (
        r.MetricPoint(
            "h", r.HISTOGRAM, temporality=r.DELTA, count=3, sum=1.0, bounds=(0.5, 0.1), bucket_counts=(1, 1, 1)
        ),
        "bounds",
    ),
    (r.MetricPoint("g", r.GAUGE, value=math.nan), "value"),
    (r.MetricPoint("s", r.SUM, temporality=r.DELTA, monotonic=True, value=math.inf), "value"),
    (r.MetricPoint("bad\x00name", r.SUM, value=1.0), "name"),
    (r.MetricPoint("x" * 300, r.SUM, value=1.0), "name"),
    (r.MetricPoint("s", r.SUM, value=1.0, attributes={"k\x1b[31m": 1}), "attribute_key"),
    (r.MetricPoint("s", r.SUM, value=1.0, time_ns=-1), "time"),
    (r.MetricPoint("s", "summary", value=1.0), "kind"),
]


@pytest.mark.parametrize("point, reason", INVALID, ids=[f"{i}-{reason}" for i, (_, reason) in enumerate(INVALID)])
def test_each_invalid_point_is_rejected_alone_and_counted(point, reason):
    agg = Aggregator(CoreConfig(), start_ns=0)
    valid = r.MetricPoint("ok.total", r.SUM, temporality=r.DELTA, monotonic=True, value=2.0, time_ns=S)
    assert agg.add_metrics([point, valid]) == 1
    row = agg.flush(S).row
    assert row[f"rejected/metric_points@reason={reason}"] == 1 and row["rejected/metric_points"] == 1
    assert row["ok.total/total"] == 2.0
    assert all(math.isfinite(v) for v in row.values() if isinstance(v, float))
    assert all(k.isprintable() for k in row)
    assert agg.flush(2 * S).row.get("rejected/metric_points") is None  # per interval


def test_a_name_reused_with_another_kind_is_rejected_not_silently_dropped():
    agg = Aggregator(CoreConfig(), start_ns=0)
    assert agg.add_metrics([r.MetricPoint("m", r.SUM, temporality=r.DELTA, monotonic=True, value=1.0)]) == 0
    assert agg.add_metrics([r.MetricPoint("m", r.GAUGE, value=5.0)]) == 1
    row = agg.flush(S).row
    assert row["rejected/metric_points@reason=type_conflict"] == 1 and "m/last" not in row and row["m/total"] == 1.0
    assert any("arrives as gauge after sum" in msg % args for _, msg, args in agg.take_warnings())


def test_labels_that_become_keys_are_cleaned_not_dropped():
    agg = Aggregator(CoreConfig(), start_ns=0)
    span = r.SpanRecord(
        "GET",
        r.SERVER,
        0,
        10**6,
        "a" * 32,
        "b" * 16,
        attributes={"http.route": "/x\x00\x1b[2J" + "y" * 500, "http.request.method": "GET"},
    )
    assert agg.add_spans([span]) == 0
    row = agg.flush(S).row
    routes = [k for k in row if k.startswith("http/requests@http.route=")]
    assert row["http/requests"] == 1 and len(routes) == 1 and routes[0].isprintable()
    assert routes[0] == "http/requests@http.route=" + label("/x\x00\x1b[2J" + "y" * 500)


def test_a_stream_that_cannot_be_summarized_is_dropped_and_the_next_interval_is_written():
    agg = Aggregator(CoreConfig(), start_ns=0)
    agg.add_metrics([exp_point(), r.MetricPoint("ok.total", r.SUM, temporality=r.DELTA, monotonic=True, value=1.0)])
    acc = agg.metrics._acc[("lat", "")]  # noqa: SLF001 - break one stream's state as a bug would

    class Broken:  # what a histogram whose arithmetic overflows looks like to the summary
        count, sum = 3, 1.5

        def quantile(self, q: float) -> float:
            raise OverflowError("math range error")

    acc.hist = Broken()
    row = agg.flush(S).row
    assert "lat/p95" not in row and row["ok.total/total"] == 1.0
    assert row["rejected/metric_points@reason=summary"] == 1
    agg.add_metrics([exp_point()])
    assert agg.flush(2 * S).row["lat/count"] == 3  # the next interval is written


def test_an_interval_that_cannot_be_closed_still_resets(monkeypatch):
    agg = Aggregator(CoreConfig(), start_ns=0)
    agg.add_spans([r.SpanRecord("GET", r.SERVER, 0, 10**6, "a" * 32, "b" * 16, attributes={"http.route": "/a"})])
    monkeypatch.setattr(agg.ai, "flush", lambda row, totals: 1 / 0)
    row = agg.flush(S).row
    assert row["interval/time"] == 1.0 and "http/requests" not in row
    monkeypatch.undo()
    agg.add_spans([r.SpanRecord("GET", r.SERVER, S, S + 10**6, "c" * 32, "d" * 16, attributes={"http.route": "/a"})])
    row = agg.flush(2 * S).row
    assert row["http/requests"] == 1 and row["rejected/intervals@reason=ZeroDivisionError"] == 1
