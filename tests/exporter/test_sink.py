"""``WandbSink`` when W&B fails: a hanging-then-failing init, a failing ``log``/``alert``, a failing or hanging
``finish``. Each failure is logged once, reported as False (the SDK exporters return FAILURE), never raised, and the
sink recovers where it can. The run is tests/support/wandb_run.py's recorder (accepts what a real run accepts)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from otel_wandb.pipeline import Pipeline
from otel_wandb.sdk import WandbSpanExporter
from otel_wandb.sink import WandbSink
from tests.support import server_span, wait_until
from tests.support.wandb_run import RecorderRun

SINK_LOGGER = "otel_wandb.sink"


def sdk_span():
    s = TracerProvider().get_tracer("t").start_span("x")
    s.end()
    return s


def messages(caplog, needle: str) -> list[str]:
    return [m for m in caplog.messages if needle in m]


def failing_once(method, error: Exception):
    """``method`` that raises ``error`` on its first call only; the calls that failed are in ``.failures``."""

    def call(*args, **kwargs):
        if not call.failures:
            call.failures.append((args, kwargs))
            raise error
        return method(*args, **kwargs)

    call.failures = []
    return call


def test_init_that_hangs_then_times_out_turns_exports_into_failure_without_raising(caplog):
    """wandb.init against an unreachable server blocks until its init timeout, then raises: while it hangs the
    records are taken (SUCCESS); once it has failed every export is FAILURE, and nothing ever raises."""
    release = threading.Event()
    calls = []

    def init_that_times_out(**kwargs):
        calls.append(kwargs)
        release.wait(30)
        raise TimeoutError("Run initialization has timed out after 15.0 sec")

    sink = WandbSink(init_fn=init_that_times_out, project="p", mode="online")
    p = Pipeline(sink, interval_s=3600)
    exporter = WandbSpanExporter(pipeline=p)
    with caplog.at_level(logging.WARNING, logger=SINK_LOGGER):
        assert exporter.export([sdk_span()]) is SpanExportResult.SUCCESS
        wait_until(lambda: calls, 10, "wandb.init to be called")
        assert calls[0]["project"] == "p" and calls[0]["mode"] == "online"
        assert exporter.export([sdk_span()]) is SpanExportResult.SUCCESS, "still starting: not known to fail yet"
        release.set()
        wait_until(lambda: sink.disabled and not p.last_export_ok, 10, "the pipeline to know the init failed")
        assert exporter.export([sdk_span()]) is SpanExportResult.FAILURE
        assert not p.force_flush(5)
        assert sink.log({"interval/time": 1.0}) is False and sink.alert("t", "x") is False
        exporter.shutdown()
    assert p.closed and len(calls) == 1, "a failed init is not retried"
    assert len(messages(caplog, "W&B export disabled: wandb.init failed (TimeoutError: Run initialization")) == 1


def test_failing_log_loses_that_interval_only_and_the_next_one_is_written(caplog):
    run = RecorderRun()
    run.log = failing_once(run.log, ConnectionResetError("wandb service connection lost"))
    p = Pipeline(WandbSink(run=run), interval_s=3600)
    exporter = WandbSpanExporter(pipeline=p)
    with caplog.at_level(logging.WARNING, logger=SINK_LOGGER):
        p.add_spans([server_span(1)])
        assert not p.force_flush(5), "the interval could not be written"
        assert not p.last_export_ok
        assert exporter.export([sdk_span()]) is SpanExportResult.FAILURE, "the SDK is told the export failed"
        p.add_spans([server_span(2)])
        assert p.force_flush(5), "the next interval is written"
        assert exporter.export([sdk_span()]) is SpanExportResult.SUCCESS, "and the exporter recovers"
    assert len(run.log.failures) == 1
    assert messages(caplog, "W&B log failed: ConnectionResetError: wandb service connection lost") != []
    (row,) = run.logged  # the failed interval is lost, its totals are not
    assert row["http/requests"] == 1 and row["http/requests_total"] == 2
    assert p.shutdown(5) and run.finished == 1


def test_failing_alert_is_false_and_logged_and_the_next_one_goes_out(caplog):
    run = RecorderRun()
    run.alert = failing_once(run.alert, RuntimeError("alert rejected"))
    sink = WandbSink(run=run)
    with caplog.at_level(logging.WARNING, logger=SINK_LOGGER):
        assert sink.alert("first", "text", level="ERROR") is False
        assert sink.alert("second", "text", level="ERROR") is True
    assert messages(caplog, "W&B alert failed: RuntimeError: alert rejected") != []
    assert [a["title"] for a in run.alerts] == ["second"] and len(run.alert.failures) == 1


def test_failing_finish_is_reported_not_raised(caplog):
    run = RecorderRun()

    def broken_finish(*args, **kwargs):
        raise OSError("disk full")

    run.finish = broken_finish
    p = Pipeline(WandbSink(run=run), interval_s=3600)
    p.add_spans([server_span(1)])
    with caplog.at_level(logging.WARNING, logger=SINK_LOGGER):
        assert p.shutdown(5) is False, "the run did not finish: shutdown says so"
        assert p.shutdown(5) is True, "idempotent"
    assert len(run.logged) == 1, "the last interval was still written before finish"
    assert len(messages(caplog, "W&B finish failed: OSError: disk full")) == 1


def test_hanging_finish_is_bounded_by_its_timeout(caplog):
    run = RecorderRun()
    release, entered = threading.Event(), threading.Event()

    def hanging_finish(*args, **kwargs):
        entered.set()
        release.wait(30)

    run.finish = hanging_finish
    sink = WandbSink(run=run, finish_timeout=30)
    try:
        with caplog.at_level(logging.WARNING, logger=SINK_LOGGER):
            t0 = time.monotonic()
            assert sink.finish(0.3) is False
            elapsed = time.monotonic() - t0
        assert entered.is_set() and elapsed < 0.3 + 2.0, elapsed  # bounded (generous slack for a loaded machine)
        assert len(messages(caplog, "W&B run did not finish within 0.3 s")) == 1
        assert sink.finish(5) is True and sink.log({"interval/time": 1.0}) is False, "finished: no more logging"
    finally:
        release.set()


@pytest.mark.parametrize("level, expected", [("warning", "WARN"), ("error", "ERROR"), ("loud", "WARN"), (None, "WARN")])
def test_alert_levels_are_wandb_levels(level, expected):
    import wandb

    run = RecorderRun()
    assert WandbSink(run=run).alert("t", "x", level=level)
    assert run.alerts[0]["level"] is wandb.AlertLevel(expected)
