"""Fail closed: when the providers already set in the process (``opentelemetry-instrument``'s) cannot be given the
privacy filter (app/telemetry/_adopt.py: the SDK's internals are not the shape it knows), ``configure`` logs an
ERROR, shuts those providers down and serves without telemetry -- nothing is exported unfiltered."""

from __future__ import annotations

import io
import secrets

import pytest
from opentelemetry import _logs, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app import telemetry
from tests.support.telemetry import reset_globals, stdout_lines

REFUSED = (
    "telemetry: the existing providers could not be given the privacy filter; shutting them down, serving "
    "without telemetry"
)


def _unknown_span_shape(tp: TracerProvider, lp: LoggerProvider) -> None:
    multi = tp._active_span_processor  # noqa: SLF001 - the SDK internals _adopt.py reaches into
    multi._span_processors = list(multi._span_processors)  # noqa: SLF001 - no longer the tuple it knows


def _unknown_log_shape(tp: TracerProvider, lp: LoggerProvider) -> None:
    multi = lp._multi_log_record_processor  # noqa: SLF001
    multi._log_record_processors = list(multi._log_record_processors)  # noqa: SLF001


@pytest.fixture
def foreign_providers(telemetry_env):
    """Global providers set before ours, as opentelemetry-instrument does, each exporting to an in-memory double."""
    telemetry.shutdown(1.0)
    reset_globals()
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tp, lp = TracerProvider(), LoggerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    trace.set_tracer_provider(tp)
    _logs.set_logger_provider(lp)
    yield tp, lp, spans, logs
    telemetry.shutdown(1.0)
    reset_globals()


@pytest.mark.parametrize(
    "break_shape, reason",
    [
        (_unknown_span_shape, "cannot reach the span processors of TracerProvider"),
        (_unknown_log_shape, "cannot reach the log record processors of LoggerProvider"),
    ],
    ids=["span-processors", "log-processors"],
)
def test_providers_that_cannot_take_the_filter_are_shut_down_and_nothing_is_exported(
    foreign_providers, make_app, break_shape, reason
):
    tp, lp, spans, logs = foreign_providers
    break_shape(tp, lp)
    out = io.StringIO()
    state = telemetry.configure(stdout=out)
    assert state.disabled and not state.owned and telemetry.state() is state
    errors = [line["message"] for line in stdout_lines(out) if line["level"] == "ERROR"]
    assert any(reason in m for m in errors), errors
    assert REFUSED in errors

    # the providers are shut down: what the process still sends through them is not exported
    with tp.get_tracer("after").start_as_current_span("after shutdown"):
        pass
    lp.get_logger("after").emit(body="after shutdown")
    assert spans.get_finished_spans() == () and logs.get_finished_logs() == ()

    # the app serves, without telemetry: a request carrying a canary leaves no span and no log record anywhere
    canary = "cnry" + secrets.token_hex(8)
    app = make_app()
    assert app.extensions["telemetry"] is state
    client = app.test_client()
    token = client.post("/api/users", json={"name": f"n-{canary}"}).json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    created = client.post("/api/entries", json={"text": f"dear diary {canary}"}, headers=auth)
    assert created.status_code == 201
    assert client.get(f"/api/entries/{created.json['id']}", headers=auth).status_code == 200
    assert client.get("/api/entries", headers={"Authorization": f"Bearer {canary}"}).status_code == 401
    assert spans.get_finished_spans() == () and logs.get_finished_logs() == ()
    assert canary not in out.getvalue()


def test_what_the_refused_providers_still_hold_is_dropped_not_flushed_unfiltered(telemetry_env):
    """Shutting a batch processor down flushes its queue to its exporter: a span (and a log record) ended before
    ``configure`` and still queued would leave unfiltered. They are dropped instead."""
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    telemetry.shutdown(1.0)
    reset_globals()
    spans, logs = InMemorySpanExporter(), InMemoryLogRecordExporter()
    tp, lp = TracerProvider(), LoggerProvider()
    tp.add_span_processor(BatchSpanProcessor(spans, schedule_delay_millis=60_000))
    lp.add_log_record_processor(BatchLogRecordProcessor(logs, schedule_delay_millis=60_000))
    trace.set_tracer_provider(tp)
    _logs.set_logger_provider(lp)
    secret = "Bearer SECRET-" + secrets.token_hex(8)
    with tp.get_tracer("early").start_as_current_span(
        "early", attributes={"http.request.header.authorization": secret}
    ):
        pass
    lp.get_logger("early").emit(body=f"token {secret}")
    try:
        _unknown_span_shape(tp, lp)
        state = telemetry.configure(stdout=io.StringIO())
        assert state.disabled
        assert spans.get_finished_spans() == () and logs.get_finished_logs() == ()
    finally:
        telemetry.shutdown(1.0)
        reset_globals()
