"""Histogram quantiles at realistic small counts against the exact nearest-rank value, and merges of streams
whose bucket layouts differ (counts must stay exact)."""

from __future__ import annotations

import math
import random

import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)

from otel_wandb import records as r
from otel_wandb.core import Aggregator, CoreConfig
from otel_wandb.core._stats import ExpHist, ExplicitHist
from otel_wandb.sdk import EXP_HISTOGRAM_MAX_SIZE
from otel_wandb.sdk._convert import metric_records
from tests.support import exact

S = 1_000_000_000


def points(values, aggregation, attrs=None):
    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    provider = MeterProvider(metric_readers=[reader], views=[View(instrument_name="*", aggregation=aggregation)])
    h = provider.get_meter("t").create_histogram("lat", unit="s")
    for v in values:
        h.record(v, attrs)
    out = list(metric_records(reader.get_metrics_data()))
    provider.shutdown()
    return out


@pytest.mark.parametrize("n", [100, 1000])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_exponential_p95_at_small_counts_within_3_percent(n, sigma):
    """~100 requests per route per interval is typical. Through the real SDK with our exporter's max_size, p95 is
    within 3 % (the issue's target) of the exact nearest-rank p95, and always within one bucket width
    (base - 1), the hard bound of any estimate inside the right bucket. Measured worst over these seeds: 2.0 %."""
    worst = 0.0
    for seed in range(12):
        rng = random.Random(seed * 1000 + n)
        values = [rng.lognormvariate(-3, sigma) for _ in range(n)]
        (p,) = points(values, ExponentialBucketHistogramAggregation(max_size=EXP_HISTOGRAM_MAX_SIZE))
        assert p.kind == r.EXP_HISTOGRAM
        agg = Aggregator(CoreConfig(), start_ns=0)
        agg.add_metrics([p])
        got, want = agg.flush(S).row["lat/p95"], exact(values, 0.95)
        err = abs(got / want - 1)
        assert err < 2 ** (2.0**-p.scale) - 1, (seed, p.scale)
        worst = max(worst, err)
    assert worst <= 0.03


def test_a_rank_alone_in_its_bucket_gets_the_log_midpoint_bound():
    """With one value in the bucket nothing tells where it is: the estimate is the bucket's log-midpoint and the
    error is at most sqrt(base) - 1 wherever the value sits (the best any estimator can guarantee)."""
    scale = 3
    base = 2 ** (2.0**-scale)
    for edge in (1.0000001, base):  # the value at either edge of bucket 0 = (1, base]
        h = ExpHist(scale, 0, {-5: 19, 0: 1}, {}, 20, 0.0, 0.5, 50.0)  # 19 small values, then ours, rank 20
        est = h.quantile(0.99)
        assert est == pytest.approx(math.sqrt(base))
        assert abs(est / edge - 1) <= math.sqrt(base) - 1 + 1e-9


def test_explicit_buckets_use_the_same_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # exact p95 = 95 (nearest rank 95)
    (p,) = points(values, ExplicitBucketHistogramAggregation(boundaries=tuple(range(0, 101, 10))))
    h = ExplicitHist.from_point(p)
    assert h.quantile(0.95) == pytest.approx(90 + 10 * 5 / 11)  # 5th of 10 values in (90, 100]
    assert abs(h.quantile(0.95) - exact(values, 0.95)) < 10, "within its bucket"
    assert h.quantile(0.5) == pytest.approx(40 + 10 * 10 / 11)


def explicit(bounds, counts, lo, hi):
    return r.MetricPoint(
        "lat",
        r.HISTOGRAM,
        temporality=r.DELTA,
        bounds=bounds,
        bucket_counts=counts,
        count=sum(counts),
        sum=0.0,
        min=lo,
        max=hi,
        attributes={"http.route": "/x"},
    )


def test_streams_with_different_explicit_layouts_merge_with_exact_counts():
    a = explicit((0.1, 0.5, 1.0), (60, 30, 10, 0), 0.01, 0.9)  # 100 points
    b = explicit((0.5, 2.0), (4, 5, 1), 0.2, 3.0)  # 10 points, another layout (a view changed in one worker)
    agg = Aggregator(CoreConfig(), start_ns=0)
    agg.add_metrics([a, b])
    row = agg.flush(S).row
    assert row["lat/count"] == 110 and row["lat/count@http.route=/x"] == 110
    merged = ExplicitHist.from_point(a).merged(ExplicitHist.from_point(b))
    assert merged.bounds == (0.5,) and merged.counts == [94, 16]  # the shared bound
    assert sum(merged.counts) == 110 and merged.min == 0.01 and merged.max == 3.0
    assert 0.5 <= merged.quantile(0.95) <= 3.0


def test_exponential_and_explicit_streams_of_one_metric_merge_with_exact_counts():
    rng = random.Random(4)
    values = [rng.lognormvariate(-3, 1) for _ in range(200)]
    (e,) = points(values, ExponentialBucketHistogramAggregation())
    x = explicit((0.05, 0.5), (5, 4, 1), 0.01, 0.7)
    agg = Aggregator(CoreConfig(), start_ns=0)
    agg.add_metrics([e, x])
    row = agg.flush(S).row
    assert row["lat/count"] == 210
    assert min([*values, 0.01]) <= row["lat/p50"] <= max([*values, 0.7])
    as_explicit = ExpHist.from_point(e).as_explicit()
    assert sum(as_explicit.counts) == 200
    assert as_explicit.quantile(0.95) == pytest.approx(exact(values, 0.95), rel=0.05)


def test_exponential_streams_at_different_scales_merge_on_the_coarser_scale():
    rng = random.Random(9)
    narrow = [rng.uniform(0.1, 0.11) for _ in range(100)]  # fine scale
    wide = [rng.lognormvariate(-3, 2) for _ in range(10)]  # coarse scale
    (a,) = points(narrow, ExponentialBucketHistogramAggregation())
    (b,) = points(wide, ExponentialBucketHistogramAggregation())
    assert a.scale > b.scale
    h = ExpHist.from_point(a).merged(ExpHist.from_point(b))
    assert h.scale == b.scale and h.count == 110 and sum(h.pos.values()) + h.zero_count == 110
    assert h.quantile(0.5) == pytest.approx(exact(narrow + wide, 0.5), rel=2 ** (2.0**-b.scale) - 1)


def test_zeros_of_an_exponential_histogram_stay_zero_as_explicit_buckets():
    """The zero bucket becomes [~0, 0], not (previous edge, 0]: zeros never interpolate to negative values
    (the OTel SDK's histograms take no negative values: the point is built by hand, as another SDK may send it)."""
    values = [-3.0, -2.5, 0.0, 0.0, 1.2, 1.5, 1.8, 6.0]  # scale 0: -|v| in [-4, -2) x2, zeros x2, (1, 2] x3, (4, 8]
    p = r.MetricPoint(
        "lat",
        r.EXP_HISTOGRAM,
        temporality=r.DELTA,
        count=8,
        sum=sum(values),
        min=-3.0,
        max=6.0,
        scale=0,
        zero_count=2,
        positive_offset=0,
        positive_counts=(3, 0, 1),
        negative_offset=1,
        negative_counts=(2,),
    )
    h = ExpHist.from_point(p)
    e = h.as_explicit()
    assert sum(e.counts) == 8
    for q in (0.3, 0.5):  # nearest ranks 3 and 4: the zeros
        assert exact(values, q) == 0.0 and h.quantile(q) == 0.0 and e.quantile(q) == 0.0
    assert -4 <= e.quantile(0.25) < -2 and 1 < e.quantile(0.6) <= 2
    merged = ExplicitHist((-1e-300, 0.0, 10.0), [0, 0, 1, 0], 1, 5.0, 5.0, 5.0).merged(h)  # also via a merge
    assert merged.count == 9 and merged.quantile(0.4) == 0.0
