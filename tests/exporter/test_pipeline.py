"""Pipeline, sink and config behaviour through the ``run=`` recorder seam (no wandb process needed)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import wandb

from otel_wandb import pipeline as pipeline_mod
from otel_wandb.config import ConfigError, ExportConfig
from otel_wandb.core import CoreConfig
from otel_wandb.pipeline import Pipeline
from otel_wandb.pricing import PriceList
from otel_wandb.sdk import WandbSpanExporter
from otel_wandb.sink import WandbSink
from tests.support import server_span, wait_until
from tests.support.wandb_run import RecorderRun, table_rows


@pytest.fixture
def run():
    return RecorderRun()


def test_at_most_one_log_per_interval_and_nothing_lost_under_concurrency(run):
    p = Pipeline(WandbSink(run=run), interval_s=0.05)
    seen = []
    p.add_listener(seen.append)

    def producer(base):
        for b in range(50):
            p.add_spans([server_span(base + b * 10 + k) for k in range(10)])
            time.sleep(0.001)  # pacing: the producers stay busy across several 0.05 s intervals of the flusher

    threads = [threading.Thread(target=producer, args=(n * 100_000,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a producer is stuck in add_spans"
    assert p.shutdown(5)
    assert p.shutdown(5), "idempotent"
    assert run.finished == 1
    assert p.log_calls <= p.intervals and len(run.logged) == p.log_calls
    assert sum(x["http/requests"] for x in run.logged) == 2000
    assert run.logged[-1]["http/requests_total"] == 2000
    assert sum(res.signals.requests for res in seen) == 2000
    assert p.add_spans([server_span(1)]) is None, "closed pipeline refuses input"


def test_force_flush_writes_the_pending_interval_now_with_tables(run):
    p = Pipeline(WandbSink(run=run), interval_s=3600)
    p.add_spans([server_span(1, code=503), server_span(2)])
    assert p.force_flush(5)
    assert len(run.logged) == 1
    payload = run.logged[0]
    assert payload["http/requests"] == 2 and payload["http/errors"] == 1
    recent = payload["tables/recent_errors"]
    assert recent.columns == ["time", "trace_id", "route", "exception_type", "message", "fingerprint"]
    assert table_rows(recent)[0][2:4] == ["/x", "HTTP 503"]
    assert ("interval/time", {}) in run.defined
    assert ("*", {"step_metric": "interval/time"}) in run.defined
    assert ("http/p95_ms", {"step_metric": "interval/time", "summary": "max"}) in run.defined
    assert ("http/requests_total", {"step_metric": "interval/time", "summary": "last"}) in run.defined
    p.force_flush(5)
    assert len(run.logged) == 1, "an interval without records is not logged"
    p.shutdown(2)


def test_failing_listener_does_not_stop_others_or_export(run, caplog):
    p = Pipeline(WandbSink(run=run), interval_s=3600)
    got = []
    p.add_listener(lambda res: 1 / 0)
    p.add_listener(got.append)
    p.add_spans([server_span(1)])
    with caplog.at_level(logging.ERROR):
        assert p.force_flush(5)
    assert len(got) == 1 and len(run.logged) == 1
    p.shutdown(2)


def test_sink_alert_truncates_title_and_normalizes_level(run):
    sink = WandbSink(run=run)
    assert sink.alert("x" * 100, "text", level="warning", wait_duration=5)
    assert run.alerts == [{"title": "x" * 63, "text": "text", "level": wandb.AlertLevel.WARN, "wait_duration": 5}]


def test_sink_env_precedence_and_offline_default(tmp_path):
    env = {"WANDB_PROJECT": "p1", "WANDB_RUN_GROUP": "g", "WANDB_DIR": str(tmp_path / "w")}
    sink = WandbSink(env=env, name="explicit")
    assert sink.init_kwargs["project"] == "p1" and sink.init_kwargs["group"] == "g"
    assert sink.init_kwargs["mode"] == "offline" and sink.init_kwargs["name"] == "explicit"
    assert WandbSink(env={"WANDB_API_KEY": "k"}).init_kwargs["mode"] is None
    assert WandbSink(env={"WANDB_MODE": "disabled"}).init_kwargs["mode"] == "disabled"
    assert WandbSink(env={}).init_kwargs["project"] == "ai-diary"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="WANDB_DIR"):
        WandbSink(env={"WANDB_DIR": str(tmp_path / "file" / "sub")})


def test_init_failure_disables_sink_once_and_exporter_returns_failure(tmp_path, caplog):
    from opentelemetry.sdk.trace.export import SpanExportResult

    sink = WandbSink(mode="not-a-mode", dir=str(tmp_path))
    p = Pipeline(sink, interval_s=3600)
    exporter = WandbSpanExporter(pipeline=p)
    with caplog.at_level(logging.WARNING, logger="otel_wandb.sink"):
        p.add_spans([server_span(1)])
        assert not p.force_flush(30)
        p.add_spans([server_span(2)])
        assert not p.force_flush(5)
    assert sink.disabled
    assert len([m for m in caplog.messages if "wandb.init failed" in m]) == 1
    from opentelemetry.sdk.trace import TracerProvider

    real_span = TracerProvider().get_tracer("t").start_span("x")
    real_span.end()
    assert exporter.export([real_span]) is SpanExportResult.FAILURE
    assert exporter.export([object()]) is SpanExportResult.FAILURE, "bad input: FAILURE, never an exception"
    exporter.shutdown()
    exporter.shutdown()
    assert p.closed


def test_config_validation_names_the_variable(tmp_path):
    assert ExportConfig.from_env({}).interval_s == 60.0
    assert ExportConfig.from_env({"OTEL_METRIC_EXPORT_INTERVAL": "5000"}).interval_s == 5.0
    assert (
        ExportConfig.from_env({"OTEL_METRIC_EXPORT_INTERVAL": "5000", "WANDB_EXPORT_INTERVAL": "2"}).interval_s == 2.0
    )
    for env, var in (
        ({"WANDB_EXPORT_INTERVAL": "soon"}, "WANDB_EXPORT_INTERVAL"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "-1"}, "OTEL_METRIC_EXPORT_INTERVAL"),
        ({"WANDB_EXPORT_MAX_SERIES": "2.5"}, "WANDB_EXPORT_MAX_SERIES"),
        ({"WANDB_METRICS_TEMPORALITY": "sideways"}, "WANDB_METRICS_TEMPORALITY"),
        ({"WANDB_EXPORT_PRICING": str(tmp_path / "nope.json")}, "WANDB_EXPORT_PRICING"),
    ):
        with pytest.raises(ConfigError, match=var):
            ExportConfig.from_env(env)
    with pytest.raises(ConfigError, match="WANDB_EXPORT_INTERVAL"):
        Pipeline.from_env({"WANDB_EXPORT_INTERVAL": "0"})


def test_pricing_file_of_the_app_loads_per_token():
    cfg = ExportConfig.from_env({})
    price = PriceList.load(cfg.pricing_path).prices["gpt-4o-mini"]
    assert (price.input, price.cached_input, price.output) == pytest.approx((0.15e-6, 0.075e-6, 0.60e-6))


def test_shared_pipeline_is_per_process(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_EXPORT_INTERVAL", "3600")
    Pipeline.reset_shared()
    a = Pipeline.shared()
    assert Pipeline.shared() is a and a.interval_s == 3600
    monkeypatch.setattr(pipeline_mod.os, "getpid", lambda: -1)  # as in a forked gunicorn worker
    b = Pipeline.shared()
    assert b is not a
    for p in (a, b):
        p.shutdown(2)
    Pipeline.reset_shared()


def test_flush_and_shutdown_are_bounded_when_the_sink_hangs(run):
    release = threading.Event()
    run.log = lambda payload: release.wait(30)  # a wandb that never answers
    p = Pipeline(WandbSink(run=run), interval_s=3600)
    p.add_spans([server_span(1)])
    t0 = time.monotonic()
    assert not p.force_flush(0.3)
    p.add_spans([server_span(2)])
    assert not p.shutdown(0.5)
    assert time.monotonic() - t0 < 3
    release.set()


def test_sink_calls_happen_on_the_flusher_thread(run):
    threads = []
    run.log = lambda payload: threads.append(threading.current_thread().name)
    p = Pipeline(WandbSink(run=run), interval_s=3600)
    p.add_spans([server_span(1)])
    assert p.force_flush(5)
    p.add_spans([server_span(2)])
    assert p.shutdown(5)
    assert threads == ["wandb-export-flusher", "wandb-export-flusher"]


def test_shutdown_is_bounded_while_wandb_init_hangs(caplog):
    """wandb.init waits up to its init timeout (wandb's default 90 s) for an unreachable server: the sink's lock
    is not held across it, so shutdown returns within its own timeout, with one warning; the run created when
    the init finally returns is finished on the init's thread."""
    release = threading.Event()
    late_run = RecorderRun()
    calls = []

    def hanging_init(**kwargs):
        calls.append(threading.current_thread().name)
        release.wait(60)
        return late_run

    sink = WandbSink(init_fn=hanging_init, finish_timeout=10)
    p = Pipeline(sink, interval_s=3600)
    p.add_spans([server_span(1)])
    wait_until(
        lambda: calls, 20, "wandb.init to start"
    )  # the first record starts the init at once, on the flusher thread
    assert calls == ["wandb-export-flusher"]
    with caplog.at_level(logging.WARNING, logger="otel_wandb.sink"):
        t0 = time.monotonic()
        assert not p.force_flush(0.2)
        assert not p.shutdown(1.0)
        assert time.monotonic() - t0 < 1.0 + 0.2 + 3.0, "bounded by the timeouts (generous slack)"
    assert len([m for m in caplog.messages if "wandb.init still running" in m]) == 1
    release.set()
    wait_until(lambda: late_run.finished == 1, 20, "the late run to be finished")
    assert late_run.logged == [], "nothing is logged into a run that starts after shutdown"


def test_failed_init_is_known_from_the_first_record_not_an_interval_later(caplog):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    def failing_init(**kwargs):
        raise TimeoutError("Run initialization has timed out after 15.0 sec")

    p = Pipeline(WandbSink(init_fn=failing_init), interval_s=3600)
    exporter = WandbSpanExporter(pipeline=p)
    real = TracerProvider().get_tracer("t").start_span("x")
    real.end()
    with caplog.at_level(logging.WARNING, logger="otel_wandb.sink"):
        exporter.export([real])
        wait_until(lambda: p.sink.disabled, 20, "the sink to be disabled")  # no force_flush, no interval elapsed
        assert exporter.export([real]) is SpanExportResult.FAILURE
        exporter.shutdown()
    assert len([m for m in caplog.messages if "wandb.init failed" in m]) == 1


def test_init_timeout_from_wandbs_variable_bounded_by_default():
    assert WandbSink(env={}).init_timeout == 15.0, "not wandb's 90 s"
    assert WandbSink(env={"WANDB_INIT_TIMEOUT": "4.5"}).init_timeout == 4.5
    with pytest.raises(ConfigError, match="WANDB_INIT_TIMEOUT"):
        WandbSink(env={"WANDB_INIT_TIMEOUT": "-1"})


def test_define_metric_names_escape_dots_and_per_interval_keys_get_a_summary(run):
    sink = WandbSink(run=run)
    assert sink.log(
        {
            "interval/time": 1.0,
            "http.server.request.duration/p95@http.route=/v1.2": 0.3,
            "app.ai.cost/total": 1.0,
            "ai/cost_usd": 0.1,
            "http/requests": 3,
            "queue.depth/last": 2.0,
        }
    )
    defined = {name: kw.get("summary") for name, kw in run.defined}
    assert defined["http\\.server\\.request\\.duration/p95@http\\.route=/v1\\.2"] == "max"
    assert defined["app\\.ai\\.cost/total"] == "last"
    assert defined["ai/cost_usd"] == "mean" and defined["http/requests"] == "mean"
    assert defined["queue\\.depth/last"] == "last"
    assert "interval/time" not in [n for n, kw in run.defined if kw.get("summary")]


def test_flusher_survives_a_failing_flush_and_writes_the_next_interval(run, caplog, monkeypatch):
    p = Pipeline(WandbSink(run=run), interval_s=3600)
    real_flush, calls = p._agg.flush, []

    def flush_once_broken(now_ns, tables=None):
        calls.append(now_ns)
        if len(calls) == 1:
            raise MemoryError("aggregation blew up")
        return real_flush(now_ns, tables)

    monkeypatch.setattr(p._agg, "flush", flush_once_broken)
    p.add_spans([server_span(1)])
    with caplog.at_level(logging.ERROR, logger="otel_wandb.pipeline"):
        assert not p.force_flush(5), "the failed interval is reported"
    assert [m for m in caplog.messages if m == "W&B export interval failed"], caplog.messages
    assert p._thread.is_alive(), "the flusher thread survived"
    p.add_spans([server_span(2)])
    assert p.force_flush(5), "and writes the next interval"
    (row,) = run.logged
    assert row["http/requests_total"] == 2  # the failed flush closed nothing: both spans are in the next interval
    assert p.shutdown(5) and run.finished == 1


def test_timed_intervals_go_on_after_the_sink_and_a_listener_raise(run, caplog):
    """On its own timer (no force_flush), the flusher outlives a sink.log that raises (not just returns False) and
    a listener that always raises: the next intervals are still written and the other listeners still called."""
    sink = WandbSink(run=run)
    real_log, failed = sink.log, []

    def log_raising_once(row, tables=None):
        if not failed:
            failed.append(row)
            raise RuntimeError("sink broke")
        return real_log(row, tables)

    sink.log = log_raising_once
    p = Pipeline(sink, interval_s=0.05)
    got = []
    p.add_listener(lambda result: 1 / 0)
    p.add_listener(got.append)
    with caplog.at_level(logging.ERROR, logger="otel_wandb.pipeline"):
        p.add_spans([server_span(1)])
        wait_until(lambda: failed, 10, "the first timed interval to fail in the sink")
        p.add_spans([server_span(2)])
        wait_until(lambda: run.logged, 10, "a later timed interval to reach the run")
        wait_until(lambda: any(res.signals.requests for res in got), 10, "the good listener to see a request")
    assert p._thread.is_alive()
    assert run.logged[-1]["http/requests_total"] == 2 and sum(row["http/requests"] for row in run.logged) == 1
    assert "W&B export interval failed" in caplog.messages
    assert any(m.startswith("W&B export listener") and m.endswith("failed") for m in caplog.messages)
    assert p.shutdown(5)


def test_periodic_intervals_hold_the_tables_back_and_a_forced_flush_writes_them(run):
    """WANDB_EXPORT_TABLES_INTERVAL: the timer's intervals are written without tables until they are due; a flush
    someone asked for (force_flush, shutdown) writes them, even with no new data since."""
    p = Pipeline(WandbSink(run=run), interval_s=0.2, core_config=CoreConfig(tables_interval_s=3600))
    try:
        p.add_spans([server_span(1, code=500)])
        wait_until(lambda: run.logged, 10, "a periodic interval")
        (row,) = run.logged
        assert row["http/requests"] == 1 and not [k for k in row if k.startswith("tables/")]
        assert p.force_flush(5)
        assert "tables/slowest_traces" in run.logged[-1] and run.logged[-1]["http/requests"] == 0
        assert table_rows(run.logged[-1]["tables/slowest_traces"])[0][1] == f"{1:032x}"
    finally:
        p.shutdown(5)


def test_export_config_reads_the_tables_interval_and_error_rows():
    cfg = ExportConfig.from_env({"WANDB_EXPORT_TABLES_INTERVAL": "0", "WANDB_EXPORT_ERROR_ROWS": "7"})
    assert (cfg.tables_interval_s, cfg.error_rows) == (0.0, 7)
    assert (ExportConfig.from_env({}).tables_interval_s, ExportConfig.from_env({}).error_rows) == (60.0, 50)
    p = Pipeline.from_env({"WANDB_EXPORT_ERROR_ROWS": "7", "WANDB_MODE": "disabled"}, sink=WandbSink(run=RecorderRun()))
    try:
        assert (p._agg.cfg.max_error_rows, p._agg.cfg.tables_interval_s) == (7, 60.0)
    finally:
        p.shutdown(5)
