"""Pytest plugin (registered by tests/conftest.py): the real app/telemetry/ pipeline with in-memory doubles at the
ends. Fixtures: ``span_exporter``, ``telemetry_state`` (configures the process with the doubles, resets the global
providers before and after), ``telemetry_env``/``telemetry_overrides``/``telemetry_log_level``/``telemetry_stdout``;
``metric_reader`` / ``log_exporter`` come from tests/conftest.py. A test module marked ``pytest.mark.telemetry``
gets apps (``make_app``) wired to these providers. Helpers: ``flush()``, ``reset_globals()``, ``stdout_lines()``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from app import telemetry

__all__ = ["flush", "reset_globals", "stdout_lines"]


def reset_globals() -> None:
    """Forget the process-wide providers (the API sets them once per process)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # noqa: SLF001 - test-only reset, as upstream tests do
    trace._TRACER_PROVIDER = None  # noqa: SLF001
    metrics._internal._METER_PROVIDER_SET_ONCE = Once()  # noqa: SLF001
    metrics._internal._METER_PROVIDER = None  # noqa: SLF001
    _logs._internal._LOGGER_PROVIDER_SET_ONCE = Once()  # noqa: SLF001
    _logs._internal._LOGGER_PROVIDER = None  # noqa: SLF001


def flush(state: telemetry.State | None = None) -> None:
    st = state or telemetry.state()
    if st is not None and not st.disabled:
        for p in (st.tracer_provider, st.logger_provider):
            p.force_flush()


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry_stdout() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def telemetry_log_level() -> str:
    return "INFO"


@pytest.fixture
def telemetry_overrides() -> dict[str, str]:
    """Extra environment for one test: ``@pytest.mark.parametrize("telemetry_overrides", [{...}])``."""
    return {}


@pytest.fixture
def telemetry_env(
    monkeypatch: pytest.MonkeyPatch, telemetry_log_level: str, telemetry_overrides: dict[str, str]
) -> pytest.MonkeyPatch:
    """No exporters from the environment: only the injected doubles."""
    for var in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
        monkeypatch.setenv(var, "none")
    for var in (
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_TRACES_SAMPLER",
        "AI_DIARY_CAPTURE_GENAI_CONTENT",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOG_LEVEL", telemetry_log_level)
    for var, value in telemetry_overrides.items():
        monkeypatch.setenv(var, value)
    return monkeypatch


@pytest.fixture
def telemetry_state(
    telemetry_env, span_exporter, metric_reader, log_exporter, telemetry_stdout
) -> Iterator[telemetry.State]:
    telemetry.shutdown(2.0)
    reset_globals()
    state = telemetry.configure(
        span_exporters=[span_exporter],
        metric_readers=[metric_reader],
        log_exporters=[log_exporter],
        stdout=telemetry_stdout,
    )
    yield state
    telemetry.shutdown(5.0)
    reset_globals()


def stdout_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
