"""Plain telemetry records: the only input the conversion core accepts.

Adapters (SDK exporters, the OTLP/HTTP bridge) turn their native types into these; the core never sees an
OpenTelemetry SDK or protobuf type, nor anything from ``wandb``. Keep this module dependency-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Attributes = Mapping[str, Any]

# Span kinds, as the lower-case names of the OTel SpanKind enum.
SERVER, CLIENT, INTERNAL, PRODUCER, CONSUMER = "server", "client", "internal", "producer", "consumer"

# Metric point kinds.
SUM, GAUGE, HISTOGRAM, EXP_HISTOGRAM = "sum", "gauge", "histogram", "exp_histogram"
CUMULATIVE, DELTA = "cumulative", "delta"


@dataclass(slots=True)
class ExceptionInfo:
    """One ``exception`` span event (type, message, stacktrace), as the semantic conventions name them."""

    type: str
    message: str = ""
    stacktrace: str = ""


@dataclass(slots=True)
class SpanRecord:
    name: str
    kind: str
    start_ns: int
    end_ns: int
    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits
    parent_span_id: str | None = None
    is_error: bool = False  # span status ERROR
    status_message: str = ""
    attributes: Attributes = field(default_factory=dict)
    resource: Attributes = field(default_factory=dict)
    scope: str = ""
    exceptions: Sequence[ExceptionInfo] = ()

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9


@dataclass(slots=True)
class MetricPoint:
    """One data point of one metric stream.

    ``kind`` selects which value fields are meaningful:
      - SUM: ``value``, ``temporality``, ``monotonic``
      - GAUGE: ``value``
      - HISTOGRAM: ``count``, ``sum``, ``min``, ``max``, ``bounds`` (explicit upper bounds), ``bucket_counts``
        (len(bounds) + 1), ``temporality``
      - EXP_HISTOGRAM: ``count``, ``sum``, ``min``, ``max``, ``scale``, ``zero_count``, ``positive_offset``,
        ``positive_counts``, ``negative_offset``, ``negative_counts``, ``temporality``
    """

    name: str
    kind: str
    unit: str = ""
    attributes: Attributes = field(default_factory=dict)
    resource: Attributes = field(default_factory=dict)
    start_time_ns: int = 0
    time_ns: int = 0
    temporality: str = CUMULATIVE
    monotonic: bool = False
    value: float = 0.0
    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    bounds: Sequence[float] = ()
    bucket_counts: Sequence[int] = ()
    scale: int = 0
    zero_count: int = 0
    positive_offset: int = 0
    positive_counts: Sequence[int] = ()
    negative_offset: int = 0
    negative_counts: Sequence[int] = ()


@dataclass(slots=True)
class LogRecord:
    time_ns: int
    severity_number: int  # OTel SeverityNumber: 1-4 TRACE, 5-8 DEBUG, 9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL
    severity_text: str = ""
    body: str = ""
    scope: str = ""
    trace_id: str | None = None
    span_id: str | None = None
    attributes: Attributes = field(default_factory=dict)
    resource: Attributes = field(default_factory=dict)


@dataclass(slots=True)
class Signals:
    """What one flushed interval tells the alert rules (see exporters/alerts). Produced by the core's flush."""

    interval_start_ns: int
    interval_end_ns: int
    requests: int = 0  # server spans ended in the interval
    errors: int = 0  # of which 5xx / status ERROR
    latency_ms: Sequence[float] = ()  # bounded sample of server-span durations (ms) for windowed percentiles
    p95_ms: float | None = None  # this interval's p95 server latency
    ai_cost_usd: float = 0.0  # AI cost added in this interval
    new_error_groups: Sequence[Mapping[str, Any]] = ()  # error groups first seen in this interval
