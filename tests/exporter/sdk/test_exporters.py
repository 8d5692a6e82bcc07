"""Real OpenTelemetry SDK providers -> our three exporters -> a real offline wandb run, read back from disk."""

from __future__ import annotations

import logging
import random
from importlib.metadata import entry_points

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_wandb import sdk
from otel_wandb.config import ExportConfig
from otel_wandb.core import CoreConfig
from otel_wandb.pipeline import Pipeline
from otel_wandb.pricing import PriceList
from otel_wandb.runfile import find_runs, read_run
from otel_wandb.sink import WandbSink
from tests.support import exact

MS = 1_000_000


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """Two export intervals of known traffic through real SDK providers into one real offline run."""
    wdir = tmp_path_factory.mktemp("wandb")
    sink = WandbSink(mode="offline", dir=str(wdir), project="test-exporters", config={"suite": "sdk"})
    pricing = PriceList.load(ExportConfig.from_env({}).pricing_path)
    pipe = Pipeline(sink, interval_s=3600, core_config=CoreConfig(pricing=pricing, max_error_rows=5))
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(sdk.WandbSpanExporter(pipeline=pipe)))
    reader = PeriodicExportingMetricReader(sdk.WandbMetricExporter(pipeline=pipe), export_interval_millis=3_600_000)
    mp = MeterProvider(metric_readers=[reader])
    lp = LoggerProvider()
    lp.add_log_record_processor(SimpleLogRecordProcessor(sdk.WandbLogExporter(pipeline=pipe)))
    log = logging.getLogger("test.sdk.app")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(logger_provider=lp))
    tracer = tp.get_tracer("test")
    hist = mp.get_meter("test").create_histogram("app.db.query.duration", unit="s")
    cost = mp.get_meter("test").create_counter("app.ai.cost", unit="USD")
    rng = random.Random(11)
    expected: dict = {"durations": [[], []], "hist": [], "hist1": []}
    t0 = 1_790_000_000 * 1_000_000_000
    for interval in (0, 1):
        n = 300 if interval == 0 else 120
        for i in range(n):
            ms = rng.lognormvariate(3, 0.7)
            expected["durations"][interval].append(ms)
            code = 500 if i % 30 == 0 else 200
            s = tracer.start_span(
                "GET /api/entries/<id>",
                kind=SpanKind.SERVER,
                start_time=t0,
                attributes={
                    "http.route": "/api/entries/<id>",
                    "http.request.method": "GET",
                    "http.response.status_code": code,
                },
            )
            if code == 500:
                s.record_exception(KeyError(f"entry {i} missing"))
                s.set_status(Status(StatusCode.ERROR))
            s.end(end_time=t0 + int(ms * MS))
            if interval == 0:
                hist.record(ms / 1000, {"http.route": "/api/entries/<id>", "http.response.status_code": code})
                expected["hist"].append(ms / 1000)
            else:  # a faster second interval: the run summary (max) of p95 is the first interval's
                hist.record(ms / 10_000, {"http.route": "/api/entries/<id>", "http.response.status_code": code})
                expected["hist1"].append(ms / 10_000)
        g = tracer.start_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            start_time=t0,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "app.feature": "summarize",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 100,
            },
        )
        g.end(end_time=t0 + 250 * MS)
        cost.add(0.01, {"gen_ai.request.model": "gpt-4o-mini", "app.feature": "summarize"})
        log.error("could not save entry %d", 12345 + interval)
        log.info("fine")
        mp.force_flush()
        pipe.force_flush(60)
    sink.alert("p95 latency high", "p95 above 800 ms", level="WARN", wait_duration=30)
    big = {"interval/time": 1.0, **{f"big/key_{i:05d}_" + "x" * 20: i for i in range(2500)}}  # > 32 KiB record
    sink.log(big)
    for provider in (mp, lp, tp):
        provider.shutdown()
    assert pipe.closed, "the last exporter to shut down closes the shared pipeline"
    runs = find_runs(wdir)
    assert len(runs) == 1
    return read_run(runs[0]), expected


def test_interval_rows_have_the_exact_counts(offline_run):
    run, _exp = offline_run
    rows = [h for h in run.history if "http/requests" in h]
    assert [h["http/requests"] for h in rows] == [300, 120]
    assert [h["http/errors"] for h in rows] == [10, 4]
    assert rows[1]["http/requests_total"] == 420
    assert rows[0]["http/errors@http.route=/api/entries/<id>"] == 10
    assert rows[0]["http/requests@status_class=5xx"] == 10


def test_span_p95_matches_exact_p95_of_the_same_durations(offline_run):
    run, exp = offline_run
    rows = [h for h in run.history if "http/requests" in h]
    for row, durs in zip(rows, exp["durations"]):
        assert row["http/p95_ms"] == pytest.approx(exact(durs, 0.95), rel=0.011)
        assert row["http/p50_ms@http.route=/api/entries/<id>"] == pytest.approx(exact(durs, 0.5), rel=0.011)
    assert run.summary["http/p95_ms"]["max"] == pytest.approx(max(h["http/p95_ms"] for h in rows))


def test_metric_histogram_and_cost_counter(offline_run):
    run, exp = offline_run
    row = run.history[0]
    name = "app.db.query.duration"
    assert row[f"{name}/count"] == 300
    assert row[f"{name}/p95"] == pytest.approx(exact(exp["hist"], 0.95), rel=0.03)
    assert row[f"{name}/count@status_class=5xx"] == 10
    assert row["app.ai.cost/delta"] == pytest.approx(0.01)
    assert run.history[1]["app.ai.cost/total@app.feature=summarize"] == pytest.approx(0.02)
    assert run.history[1][f"{name}/p95"] == pytest.approx(exact(exp["hist1"], 0.95), rel=0.03)


def test_run_summaries_of_dotted_keys_are_the_defined_aggregations(offline_run):
    """W&B reads "." in a define_metric name as a nested path: the keys are defined with escaped dots, so the
    summaries of OTel metric keys (and breakdowns holding dots) are max/last/mean, not the last value."""
    run, _ = offline_run
    rows = [h for h in run.history if "http/requests" in h]
    name = "app.db.query.duration"
    for key in (f"{name}/p95", f"{name}/p95@http.route=/api/entries/<id>", f"{name}/p99@status_class=2xx"):
        values = [h[key] for h in rows]
        assert values[0] > values[1], "max differs from the last value"
        assert run.summary[key] == {"max": pytest.approx(values[0])}, key
    assert run.summary["app.ai.cost/total"] == {"last": pytest.approx(0.02)}
    assert run.summary["app.ai.cost/total@app.feature=summarize"] == {"last": pytest.approx(0.02)}
    assert run.summary["app.ai.cost/delta"] == {"mean": pytest.approx(0.01)}
    assert run.summary[f"{name}/count"] == {"mean": pytest.approx((300 + 120) / 2)}
    # per-interval counts: the mean per interval; running totals: the last value
    assert run.summary["http/requests"] == {"mean": pytest.approx((300 + 120) / 2)}
    assert run.summary["http/requests_total"] == {"last": 420}
    assert run.summary["http/p95_ms"] == {"max": pytest.approx(max(h["http/p95_ms"] for h in rows))}


def test_genai_tokens_and_priced_cost(offline_run):
    run, _ = offline_run
    row = run.history[0]
    assert row["ai/calls@app.feature=summarize"] == 1
    assert row["ai/input_tokens"] == 1000 and row["ai/output_tokens"] == 100
    assert row["ai/cost_usd"] == pytest.approx(1000 * 0.15e-6 + 100 * 0.60e-6)
    assert run.history[1]["ai/input_tokens_total"] == 2000


def test_logs_and_error_tables_read_back(offline_run):
    run, _ = offline_run
    row = run.history[0]
    assert row["logs/count@severity=ERROR"] == 1 and row["logs/count@severity=INFO"] == 1
    errors = run.tables["tables/recent_errors"]
    assert len(errors) == 10, "5 rows per interval at most"
    assert {e["exception_type"] for e in errors} >= {"KeyError"}
    assert all(len(e["trace_id"]) == 32 for e in errors if e["exception_type"] == "KeyError")
    groups = run.tables["tables/error_groups"]
    key_errors = [g for g in groups if g["type"] == "KeyError"]
    assert key_errors[-1]["count"] == 14 and key_errors[-1]["message"] == "<str>"
    assert any(g["type"] == "log:test.sdk.app" and g["message"] == "could not save entry <num>" for g in groups)
    slow = run.tables["tables/slowest_traces"]
    assert len(slow) == 20 and all(s["route"] == "/api/entries/<id>" for s in slow)


def test_alert_config_and_multi_block_records(offline_run):
    run, _ = offline_run
    assert run.alerts == [
        {"title": "p95 latency high", "text": "p95 above 800 ms", "level": "WARN", "wait_duration": 30.0}
    ]
    assert run.config["suite"] == "sdk"
    big = [h for h in run.history if "big/key_02499_" + "x" * 20 in h]
    assert len(big) == 1 and big[0]["big/key_01234_" + "x" * 20] == 1234
    assert run.exit_code == 0


def test_entry_points_resolve_to_our_exporters():
    for group, cls in (
        ("opentelemetry_traces_exporter", sdk.WandbSpanExporter),
        ("opentelemetry_metrics_exporter", sdk.WandbMetricExporter),
        ("opentelemetry_logs_exporter", sdk.WandbLogExporter),
    ):
        (ep,) = entry_points(group=group, name="wandb")
        assert ep.load() is cls


def test_metric_exporter_defaults_delta_and_exponential(monkeypatch):
    from opentelemetry.sdk.metrics import Counter, Histogram, UpDownCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

    monkeypatch.delenv("WANDB_METRICS_TEMPORALITY", raising=False)
    e = sdk.WandbMetricExporter(pipeline=Pipeline(None, 3600, start_thread=False))
    assert e._preferred_temporality[Counter] is AggregationTemporality.DELTA
    assert e._preferred_temporality[UpDownCounter] is AggregationTemporality.CUMULATIVE
    assert isinstance(e._preferred_aggregation[Histogram], ExponentialBucketHistogramAggregation)
    assert e._preferred_aggregation[Histogram]._max_size == sdk.EXP_HISTOGRAM_MAX_SIZE == 320
    monkeypatch.setenv("WANDB_METRICS_TEMPORALITY", "cumulative")
    e2 = sdk.WandbMetricExporter(pipeline=Pipeline(None, 3600, start_thread=False))
    assert e2._preferred_temporality[Histogram] is AggregationTemporality.CUMULATIVE


def test_gauges_and_explicit_histograms_through_the_metric_exporter(monkeypatch):
    """WANDB_METRICS_HISTOGRAM=explicit: the SDK's explicit buckets reach the row (p95 inside the right bucket,
    same nearest rank); synchronous and observable gauges give their last value."""
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation

    from tests.support.wandb_run import RecorderRun

    monkeypatch.setenv("WANDB_METRICS_HISTOGRAM", "explicit")
    run = RecorderRun()
    pipe = Pipeline(WandbSink(run=run), interval_s=3600)
    exporter = sdk.WandbMetricExporter(pipeline=pipe)
    assert isinstance(exporter._preferred_aggregation[Histogram], ExplicitBucketHistogramAggregation)
    mp = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)])
    meter = mp.get_meter("test")
    hist = meter.create_histogram("db.query.duration", unit="ms")
    values = [float(v) for v in range(1, 201)]  # 1..200 ms: exact p95 = 190 (nearest rank)
    for v in values:
        hist.record(v)
    depth = meter.create_gauge("queue.depth")
    for v in (3.0, 9.0, 4.0):
        depth.set(v)
    meter.create_observable_gauge("pool.size", callbacks=[lambda options: [Observation(12.0)]])
    mp.force_flush()
    assert pipe.force_flush(10)
    mp.shutdown()
    row = run.logged[0]
    assert row["db.query.duration/count"] == 200 and row["db.query.duration/mean"] == pytest.approx(100.5)
    # SDK default bounds ... 100, 250 ...: rank 190 is the 90th of the 100 values in (100, 200]
    assert row["db.query.duration/p95"] == pytest.approx(100 + 100 * 90 / 101)
    assert 100 < row["db.query.duration/p95"] <= 200 and exact(values, 0.95) == 190
    assert row["queue.depth/last"] == 4.0
    assert row["pool.size/last"] == 12.0
