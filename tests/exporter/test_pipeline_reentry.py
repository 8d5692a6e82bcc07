"""Our own warnings routed back into the pipeline through OTel logging, synchronously (an OTel LoggingHandler on
the root logger with a SimpleLogRecordProcessor and our log exporter), must not deadlock on the pipeline's lock."""

from __future__ import annotations

import logging
import threading

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from otel_wandb import records as r
from otel_wandb.core import CoreConfig
from otel_wandb.pipeline import Pipeline
from otel_wandb.sdk import WandbLogExporter, WandbSpanExporter
from otel_wandb.sink import WandbSink
from tests.support.wandb_run import RecorderRun


def run_with_timeout(fn, timeout=30.0):
    """Run ``fn`` in a daemon thread: a regression (a deadlock) fails the test instead of hanging the suite."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test thread
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "deadlock: the pipeline re-entered its own lock through logging"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_cap_warnings_logged_through_otel_logging_into_the_same_pipeline_do_not_deadlock():
    run = RecorderRun()
    pipe = Pipeline(WandbSink(run=run), interval_s=3600, core_config=CoreConfig(max_series=5))
    lp = LoggerProvider()
    lp.add_log_record_processor(SimpleLogRecordProcessor(WandbLogExporter(pipeline=pipe)))
    handler = LoggingHandler(logger_provider=lp)
    root = logging.getLogger()
    root.addHandler(handler)
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(WandbSpanExporter(pipeline=pipe)))
    tracer = tp.get_tracer("t")

    def traffic():
        for i in range(60):  # 60 distinct routes: the series cap (5) warns while the span is aggregated
            with tracer.start_as_current_span("GET", kind=SpanKind.SERVER, attributes={"http.route": f"/r{i}"}):
                pass
        # library logging from inside the locked section re-enters from the same thread: dropped, not hung
        pipe._local.busy = True
        try:
            assert pipe.add_logs([r.LogRecord(1, 13, body="re-entered")]) == 0  # dropped and counted, never blocking
        finally:
            pipe._local.busy = False
        assert pipe.force_flush(10)

    try:
        run_with_timeout(traffic)
    finally:
        root.removeHandler(handler)
        run_with_timeout(lambda: (tp.shutdown(), lp.shutdown()))
    row = run.logged[0]
    assert row["http/requests"] == 60
    assert row["http/requests@http.route=__overflow__"] == 55
    assert row["logs/count@severity=WARN"] == 1, "the cap warning itself reached the run, once"
    assert pipe.reentrant_dropped == 1
