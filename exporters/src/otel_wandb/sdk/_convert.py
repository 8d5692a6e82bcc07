"""OpenTelemetry SDK types -> plain records (the SDK adapters' half of the contract in ``records``).

Kept allocation-light for the span path: attribute mappings are passed by reference (the SDK's are immutable
once a span ends), ids are formatted once, no per-span dict copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Gauge,
    Histogram,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from otel_wandb import records as r

_KIND = {
    SpanKind.SERVER: r.SERVER,
    SpanKind.CLIENT: r.CLIENT,
    SpanKind.INTERNAL: r.INTERNAL,
    SpanKind.PRODUCER: r.PRODUCER,
    SpanKind.CONSUMER: r.CONSUMER,
}
_EMPTY: r.Attributes = {}
_ERROR = StatusCode.ERROR


_SERVER, _CLIENT, _INTERNAL = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL


def _kind(k: SpanKind) -> str:
    # identity checks: hashing an Enum member runs Python code, ``is`` does not
    if k is _INTERNAL:
        return r.INTERNAL
    if k is _SERVER:
        return r.SERVER
    if k is _CLIENT:
        return r.CLIENT
    return _KIND.get(k, r.INTERNAL)


def span_record(span: ReadableSpan) -> r.SpanRecord:
    ctx = span.context
    parent = span.parent
    status = span.status
    exceptions: tuple[r.ExceptionInfo, ...] = ()
    # the SDK's containers are final once a span has ended: read them without the defensive copies that the
    # public properties make (a tuple of events, a Mapping whose .get() misses raise KeyError internally)
    events = getattr(span, "_events", None)
    if events is None:
        events = span.events
    attrs = getattr(span, "_attributes", None)
    if attrs is None:
        attrs = span.attributes or _EMPTY
    else:
        attrs = getattr(attrs, "_dict", attrs)  # BoundedAttributes' plain dict (read only here)
    if events:
        exceptions = tuple(
            r.ExceptionInfo(
                str(a.get("exception.type", "")),
                str(a.get("exception.message", "")),
                str(a.get("exception.stacktrace", "")),
            )
            for e in events
            if e.name == "exception"
            for a in (e.attributes or _EMPTY,)
        )
    resource = span.resource
    scope = span.instrumentation_scope
    return r.SpanRecord(
        span.name,
        _kind(span.kind),
        span.start_time or 0,
        span.end_time or 0,
        "%032x" % ctx.trace_id,
        "%016x" % ctx.span_id,
        "%016x" % parent.span_id if parent is not None else None,
        status.status_code is _ERROR,
        status.description or "",
        attrs,
        resource.attributes if resource is not None else _EMPTY,
        scope.name if scope is not None else "",
        exceptions,
    )


def span_records(spans: Iterable[ReadableSpan]) -> list[r.SpanRecord]:
    return [span_record(s) for s in spans]


def _temporality(t: AggregationTemporality) -> str:
    return r.DELTA if t == AggregationTemporality.DELTA else r.CUMULATIVE


def metric_records(metrics_data: MetricsData) -> Iterator[r.MetricPoint]:
    for rm in metrics_data.resource_metrics:
        resource = rm.resource.attributes if rm.resource is not None else _EMPTY
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                data = m.data
                if isinstance(data, Sum):
                    temp, mono = _temporality(data.aggregation_temporality), bool(data.is_monotonic)
                    for p in data.data_points:
                        yield r.MetricPoint(
                            m.name,
                            r.SUM,
                            m.unit or "",
                            p.attributes or _EMPTY,
                            resource,
                            p.start_time_unix_nano or 0,
                            p.time_unix_nano or 0,
                            temp,
                            mono,
                            float(p.value),
                        )
                elif isinstance(data, Gauge):
                    for p in data.data_points:
                        yield r.MetricPoint(
                            m.name,
                            r.GAUGE,
                            m.unit or "",
                            p.attributes or _EMPTY,
                            resource,
                            0,
                            p.time_unix_nano or 0,
                            value=float(p.value),
                        )
                elif isinstance(data, Histogram):
                    temp = _temporality(data.aggregation_temporality)
                    for h in data.data_points:
                        yield r.MetricPoint(
                            m.name,
                            r.HISTOGRAM,
                            m.unit or "",
                            h.attributes or _EMPTY,
                            resource,
                            h.start_time_unix_nano or 0,
                            h.time_unix_nano or 0,
                            temp,
                            count=h.count,
                            sum=h.sum,
                            min=_finite(h.min),
                            max=_finite(h.max),
                            bounds=tuple(h.explicit_bounds),
                            bucket_counts=tuple(h.bucket_counts),
                        )
                elif isinstance(data, ExponentialHistogram):
                    temp = _temporality(data.aggregation_temporality)
                    for e in data.data_points:
                        yield r.MetricPoint(
                            m.name,
                            r.EXP_HISTOGRAM,
                            m.unit or "",
                            e.attributes or _EMPTY,
                            resource,
                            e.start_time_unix_nano or 0,
                            e.time_unix_nano or 0,
                            temp,
                            count=e.count,
                            sum=e.sum,
                            min=_finite(e.min),
                            max=_finite(e.max),
                            scale=e.scale,
                            zero_count=e.zero_count,
                            positive_offset=e.positive.offset,
                            positive_counts=tuple(e.positive.bucket_counts),
                            negative_offset=e.negative.offset,
                            negative_counts=tuple(e.negative.bucket_counts),
                        )


def _finite(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if v == v and abs(v) != float("inf") else None


def log_records(batch: Iterable[ReadableLogRecord]) -> list[r.LogRecord]:
    out: list[r.LogRecord] = []
    for item in batch:
        lr = item.log_record
        scope = getattr(item, "instrumentation_scope", None)
        resource = getattr(item, "resource", None) or getattr(lr, "resource", None)
        sev = lr.severity_number
        body = lr.body
        out.append(
            r.LogRecord(
                lr.timestamp or lr.observed_timestamp or 0,
                int(sev.value if isinstance(sev, SeverityNumber) else sev or 0),
                lr.severity_text or "",
                body if isinstance(body, str) else ("" if body is None else str(body)),
                scope.name if scope is not None else "",
                "%032x" % lr.trace_id if lr.trace_id else None,
                "%016x" % lr.span_id if lr.span_id else None,
                lr.attributes or _EMPTY,
                resource.attributes if resource is not None else _EMPTY,
            )
        )
    return out
