"""Metric points -> interval rows: histogram quantiles, sums (delta/cumulative/reset), gauges, breakdowns, caps."""

from __future__ import annotations

import logging
import random

import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from otel_wandb import records as r
from otel_wandb.core import Aggregator, CoreConfig, log_warnings
from otel_wandb.core._stats import ExplicitHist
from otel_wandb.sdk._convert import metric_records
from tests.support import exact

S = 1_000_000_000


def sdk_points(values, name="lat"):
    """Record values through the real SDK (base2 exponential aggregation) and convert the collected points."""
    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    provider = MeterProvider(
        metric_readers=[reader], views=[View(instrument_name="*", aggregation=ExponentialBucketHistogramAggregation())]
    )
    hist = provider.get_meter("t").create_histogram(name, unit="s")
    for v in values:
        hist.record(v)
    out = list(metric_records(reader.get_metrics_data()))
    provider.shutdown()
    return out


@pytest.mark.parametrize("dist", ["lognormal", "uniform", "bimodal"])
def test_exponential_histogram_p95_within_3_percent_of_exact(dist):
    rng = random.Random(7)
    gen = {
        "lognormal": lambda: rng.lognormvariate(-3, 1.0),
        "uniform": lambda: rng.uniform(0.01, 2.0),
        "bimodal": lambda: rng.choice([rng.gauss(0.05, 0.005), rng.gauss(0.8, 0.05)]),
    }[dist]
    values = [abs(gen()) + 1e-4 for _ in range(20_000)]
    agg = Aggregator(CoreConfig(), start_ns=0)
    points = sdk_points(values)
    assert points[0].kind == r.EXP_HISTOGRAM
    agg.add_metrics(points)
    row = agg.flush(10 * S).row
    assert row["lat/count"] == 20_000
    assert row["lat/rate"] == pytest.approx(2000)
    assert row["lat/mean"] == pytest.approx(sum(values) / len(values), rel=1e-9)
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert row[f"lat/{label}"] == pytest.approx(exact(values, q), rel=0.03), label


def test_cumulative_exponential_points_are_diffed_per_interval():
    rng = random.Random(3)
    first = [rng.lognormvariate(-4, 0.5) for _ in range(5000)]
    second = [rng.lognormvariate(-1, 0.3) for _ in range(3000)]  # a slower second interval
    agg = Aggregator(CoreConfig(), start_ns=0)
    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.CUMULATIVE})
    provider = MeterProvider(
        metric_readers=[reader], views=[View(instrument_name="*", aggregation=ExponentialBucketHistogramAggregation())]
    )
    h = provider.get_meter("t").create_histogram("lat")
    for v in first:
        h.record(v)
    agg.add_metrics(list(metric_records(reader.get_metrics_data())))
    row1 = agg.flush(1 * S).row
    for v in second:
        h.record(v)
    pts = list(metric_records(reader.get_metrics_data()))
    assert pts[0].temporality == r.CUMULATIVE and pts[0].count == 8000
    agg.add_metrics(pts)
    row2 = agg.flush(2 * S).row
    assert row1["lat/count"] == 5000 and row2["lat/count"] == 3000
    assert row2["lat/p95"] == pytest.approx(exact(second, 0.95), rel=0.05)
    assert row2["lat/mean"] == pytest.approx(sum(second) / 3000, rel=1e-6)
    provider.shutdown()


def test_explicit_histogram_linear_interpolation_clamped_by_min_max():
    p = r.MetricPoint(
        "d",
        r.HISTOGRAM,
        count=10,
        sum=30,
        min=1.0,
        max=9.0,
        bounds=(0, 5, 10),
        bucket_counts=(0, 5, 5, 0),
        temporality=r.DELTA,
    )
    h = ExplicitHist.from_point(p)
    # nearest rank ceil(q*n); the k-th of c values of a bucket sits at k/(c+1) of it (same rule as exponential)
    assert h.quantile(0.5) == pytest.approx(1 + 4 * 5 / 6)  # rank 5: the 5th of 5 in (1, 5]
    assert h.quantile(0.75) == pytest.approx(7.0)  # rank 8: the 3rd of 5 in (5, 9], halfway
    assert h.quantile(0.99) <= 9.0
    assert h.quantile(0.01) >= 1.0


def sum_point(v, start=1, temporality=r.CUMULATIVE, attrs=None, name="reqs"):
    return r.MetricPoint(
        name, r.SUM, value=v, start_time_ns=start, temporality=temporality, monotonic=True, attributes=attrs or {}
    )


def test_cumulative_sum_deltas_totals_and_resets():
    agg = Aggregator(CoreConfig(), start_ns=0, process_start_ns=0)  # streams started after us: first point counts
    rows = []
    for pts in ([sum_point(10)], [sum_point(15), sum_point(25)], [sum_point(3)], [sum_point(5, start=2)]):
        agg.add_metrics(pts)
        rows.append(agg.flush((len(rows) + 1) * S).row)
    # first point counts whole; 10->25 = 15; a drop to 3 with the same start time is no reset (a counter resets
    # by a new start time): ignored; new start_time = reset (5)
    assert [x["reqs/delta"] for x in rows] == [10, 15, 0, 5]
    assert [x["reqs/total"] for x in rows] == [10, 25, 25, 30]


def test_two_workers_cumulative_streams_with_equal_attributes_never_collide():
    """gunicorn workers send equal metric attributes; only the resource (app.worker.id) tells their streams apart.
    Interleaved, worker 1's smaller counter must not look like a reset of worker 0's (nor its histogram)."""
    attrs = {"http.route": "/api/entries"}

    def points(worker, value, count):
        res = {"service.name": "ai-diary", "app.worker.id": worker, "service.instance.id": f"h-w{worker}"}
        pt = sum_point(value, attrs=attrs)
        pt.resource = res
        hist = r.MetricPoint(
            "lat",
            r.HISTOGRAM,
            attributes=attrs,
            resource=res,
            start_time_ns=1,
            temporality=r.CUMULATIVE,
            count=count,
            sum=count * 0.01,
            bounds=(0.1,),
            bucket_counts=(count, 0),
        )
        return [pt, hist]

    agg = Aggregator(CoreConfig(), start_ns=0, process_start_ns=0)
    rows = []
    for step in ((100, 10, 3, 1), (130, 12, 5, 2), (160, 20, 9, 4)):  # (w0 counter, w0 hist, w1 counter, w1 hist)
        agg.add_metrics(points(0, step[0], step[1]) + points(1, step[2], step[3]))
        rows.append(agg.flush((len(rows) + 1) * S).row)
    assert [x["reqs/delta"] for x in rows] == [103, 32, 34]
    assert [x["reqs/delta@http.route=/api/entries"] for x in rows] == [103, 32, 34]
    assert rows[-1]["reqs/total"] == 160 + 9
    assert [x["lat/count"] for x in rows] == [11, 3, 10]


def test_delta_sum_gauge_and_breakdowns_with_status_class():
    agg = Aggregator(CoreConfig(), start_ns=0)
    agg.add_metrics(
        [
            sum_point(2, temporality=r.DELTA, attrs={"http.route": "/a", "http.response.status_code": 200}),
            sum_point(3, temporality=r.DELTA, attrs={"http.route": "/b", "http.response.status_code": 503}),
            sum_point(1, temporality=r.DELTA, attrs={"http.route": "/b", "user.id": "u1"}),
            r.MetricPoint("queue", r.GAUGE, value=4.0),
            r.MetricPoint("queue", r.GAUGE, value=7.0),
        ]
    )
    row = agg.flush(S).row
    assert row["reqs/delta"] == 6
    assert row["reqs/delta@http.route=/a"] == 2 and row["reqs/delta@http.route=/b"] == 4
    assert row["reqs/delta@status_class=2xx"] == 2 and row["reqs/delta@status_class=5xx"] == 3
    assert not any("user.id" in k for k in row), "attributes outside the allow-list never become keys"
    assert row["queue/last"] == 7.0


def test_cardinality_cap_overflow_bucket_and_one_warning(caplog):
    agg = Aggregator(CoreConfig(max_series=5), start_ns=0)
    for _ in range(2):
        agg.add_metrics([sum_point(1, temporality=r.DELTA, attrs={"http.route": f"/r{i}"}) for i in range(20)])
    assert not caplog.messages, "collected, logged by the caller after its lock is released"
    with caplog.at_level(logging.WARNING, logger="otel_wandb.core._metrics"):
        log_warnings(agg.take_warnings())
    row = agg.flush(S).row
    routes = [k for k in row if k.startswith("reqs/delta@http.route=")]
    assert len(routes) == 6  # 5 series + __overflow__
    assert row["reqs/delta@http.route=__overflow__"] == 30
    assert row["reqs/delta"] == 40
    assert len([m for m in caplog.messages if "reqs" in m]) == 1


def test_malformed_point_is_dropped_not_raised():
    agg = Aggregator(CoreConfig(), start_ns=0)
    bad = r.MetricPoint("x", r.HISTOGRAM, count=1, bounds=(1,), bucket_counts=None)  # type: ignore[arg-type]
    agg.add_metrics([bad, sum_point(1, temporality=r.DELTA)])
    assert agg.flush(S).row["reqs/delta"] == 1


def test_number_of_metric_names_is_capped():
    agg = Aggregator(CoreConfig(), start_ns=0)
    agg.metrics.max_metrics = 3
    agg.add_metrics([sum_point(1, temporality=r.DELTA, name=f"m{i}") for i in range(5)])
    row = agg.flush(S).row
    assert [k for k in row if k.endswith("/delta")] == ["m0/delta", "m1/delta", "m2/delta"]


def test_one_source_of_truth_the_duplicate_request_views_are_not_written_next_to_the_spans():
    """http.server.request.duration (and the GenAI duration and token metrics) count the requests http/* and ai/*
    hold: never written as metric keys, in any order of arrival."""
    dup = r.MetricPoint(
        "http.server.request.duration",
        r.HISTOGRAM,
        "s",
        {"http.route": "/a"},
        temporality=r.DELTA,
        count=2,
        sum=0.3,
        bounds=(0.1, 1.0),
        bucket_counts=(1, 1, 0),
    )
    first = Aggregator(CoreConfig(), start_ns=0)
    first.add_metrics([dup])  # before any span
    assert not [k for k in first.flush(S).row if k.startswith("http.server.request.duration")]
    both = Aggregator(CoreConfig(), start_ns=0)
    both.add_spans([r.SpanRecord("GET /a", r.SERVER, 0, 10**8, "a" * 32, "b" * 16, attributes={"http.route": "/a"})])
    both.add_metrics([dup])
    row = both.flush(S).row
    assert row["http/requests"] == 1 and not [k for k in row if k.startswith("http.server.request.duration")]
