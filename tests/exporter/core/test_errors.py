"""One exception, two signals: the request span's ``exception`` event and the ERROR log of the same exception
(``exc_info``) -- through the real SDK providers and our exporters -- make one error group and one occurrence."""

from __future__ import annotations

import logging
import sqlite3

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from app.telemetry._providers import exception_attributes
from otel_wandb import records as r
from otel_wandb.core import Aggregator
from otel_wandb.pipeline import Pipeline
from otel_wandb.sdk import WandbLogExporter, WandbSpanExporter
from otel_wandb.sink import WandbSink
from tests.support.wandb_run import RecorderRun, table_rows


def save_entry(conn):
    conn.execute("INSERT INTO t VALUES (1)")


def divide():
    return 1 / 0


def test_span_event_and_exc_info_log_of_one_exception_are_one_group():
    run = RecorderRun()
    pipe = Pipeline(WandbSink(run=run), interval_s=3600)
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(WandbSpanExporter(pipeline=pipe)))
    lp = LoggerProvider()
    lp.add_log_record_processor(SimpleLogRecordProcessor(WandbLogExporter(pipeline=pipe)))
    log = logging.getLogger("test.errors.app")
    log.propagate = False
    handler = LoggingHandler(logger_provider=lp)
    log.addHandler(handler)
    tracer = tp.get_tracer("t")
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    try:
        for route, fn in (("/boom", divide), ("/save", lambda: save_entry(conn))):
            for _ in range(2):  # two requests: one group, two occurrences
                with tracer.start_as_current_span(
                    f"GET {route}",
                    kind=SpanKind.SERVER,
                    attributes={"http.route": route, "http.request.method": "GET", "http.response.status_code": 500},
                ) as span:
                    try:
                        fn()
                    except Exception as exc:  # what the app's catch-all handler does, plus logging exc_info
                        span.record_exception(exc, attributes=exception_attributes(exc))
                        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                        log.error("unhandled %s in GET %s", type(exc).__name__, route, exc_info=True)
        assert pipe.force_flush(10)
    finally:
        log.removeHandler(handler)
        tp.shutdown()
        lp.shutdown()
    row = run.logged[0]
    assert row["logs/count@severity=ERROR"] == 4
    assert row["errors/occurrences"] == 4, "each exception once, not once per signal"
    groups = table_rows(run.logged[0]["tables/error_groups"])
    assert sorted((g[1], g[4]) for g in groups) == [("IntegrityError", 2), ("ZeroDivisionError", 2)]
    assert {g[3] for g in groups} == {"test_errors.py:divide", "test_errors.py:save_entry"}


def test_error_log_without_exception_attributes_still_groups_by_scope_and_body():
    agg = Aggregator(start_ns=0)
    agg.add_logs([r.LogRecord(1, 17, body="could not save entry 12", scope="app.billing", trace_id="a" * 32)])
    (group,) = agg.flush(2).signals.new_error_groups
    assert group["type"] == "log:app.billing" and group["message"] == "could not save entry <num>"
