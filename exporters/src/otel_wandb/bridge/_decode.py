"""OTLP protobuf / JSON export requests -> plain records (``otel_wandb.records``).

Used by the OTLP/HTTP bridge. Pure functions: no I/O, no threads, no wandb. Decoding is flat loops over the
protobuf messages (upb), with resource and scope attributes converted once per resource/scope and shared.

Privacy: a third wall after the app's filter and the collector's redaction step -- attributes whose key is known
to carry content or credentials are dropped here too (``is_forbidden_key``), and GenAI event bodies are replaced.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_wandb.bridge import _lite as otlp_lite
from otel_wandb.records import (
    CLIENT, CONSUMER, CUMULATIVE, DELTA, EXP_HISTOGRAM, GAUGE, HISTOGRAM, INTERNAL, PRODUCER, SERVER, SUM,
    ExceptionInfo, LogRecord, MetricPoint, SpanRecord,
)

TRACES, METRICS, LOGS = "traces", "metrics", "logs"
REQUEST_TYPES = {TRACES: ExportTraceServiceRequest, METRICS: ExportMetricsServiceRequest, LOGS: ExportLogsServiceRequest}

# The key policy, shared with the collector's redaction step (otel-collector.yaml wraps it as "(?is)^(...)\z";
# tests/test_collector_signals.py checks they agree): a whole key, any case, '-' or '_' in header names (Python's
# opentelemetry-util-http turns '-' into '_'); '.' matches a newline too (s / DOTALL), or "app.content.x\ny" would
# get through.
FORBIDDEN_KEY_PATTERN = (
    r"app[.]content([.].*)?"
    r"|gen_ai[.](input[.]messages|output[.]messages|system_instructions|prompt|completion"
    r"|tool[.]call[.](arguments|result)|tool[.]definitions)([.].*)?"
    r"|http[.](request|response)[.]header[.](authorization|proxy[-_]authorization|cookie|set[-_]cookie|x[-_]api[-_]key"
    r"|api[-_]key|wandb[-_]api[-_]key|openai[-_]api[-_]key|x[-_]auth[-_]token)"
)
_FORBIDDEN = re.compile(FORBIDDEN_KEY_PATTERN, re.IGNORECASE | re.DOTALL)
_GENAI_EVENT = re.compile(r"gen_ai[.]")
REDACTED_BODY = "REDACTED"
_VERDICTS: dict[str, bool] = {}  # key -> forbidden? (keys repeat: one regex match per distinct key)
_VERDICTS_MAX = 4096

_KINDS = (INTERNAL, INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER)  # index = proto SpanKind value
_TEMPORALITY = {1: DELTA, 2: CUMULATIVE}
_STATUS_ERROR = 2


class PayloadError(ValueError):
    """The request body is not a valid OTLP export request; the message names what is wrong."""


def is_forbidden_key(key: str) -> bool:
    """True when the whole key matches FORBIDDEN_KEY_PATTERN (case-insensitive, '.' matching newlines)."""
    verdict = _VERDICTS.get(key)
    if verdict is None:
        verdict = _FORBIDDEN.fullmatch(key) is not None
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.clear()
        _VERDICTS[key] = verdict
    return verdict


def _anyvalue(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_anyvalue(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _anyvalue(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        key = kv.key
        if is_forbidden_key(key):
            continue
        v = kv.value
        which = v.WhichOneof("value")
        if which == "string_value":
            out[key] = v.string_value
        elif which in ("int_value", "double_value", "bool_value"):
            out[key] = getattr(v, which)
        else:
            out[key] = _anyvalue(v)
    return out


@dataclass(slots=True)
class Decoded:
    """Records decoded from one request, plus what had to be rejected (for OTLP partial success)."""

    records: list = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < 5:
            self.errors.append(message)


# -- parsing -------------------------------------------------------------------------------------------------

_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _ids_hex_to_b64(obj: Any) -> None:
    """OTLP/JSON encodes trace/span ids as hex, protobuf's JSON mapping wants base64: convert in place."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in _ID_FIELDS and isinstance(v, str):
                try:
                    obj[k] = base64.b64encode(bytes.fromhex(v)).decode() if v else ""
                except ValueError:
                    raise PayloadError(f"{k}: {v!r} is not a hex id") from None
            elif isinstance(v, (dict, list)):
                _ids_hex_to_b64(v)
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)):
                _ids_hex_to_b64(v)


def parse(signal: str, body: bytes, *, json_body: bool = False) -> Any:
    """Parse an OTLP export request body (protobuf or OTLP/JSON) into its protobuf message."""
    msg = REQUEST_TYPES[signal]()
    if json_body:
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(f"body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise PayloadError("body must be a JSON object (an OTLP export request)")
        _ids_hex_to_b64(obj)
        try:
            json_format.ParseDict(obj, msg, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise PayloadError(f"invalid OTLP/JSON {signal} request: {exc}") from None
        return msg
    try:
        msg.ParseFromString(body)
    except DecodeError as exc:
        raise PayloadError(f"invalid OTLP protobuf {signal} request: {exc}") from None
    return msg


# -- conversion ----------------------------------------------------------------------------------------------

def spans(body: bytes) -> Decoded:
    """Encoded ExportTraceServiceRequest -> SpanRecords, through the lite schema and the KeyValue cache."""
    try:
        req = otlp_lite.LiteTraceRequest.FromString(body)
    except DecodeError as exc:
        raise PayloadError(f"invalid OTLP protobuf traces request: {exc}") from None
    out = Decoded()
    append = out.records.append
    span_attributes = _KV_CACHE.attributes
    for rs in req.resource_spans:
        resource = attributes(otlp_lite.parse_resource(rs.resource))
        for ss in rs.scope_spans:
            scope = otlp_lite.parse_scope_name(ss.scope)
            for s in ss.spans:
                tid, sid = s.trace_id, s.span_id
                if len(tid) != 16 or len(sid) != 8:
                    out.reject(f"span {s.name!r}: trace_id must be 16 bytes and span_id 8 bytes")
                    continue
                exceptions: tuple = ()
                if s.events:
                    exceptions = _exceptions(s.events)
                kind = s.kind
                status = s.status
                append(SpanRecord(
                    s.name, _KINDS[kind] if 0 <= kind < 6 else INTERNAL, s.start_time_unix_nano, s.end_time_unix_nano,
                    tid.hex(), sid.hex(), s.parent_span_id.hex() or None, status.code == _STATUS_ERROR,
                    status.message, span_attributes(s.attributes), resource, scope, exceptions,
                ))
    return out


def _exceptions(raw_events: Any) -> tuple:
    out = []
    for raw in raw_events:
        e = otlp_lite.parse_event(raw)
        if e.name == "exception":
            a = attributes(e.attributes)
            out.append(ExceptionInfo(str(a.get("exception.type", "")), str(a.get("exception.message", "")),
                                     str(a.get("exception.stacktrace", ""))))
    return tuple(out)


def _number(p: Any) -> float:
    return p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)


def metrics(req: ExportMetricsServiceRequest) -> Decoded:
    out = Decoded()
    append = out.records.append
    for rm in req.resource_metrics:
        resource = attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                which = m.WhichOneof("data")
                name, unit = m.name, m.unit
                if which == "sum":
                    temp, mono = _TEMPORALITY.get(m.sum.aggregation_temporality, CUMULATIVE), m.sum.is_monotonic
                    for p in m.sum.data_points:
                        append(MetricPoint(name, SUM, unit, attributes(p.attributes), resource, p.start_time_unix_nano,
                                           p.time_unix_nano, temp, mono, _number(p)))
                elif which == "gauge":
                    for p in m.gauge.data_points:
                        append(MetricPoint(name, GAUGE, unit, attributes(p.attributes), resource,
                                           p.start_time_unix_nano, p.time_unix_nano, value=_number(p)))
                elif which == "histogram":
                    temp = _TEMPORALITY.get(m.histogram.aggregation_temporality, CUMULATIVE)
                    for p in m.histogram.data_points:
                        append(MetricPoint(
                            name, HISTOGRAM, unit, attributes(p.attributes), resource, p.start_time_unix_nano,
                            p.time_unix_nano, temp, count=p.count, sum=p.sum,
                            min=p.min if p.HasField("min") else None, max=p.max if p.HasField("max") else None,
                            bounds=tuple(p.explicit_bounds), bucket_counts=tuple(p.bucket_counts)))
                elif which == "exponential_histogram":
                    temp = _TEMPORALITY.get(m.exponential_histogram.aggregation_temporality, CUMULATIVE)
                    for p in m.exponential_histogram.data_points:
                        append(MetricPoint(
                            name, EXP_HISTOGRAM, unit, attributes(p.attributes), resource, p.start_time_unix_nano,
                            p.time_unix_nano, temp, count=p.count, sum=p.sum,
                            min=p.min if p.HasField("min") else None, max=p.max if p.HasField("max") else None,
                            scale=p.scale, zero_count=p.zero_count, positive_offset=p.positive.offset,
                            positive_counts=tuple(p.positive.bucket_counts), negative_offset=p.negative.offset,
                            negative_counts=tuple(p.negative.bucket_counts)))
                elif which == "summary":
                    for _ in m.summary.data_points:
                        out.reject(f"metric {name!r}: summary points are not supported")
                else:
                    out.reject(f"metric {name!r}: no data")
    return out


def _body(v: Any) -> str:
    value = _anyvalue(v)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def logs(req: ExportLogsServiceRequest) -> Decoded:
    out = Decoded()
    append = out.records.append
    for rl in req.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope = sl.scope.name
            for r in sl.log_records:
                attrs = attributes(r.attributes)
                # GenAI events (gen_ai.user.message, gen_ai.choice...) carry content in the body: never keep it
                genai = _GENAI_EVENT.match(r.event_name) or _GENAI_EVENT.match(str(attrs.get("event.name", "")))
                append(LogRecord(
                    r.time_unix_nano or r.observed_time_unix_nano, r.severity_number, r.severity_text,
                    REDACTED_BODY if genai else _body(r.body), scope, r.trace_id.hex() or None,
                    r.span_id.hex() or None, attrs, resource))
    return out


_KV_CACHE = otlp_lite.KeyValueCache(is_forbidden_key, _anyvalue)

CONVERTERS: dict[str, Callable[[Any], Decoded]] = {METRICS: metrics, LOGS: logs}


def decode(signal: str, body: bytes, *, json_body: bool = False) -> Decoded:
    """Body of an OTLP/HTTP export request -> records (raises PayloadError for a malformed body)."""
    if signal == TRACES:
        return spans(parse(signal, body, json_body=True).SerializeToString() if json_body else body)
    return CONVERTERS[signal](parse(signal, body, json_body=json_body))
