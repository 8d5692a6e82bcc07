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
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as ProtoLogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from otel_wandb.bridge import _lite as otlp_lite
from otel_wandb.core import MAX_DEPTH
from otel_wandb.records import (
    CLIENT,
    CONSUMER,
    CUMULATIVE,
    DELTA,
    EXP_HISTOGRAM,
    GAUGE,
    HISTOGRAM,
    INTERNAL,
    PRODUCER,
    SERVER,
    SUM,
    ExceptionInfo,
    LogRecord,
    MetricPoint,
    SpanRecord,
)

TRACES, METRICS, LOGS = "traces", "metrics", "logs"
REQUEST_TYPES: dict[str, type[Message]] = {
    TRACES: ExportTraceServiceRequest,
    METRICS: ExportMetricsServiceRequest,
    LOGS: ExportLogsServiceRequest,
}

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


class ItemError(ValueError):
    """One record cannot be decoded (a nested value too deep, invalid UTF-8, a malformed nested message): that
    record is rejected, the rest of its request is kept."""


def _anyvalue(v: Any, depth: int = 0) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which in ("array_value", "kvlist_value"):
        if depth >= MAX_DEPTH:
            raise ItemError(f"an attribute value nests deeper than {MAX_DEPTH} levels")
        if which == "array_value":
            return [_anyvalue(x, depth + 1) for x in v.array_value.values]
        return {kv.key: _anyvalue(kv.value, depth + 1) for kv in v.kvlist_value.values}
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


Record: TypeAlias = SpanRecord | MetricPoint | LogRecord  # one signal's records per request


@dataclass(slots=True)
class Decoded:
    """Records decoded from one request, plus what had to be rejected (for OTLP partial success)."""

    records: list[Record] = field(default_factory=list)
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


def parse(signal: str, body: bytes, *, json_body: bool = False) -> tuple[Any, list[str]]:
    """Parse an OTLP export request body (protobuf or OTLP/JSON) into its protobuf message, and the messages of the
    records that had to be left out. A request whose envelope parses but one of whose records does not (a nested
    value too deep, invalid UTF-8, a malformed nested message) is rebuilt from its parseable records: one bad record
    never costs the batch. PayloadError when nothing can be parsed."""
    msg = REQUEST_TYPES[signal]()
    if json_body:
        try:
            obj = json.loads(body)
        except RecursionError:
            raise PayloadError(
                f"JSON nested deeper than the parser allows (~{sys.getrecursionlimit() - 100} levels)"
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadError(f"body is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise PayloadError("body must be a JSON object (an OTLP export request)")
        try:
            _ids_hex_to_b64(obj)
            json_format.ParseDict(obj, msg, ignore_unknown_fields=True)
            return msg, []
        except (json_format.ParseError, PayloadError, RecursionError, ValueError, TypeError, AttributeError):
            return _salvage_json(signal, obj)
    try:
        msg.ParseFromString(body)
        return msg, []
    except (DecodeError, RecursionError):
        return _salvage_proto(signal, body)


# Every export request has the same envelope: field 1 repeated {resource = 1, repeated {scope = 1, repeated record =
# 2} = 2} (resource_spans/scope_spans/spans, resource_metrics/scope_metrics/metrics, resource_logs/scope_logs/
# log_records), so one lite schema reads all three with the records left as raw bytes.
_LAYOUT = {
    TRACES: ("resource_spans", "scope_spans", "spans"),
    METRICS: ("resource_metrics", "scope_metrics", "metrics"),
    LOGS: ("resource_logs", "scope_logs", "log_records"),
}
_RECORD_TYPES: dict[str, type[Message]] = {TRACES: Span, METRICS: Metric, LOGS: ProtoLogRecord}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _salvage_proto(signal: str, body: bytes) -> tuple[Any, list[str]]:
    try:
        envelope = otlp_lite.Envelope.FromString(body)
    except (DecodeError, RecursionError) as exc:
        raise PayloadError(f"invalid OTLP protobuf {signal} request: {exc}") from None
    outer_f, scope_f, record_f = _LAYOUT[signal]
    msg, errors = REQUEST_TYPES[signal](), []
    for outer in envelope.outer:
        try:
            resource = Resource.FromString(outer.resource)
        except (DecodeError, RecursionError) as exc:
            errors += [f"a resource cannot be decoded ({type(exc).__name__})"] * sum(
                len(m.records) for m in outer.middle
            )
            continue
        dst = getattr(msg, outer_f).add()
        dst.resource.CopyFrom(resource)
        for middle in outer.middle:
            try:
                scope = InstrumentationScope.FromString(middle.scope)
            except (DecodeError, RecursionError) as exc:
                errors += [f"a scope cannot be decoded ({type(exc).__name__})"] * len(middle.records)
                continue
            dst_scope = getattr(dst, scope_f).add()
            dst_scope.scope.CopyFrom(scope)
            records = getattr(dst_scope, record_f)
            for raw in middle.records:
                try:
                    records.append(_RECORD_TYPES[signal].FromString(raw))
                except (DecodeError, RecursionError) as exc:
                    errors.append(
                        f"a {record_f[:-1].replace('_', ' ')} cannot be decoded ({type(exc).__name__}: "
                        f"invalid UTF-8, a malformed or too deeply nested value)"
                    )
    return msg, errors


def _salvage_json(signal: str, obj: dict[str, Any]) -> tuple[Any, list[str]]:
    outer_f, scope_f, record_f = _LAYOUT[signal]
    msg, errors = REQUEST_TYPES[signal](), []

    def items(parent: Any, field: str) -> list[Any]:
        value = parent.get(field, parent.get(_camel(field))) if isinstance(parent, dict) else None
        if value is None:
            return []
        if not isinstance(value, list):
            raise PayloadError(f"{_camel(field)} must be a list")
        return value

    def parse_into(target: Any, value: Any) -> str | None:
        """None when ``value`` parsed into ``target``, else why not."""
        try:
            if value is not None:
                if isinstance(value, (dict, list)):
                    _ids_hex_to_b64(value)
                json_format.ParseDict(value, target, ignore_unknown_fields=True)
            return None
        except RecursionError:
            return "nested too deeply"
        except (json_format.ParseError, PayloadError, ValueError, TypeError, AttributeError) as exc:
            return str(exc)[:200] or type(exc).__name__

    try:
        for outer in items(obj, outer_f):
            scopes = items(outer, scope_f)
            dst = getattr(msg, outer_f).add()
            why = parse_into(dst.resource, outer.get("resource") if isinstance(outer, dict) else None)
            if why:
                del getattr(msg, outer_f)[-1]
                errors += [f"a resource is not valid OTLP/JSON: {why}"] * sum(len(items(m, record_f)) for m in scopes)
                continue
            for middle in scopes:
                dst_scope = getattr(dst, scope_f).add()
                why = parse_into(dst_scope.scope, middle.get("scope") if isinstance(middle, dict) else None)
                if why:
                    del getattr(dst, scope_f)[-1]
                    errors += [f"a scope is not valid OTLP/JSON: {why}"] * len(items(middle, record_f))
                    continue
                for record in items(middle, record_f):
                    target = _RECORD_TYPES[signal]()
                    why = parse_into(target, record)
                    if why:
                        errors.append(f"a {record_f[:-1].replace('_', ' ')} is not valid OTLP/JSON: {why}")
                    else:
                        getattr(dst_scope, record_f).append(target)
    except PayloadError as exc:
        raise PayloadError(f"invalid OTLP/JSON {signal} request: {exc}") from None
    return msg, errors


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
        try:
            resource = attributes(otlp_lite.parse_resource(rs.resource))
        except (*_ITEM_ERRORS, ValueError) as exc:
            lost = sum(len(ss.spans) for ss in rs.scope_spans)
            for _ in range(lost):
                out.reject(f"a resource cannot be decoded: {_reason(exc)}")
            continue
        for ss in rs.scope_spans:
            scope = otlp_lite.parse_scope_name(ss.scope)
            for s in ss.spans:
                tid, sid = s.trace_id, s.span_id
                if len(tid) != 16 or len(sid) != 8:
                    out.reject("a span's trace_id must be 16 bytes and its span_id 8 bytes")
                    continue
                try:
                    exceptions: tuple[ExceptionInfo, ...] = ()
                    if s.events:
                        exceptions = _exceptions(s.events)
                    kind = s.kind
                    status = s.status
                    append(
                        SpanRecord(
                            s.name,
                            _KINDS[kind] if 0 <= kind < 6 else INTERNAL,
                            s.start_time_unix_nano,
                            s.end_time_unix_nano,
                            tid.hex(),
                            sid.hex(),
                            s.parent_span_id.hex() or None,
                            status.code == _STATUS_ERROR,
                            status.message,
                            span_attributes(s.attributes),
                            resource,
                            scope,
                            exceptions,
                        )
                    )
                except (*_ITEM_ERRORS, ValueError) as exc:
                    out.reject(f"a span cannot be decoded: {_reason(exc)}")
    return out


_ITEM_ERRORS = (ItemError, DecodeError, UnicodeDecodeError, RecursionError, OverflowError, TypeError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(exc, ItemError):
        return str(exc)
    return f"{type(exc).__name__} in a nested value"


def _exceptions(raw_events: Any) -> tuple[ExceptionInfo, ...]:
    out = []
    for raw in raw_events:
        e = otlp_lite.parse_event(raw)
        if e.name == "exception":
            a = attributes(e.attributes)
            out.append(
                ExceptionInfo(
                    str(a.get("exception.type", "")),
                    str(a.get("exception.message", "")),
                    str(a.get("exception.stacktrace", "")),
                )
            )
    return tuple(out)


def _number(p: Any) -> float:
    return p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)


def metrics(req: ExportMetricsServiceRequest) -> Decoded:
    out = Decoded()
    for rm in req.resource_metrics:
        try:
            resource = attributes(rm.resource.attributes)
        except _ITEM_ERRORS as exc:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.reject(f"metric {m.name!r}: its resource cannot be decoded ({_reason(exc)})")
            continue
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for point in _points(m):
                    try:
                        out.records.append(_point(m, point, resource))
                    except _ITEM_ERRORS as exc:
                        out.reject(f"metric {m.name!r}: a point cannot be decoded ({_reason(exc)})")
                    except _UnsupportedError as exc:
                        out.reject(str(exc))
    return out


class _UnsupportedError(ValueError):
    pass


def _points(m: Any) -> Any:
    which = m.WhichOneof("data")
    if which is None:
        return [None]  # one rejection: a metric without data
    return getattr(m, which).data_points


def _point(m: Any, p: Any, resource: dict[str, Any]) -> MetricPoint:
    which = m.WhichOneof("data")
    name, unit = m.name, m.unit
    if which == "sum":
        temp, mono = _TEMPORALITY.get(m.sum.aggregation_temporality, CUMULATIVE), m.sum.is_monotonic
        return MetricPoint(
            name,
            SUM,
            unit,
            attributes(p.attributes),
            resource,
            p.start_time_unix_nano,
            p.time_unix_nano,
            temp,
            mono,
            _number(p),
        )
    if which == "gauge":
        return MetricPoint(
            name,
            GAUGE,
            unit,
            attributes(p.attributes),
            resource,
            p.start_time_unix_nano,
            p.time_unix_nano,
            value=_number(p),
        )
    if which == "histogram":
        return MetricPoint(
            name,
            HISTOGRAM,
            unit,
            attributes(p.attributes),
            resource,
            p.start_time_unix_nano,
            p.time_unix_nano,
            _TEMPORALITY.get(m.histogram.aggregation_temporality, CUMULATIVE),
            count=p.count,
            sum=p.sum,
            min=p.min if p.HasField("min") else None,
            max=p.max if p.HasField("max") else None,
            bounds=tuple(p.explicit_bounds),
            bucket_counts=tuple(p.bucket_counts),
        )
    if which == "exponential_histogram":
        return MetricPoint(
            name,
            EXP_HISTOGRAM,
            unit,
            attributes(p.attributes),
            resource,
            p.start_time_unix_nano,
            p.time_unix_nano,
            _TEMPORALITY.get(m.exponential_histogram.aggregation_temporality, CUMULATIVE),
            count=p.count,
            sum=p.sum,
            min=p.min if p.HasField("min") else None,
            max=p.max if p.HasField("max") else None,
            scale=p.scale,
            zero_count=p.zero_count,
            positive_offset=p.positive.offset,
            positive_counts=tuple(p.positive.bucket_counts),
            negative_offset=p.negative.offset,
            negative_counts=tuple(p.negative.bucket_counts),
        )
    if which == "summary":
        raise _UnsupportedError(f"metric {name!r}: summary points are not supported")
    raise _UnsupportedError(f"metric {name!r}: no data")


def _body(v: Any) -> str:
    value = _anyvalue(v)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def logs(req: ExportLogsServiceRequest) -> Decoded:
    out = Decoded()
    append = out.records.append
    for rl in req.resource_logs:
        try:
            resource = attributes(rl.resource.attributes)
        except _ITEM_ERRORS as exc:
            for sl in rl.scope_logs:
                for _ in sl.log_records:
                    out.reject(f"a log record's resource cannot be decoded ({_reason(exc)})")
            continue
        for sl in rl.scope_logs:
            scope = sl.scope.name
            for r in sl.log_records:
                try:
                    attrs = attributes(r.attributes)
                    # GenAI events (gen_ai.user.message, gen_ai.choice...) carry content in the body: never keep it
                    genai = _GENAI_EVENT.match(r.event_name) or _GENAI_EVENT.match(str(attrs.get("event.name", "")))
                    append(
                        LogRecord(
                            r.time_unix_nano or r.observed_time_unix_nano,
                            r.severity_number,
                            r.severity_text,
                            REDACTED_BODY if genai else _body(r.body),
                            scope,
                            r.trace_id.hex() or None,
                            r.span_id.hex() or None,
                            attrs,
                            resource,
                        )
                    )
                except _ITEM_ERRORS as exc:
                    out.reject(f"a log record cannot be decoded ({_reason(exc)})")
    return out


_KV_CACHE = otlp_lite.KeyValueCache(is_forbidden_key, _anyvalue)

CONVERTERS: dict[str, Callable[[Any], Decoded]] = {METRICS: metrics, LOGS: logs}


def decode(signal: str, body: bytes, *, json_body: bool = False) -> Decoded:
    """Body of an OTLP/HTTP export request -> records; what cannot be decoded is rejected per record (Decoded
    counts it); PayloadError only when the request itself cannot be parsed."""
    if signal == TRACES and not json_body:
        try:
            return spans(body)
        except PayloadError:
            msg, errors = parse(signal, body)  # the fast parser refused it: salvage the parseable spans
            out = spans(msg.SerializeToString())
    else:
        msg, errors = parse(signal, body, json_body=json_body)
        out = spans(msg.SerializeToString()) if signal == TRACES else CONVERTERS[signal](msg)
    for message in errors:
        out.reject(message)
    return out
