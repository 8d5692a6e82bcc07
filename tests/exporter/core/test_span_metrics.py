"""Behind gateway collectors the requests come from span_metrics streams: several gateways x several service
instances add up to exact counts, percentiles come from the merged exponential histograms, the keys are the ones
the spans make elsewhere, and the (tail-sampled) spans make the error tables but never the counts."""

from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from otel_wandb import records as r
from otel_wandb.core import Aggregator, CoreConfig
from otel_wandb.sdk import metric_records
from tests.support import exact

S = 1_000_000_000
ROUTES = ("/api/entries", "/api/entries/<entry_id>", "/api/users")


class Gateway:
    """One gateway's span_metrics connector for one app instance: cumulative exponential histograms per
    (route, method, status), through the real SDK aggregation (the connector's is the same data model)."""

    def __init__(self, gateway: str, instance: str, worker: int) -> None:
        self.reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.CUMULATIVE})
        view = View(instrument_name="*", aggregation=ExponentialBucketHistogramAggregation(max_size=320))
        self.provider = MeterProvider(metric_readers=[self.reader], views=[view])
        self.hist = self.provider.get_meter("spanmetricsconnector").create_histogram(
            "span_metrics.http.server.duration", unit="s"
        )
        self.gateway, self.instance, self.worker = gateway, instance, worker

    def request(self, route: str, seconds: float, status: int) -> None:
        self.hist.record(
            seconds,
            {
                "http.route": route,
                "http.request.method": "GET",
                "http.response.status_code": status,
                "collector.instance.id": self.gateway,
                "status.code": "STATUS_CODE_ERROR" if status >= 500 else "STATUS_CODE_UNSET",
            },
        )

    def points(self) -> list[r.MetricPoint]:
        out = []
        for p in metric_records(self.reader.get_metrics_data()):
            p.resource = {
                "service.name": "ai-diary",
                "service.instance.id": self.instance,
                "app.worker.id": self.worker,
            }
            out.append(p)
        return out


def test_two_gateways_and_four_instances_add_up_exactly():
    rng = random.Random(7)
    gateways = [Gateway(f"gw-{g}", f"host-{i}", i % 2) for g in (1, 2) for i in range(4)]
    agg = Aggregator(CoreConfig(), start_ns=0)
    sent: dict[str, list[float]] = {r_: [] for r_ in ROUTES}
    errors = 0
    for interval in (1, 2):
        for _ in range(2000):
            gw, route = rng.choice(gateways), rng.choice(ROUTES)
            seconds = rng.lognormvariate(-3, 0.8)
            status = 500 if rng.random() < 0.04 else 200
            errors += status == 500
            gw.request(route, seconds, status)
            sent[route].append(seconds * 1000)
        points = [p for gw in gateways for p in gw.points()]
        rng.shuffle(points)
        agg.add_metrics(points + points[:10])  # at-least-once: a few duplicates from a retried queue
        row = agg.flush(interval * S).row
    assert row["http/requests_total"] == sum(len(v) for v in sent.values()) == 4000
    assert row["http/errors_total"] == errors
    assert row["http/requests"] == 2000  # the second interval's own requests: the cumulative points were diffed
    assert row["http/requests@worker=0"] + row["http/requests@worker=1"] == 2000
    assert "http.server.request.duration/count" not in row and not [k for k in row if k.startswith("span_metrics.")]


def test_percentiles_per_route_from_merged_histograms_are_within_3_percent():
    rng = random.Random(3)
    gateways = [Gateway(f"gw-{g}", f"host-{i}", i) for g in (1, 2) for i in range(4)]
    agg = Aggregator(CoreConfig(), start_ns=0)
    sent: dict[str, list[float]] = {r_: [] for r_ in ROUTES}
    for _ in range(6000):
        gw, route = rng.choice(gateways), rng.choice(ROUTES)
        seconds = rng.lognormvariate(-2.5, 0.9)
        gw.request(route, seconds, 200)
        sent[route].append(seconds * 1000)
    agg.add_metrics([p for gw in gateways for p in gw.points()])
    res = agg.flush(S)
    row = res.row
    for route, values in sent.items():
        assert row[f"http/requests@http.route={route}"] == len(values)
        assert row[f"http/p95_ms@http.route={route}"] == pytest.approx(exact(values, 0.95), rel=0.03)
    everything = [v for values in sent.values() for v in values]
    assert row["http/p95_ms"] == pytest.approx(exact(everything, 0.95), rel=0.03)
    # the alert rules see the same requests: counts exact, a representative sample for windowed percentiles
    assert res.signals.requests == 6000 and res.signals.p95_ms == row["http/p95_ms"]
    sample = sorted(res.signals.latency_ms)
    assert sample[int(0.95 * len(sample))] == pytest.approx(exact(everything, 0.95), rel=0.05)


def test_sampled_spans_make_the_error_tables_not_the_counts():
    gw = Gateway("gw-1", "host-0", 0)
    for i in range(50):
        gw.request("/api/entries", 0.02, 500 if i < 5 else 200)
    agg = Aggregator(CoreConfig(), start_ns=0)
    agg.add_metrics(gw.points())
    # tail sampling kept the five error traces and one baseline trace
    spans = [
        r.SpanRecord(
            "POST /api/entries",
            r.SERVER,
            0,
            20_000_000,
            f"{i:032x}",
            f"{i:016x}",
            is_error=i < 5,
            attributes={"http.route": "/api/entries", "http.response.status_code": 500 if i < 5 else 200},
        )
        for i in range(6)
    ]
    agg.add_spans(spans)
    res = agg.flush(S)
    assert res.row["http/requests"] == 50 and res.row["http/errors"] == 5  # from span_metrics, not 6 spans
    assert res.row["errors/occurrences"] == 5 and len(res.tables["recent_errors"].rows) == 5
    assert res.row["http/requests@status_class=5xx"] == 5


def test_ai_section_from_span_metrics_tokens_and_the_cost_metric():
    agg = Aggregator(CoreConfig(request_source="span_metrics"), start_ns=0)
    agg.add_metrics(
        [
            r.MetricPoint(
                "span_metrics.gen_ai.client.duration",
                r.EXP_HISTOGRAM,
                "s",
                {"gen_ai.request.model": "gpt-4o-mini", "app.feature": "mood"},
                temporality=r.DELTA,
                time_ns=S,
                count=4,
                sum=1.0,
                scale=2,
                positive_offset=-8,
                positive_counts=(1, 2, 1),
            ),
            r.MetricPoint(
                "gen_ai.client.token.usage",
                r.HISTOGRAM,
                "{token}",
                {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.token.type": "input"},
                temporality=r.DELTA,
                time_ns=S,
                count=4,
                sum=4000.0,
                bounds=(100.0, 10_000.0),
                bucket_counts=(0, 4, 0),
            ),
            r.MetricPoint(
                "app.ai.cost",
                r.SUM,
                "USD",
                {"gen_ai.request.model": "gpt-4o-mini", "app.feature": "mood"},
                temporality=r.DELTA,
                monotonic=True,
                time_ns=S,
                value=0.25,
            ),
        ]
    )
    row = agg.flush(S).row
    assert row["ai/calls"] == 4 and row["ai/calls@app.feature=mood"] == 4
    assert row["ai/input_tokens"] == 4000 and row["ai/input_tokens@gen_ai.request.model=gpt-4o-mini"] == 4000
    assert row["ai/cost_usd"] == pytest.approx(0.25) and row["ai/cost_usd@app.feature=mood"] == pytest.approx(0.25)
    assert row["ai/calls_total"] == 4 and "gen_ai.client.token.usage/count" not in row
