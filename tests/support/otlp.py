"""Hostile OTLP payloads for the bridge's hardening and fuzz tests: each case of issue 13 as a request body, and a
valid request to send after it (its route or metric name marks it, so the run read back can be checked exactly)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.collector import PROTO, logs_request, spans_request

JSON = "application/json"


@dataclass(frozen=True)
class Case:
    name: str
    path: str  # /v1/traces, /v1/metrics, /v1/logs
    body: bytes
    content_type: str = PROTO


def nested_value(depth: int) -> AnyValue:
    """An AnyValue holding kvlists ``depth`` levels deep."""
    value = AnyValue(string_value="bottom")
    for level in range(depth):
        outer = AnyValue()
        kv = outer.kvlist_value.values.add()
        kv.key = f"level{level}"
        kv.value.CopyFrom(value)
        value = outer
    return value


def _exp_metric(
    scale: int,
    offset: int,
    counts: tuple[int, ...] = (1,),
    count: int | None = None,
    value_sum: float = 1.0,
    name: str = "hostile.latency",
) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add()
    m.name, m.unit = name, "s"
    m.exponential_histogram.aggregation_temporality = 1  # delta
    p = m.exponential_histogram.data_points.add()
    now = time.time_ns()
    p.start_time_unix_nano, p.time_unix_nano = now - 10**9, now
    p.scale, p.sum = scale, value_sum
    p.count = sum(counts) if count is None else count
    p.positive.offset = offset
    p.positive.bucket_counts.extend(counts)
    return req


def _explicit_metric(bounds: tuple[float, ...], counts: tuple[int, ...], count: int) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add()
    m.name, m.unit = "hostile.explicit", "s"
    m.histogram.aggregation_temporality = 1
    p = m.histogram.data_points.add()
    now = time.time_ns()
    p.start_time_unix_nano, p.time_unix_nano, p.count, p.sum = now - 10**9, now, count, 1.0
    p.explicit_bounds.extend(bounds)
    p.bucket_counts.extend(counts)
    return req


def _number_metric(
    kind: str, value: float, name: str = "hostile.value", as_int: int | None = None
) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add()
    m.name = name
    data = m.gauge if kind == "gauge" else m.sum
    if kind == "sum":
        m.sum.aggregation_temporality, m.sum.is_monotonic = 1, True
    p = data.data_points.add()
    p.time_unix_nano = time.time_ns()
    if as_int is not None:
        p.as_int = as_int
    else:
        p.as_double = value
    return req


def _deep_span(depth: int) -> bytes:
    req = spans_request(1, attrs={"http.route": "/poison"})
    kv = req.resource_spans[0].scope_spans[0].spans[0].attributes.add()
    kv.key = "deep"
    kv.value.CopyFrom(nested_value(depth))
    return req.SerializeToString()


def _bad_utf8_key_span() -> bytes:
    """A span whose attribute key is not UTF-8 (hand-encoded: the protobuf API refuses to build it)."""
    req = spans_request(1, attrs={"http.route": "/poison", "zzkey": "v"})
    raw = req.SerializeToString()
    return raw.replace(b"zzkey", b"z\xff\xfeey")


def _malformed_nested_keyvalue_span() -> bytes:
    """A span attribute whose KeyValue bytes are cut (a length prefix pointing past its end)."""
    req = spans_request(1, attrs={"http.route": "/poison", "cutkey": "cutvalue"})
    raw = req.SerializeToString()
    # the KeyValue for cutkey is: 0x0a <len> "cutkey" 0x12 <len> 0x0a <len> "cutvalue": claim the string is longer
    return raw.replace(b"\x0a\x08cutvalue", b"\x0a\x7fcutvalue")


def _deep_metric_attribute(depth: int) -> bytes:
    req = _number_metric("sum", 1.0, name="hostile.deep")
    kv = req.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].attributes.add()
    kv.key = "deep"
    kv.value.CopyFrom(nested_value(depth))
    return req.SerializeToString()


def _deep_log_attribute(depth: int) -> bytes:
    req = logs_request([("app", 17, "failed", {})])
    kv = req.resource_logs[0].scope_logs[0].log_records[0].attributes.add()
    kv.key = "deep"
    kv.value.CopyFrom(nested_value(depth))
    return req.SerializeToString()


def hostile_cases() -> list[Case]:
    """The cases of issue 13 that the bridge must reject (per item, or the whole body with a 4xx)."""
    nan_gauge = _number_metric("gauge", math.nan)
    inf_sum = _number_metric("sum", math.inf)
    nan_hist_sum = _exp_metric(3, 0, (1, 2), value_sum=math.nan)
    huge_count = _exp_metric(3, 0, (1,), count=2**64 - 1)
    control_name = _number_metric("sum", 1.0, name="bad\x00name\x1b[31m")
    deep_json = b'{"resourceSpans":' + b"[" * 5000 + b"]" * 5000 + b"}"
    return [
        Case("exp-histogram scale 20 offset 2**31-1", "/v1/metrics", _exp_metric(20, 2**31 - 1).SerializeToString()),
        Case("exp-histogram scale -10", "/v1/metrics", _exp_metric(-10, 0).SerializeToString()),
        Case(
            "explicit histogram counts do not match bounds",
            "/v1/metrics",
            _explicit_metric((0.1, 0.5), (1, 2), 3).SerializeToString(),
        ),
        Case("span attribute 40 kvlist levels deep", "/v1/traces", _deep_span(40)),
        Case("span attribute key not UTF-8", "/v1/traces", _bad_utf8_key_span()),
        Case("span attribute with a malformed nested KeyValue", "/v1/traces", _malformed_nested_keyvalue_span()),
        Case("metric attribute 40 kvlist levels deep", "/v1/metrics", _deep_metric_attribute(40)),
        Case("log attribute 40 kvlist levels deep", "/v1/logs", _deep_log_attribute(40)),
        Case("JSON nested 5000 deep", "/v1/traces", deep_json, JSON),
        Case("NaN gauge", "/v1/metrics", nan_gauge.SerializeToString()),
        Case("inf sum", "/v1/metrics", inf_sum.SerializeToString()),
        Case("NaN histogram sum", "/v1/metrics", nan_hist_sum.SerializeToString()),
        Case("histogram count 2**64-1", "/v1/metrics", huge_count.SerializeToString()),
        Case("metric name with control characters", "/v1/metrics", control_name.SerializeToString()),
    ]


def valid_spans(route: str, n: int, start: int) -> bytes:
    return spans_request(n, start=start, attrs={"http.route": route}).SerializeToString()


def valid_metric(name: str, value: int) -> bytes:
    return _number_metric("sum", 0.0, name=name, as_int=value).SerializeToString()


def type_conflict(name: str) -> bytes:
    """The metric ``name`` as a gauge (send after it was a sum: rejected and counted, not dropped silently)."""
    return _number_metric("gauge", 1.0, name=name).SerializeToString()


def json_body(obj: Any) -> bytes:
    return json.dumps(obj).encode()
