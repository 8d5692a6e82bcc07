"""shutdown(timeout) is bounded whatever the OTLP endpoint does: the real OTLP exporters (grpc and http/protobuf)
against a local socket that accepts connections and never answers, and against a dead port. Spans, metrics and
logs are pending when shutdown starts; it must return within its timeout (plus generous slack for thread start-up
on a loaded machine) and report False, since the exporters could not finish."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import pytest
from opentelemetry import metrics, trace

from app import telemetry
from tests.support import free_port, silent_server
from tests.support.telemetry import reset_globals

pytestmark = pytest.mark.telemetry  # apps use the telemetry_state providers (tests/conftest.py)

TIMEOUT = 1.0
SLACK = 3.0  # bounded-time behaviour, not a speed test: the exporters' own timeout is 10 s


@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    """A TCP server that accepts every connection, reads nothing and answers nothing."""
    with silent_server() as server:
        yield f"http://127.0.0.1:{server.port}"


@contextlib.contextmanager
def dead_endpoint() -> Iterator[str]:
    """A port nothing listens on (connection refused)."""
    yield f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("endpoint", [silent_endpoint, dead_endpoint], ids=["never-answers", "dead-port"])
def test_shutdown_returns_within_its_timeout_and_reports_it_could_not_finish(telemetry_env, endpoint, protocol):
    telemetry.shutdown(1.0)
    reset_globals()
    with endpoint() as url:
        for var in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
            telemetry_env.setenv(var, "otlp")
        telemetry_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        telemetry_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        telemetry_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # everything still queued at shutdown
        telemetry_env.setenv("OTEL_BLRP_SCHEDULE_DELAY", "60000")
        telemetry_env.setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000")
        telemetry_env.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5")  # > TIMEOUT, and the threads left behind give up
        try:
            state = telemetry.configure()
            assert state.owned and not state.disabled
            counter = metrics.get_meter("t").create_counter("probe.count")
            tracer = trace.get_tracer("t")
            for _ in range(5):
                with tracer.start_as_current_span("probe"):
                    counter.add(1)
            logging.getLogger("probe").warning("probe log")
            started = time.monotonic()
            finished = telemetry.shutdown(TIMEOUT)
            elapsed = time.monotonic() - started
        finally:
            telemetry.shutdown(0.1)
            reset_globals()
    assert finished is False
    assert elapsed < TIMEOUT + SLACK, elapsed


def test_shutdown_delivers_what_is_still_queued(telemetry_env):
    """Nothing is flushed on the calling thread any more: the providers' own shutdown drains the queues."""
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    telemetry.shutdown(1.0)
    reset_globals()
    telemetry_env.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # nothing leaves before shutdown
    telemetry_env.setenv("OTEL_BLRP_SCHEDULE_DELAY", "60000")
    spans, logs, reader = InMemorySpanExporter(), InMemoryLogRecordExporter(), InMemoryMetricReader()
    try:
        telemetry.configure(span_exporters=[spans], log_exporters=[logs], metric_readers=[reader])
        tracer = trace.get_tracer("t")
        for _ in range(7):
            with tracer.start_as_current_span("queued"):
                pass
        logging.getLogger("probe").warning("queued log")
        assert spans.get_finished_spans() == ()  # still in the batch processor's queue
        assert telemetry.shutdown(10.0) is True
    finally:
        telemetry.shutdown(0.1)
        reset_globals()
    assert [s.name for s in spans.get_finished_spans()] == ["queued"] * 7
    assert any(r.log_record.body == "queued log" for r in logs.get_finished_logs())
