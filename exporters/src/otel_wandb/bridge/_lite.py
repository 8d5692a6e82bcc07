"""Fast path for OTLP traces -> SpanRecords (the bridge's hot loop).

Parses ExportTraceServiceRequest with a wire-compatible "lite" schema in which each span's attributes (and events,
resource, scope) stay raw bytes. Attribute pairs repeat a lot across spans (method, route, status, model, ...), so
each distinct encoded KeyValue is decoded once and then found by its bytes in a bounded cache. ~2.5x faster than
walking the full protobuf message tree (see bench/bench_bridge.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

CACHE_MAX = 50_000
_F = descriptor_pb2.FieldDescriptorProto
_R, _O = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
_SKIP = ("", None)  # cached marker for a forbidden key


def _build() -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="ai_diary_otlp_lite_trace.proto", package="ai_diary.lite", syntax="proto3"
    )

    def msg(name: str, fields: list[tuple[int, str, int, int, str | None]]) -> None:
        m = fdp.message_type.add(name=name)
        for num, fname, ftype, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = ".ai_diary.lite." + tname

    # field numbers as in opentelemetry/proto/trace/v1/trace.proto and collector/trace/v1/trace_service.proto
    msg("Status", [(2, "message", _F.TYPE_STRING, _O, None), (3, "code", _F.TYPE_INT32, _O, None)])
    msg(
        "Span",
        [
            (1, "trace_id", _F.TYPE_BYTES, _O, None),
            (2, "span_id", _F.TYPE_BYTES, _O, None),
            (4, "parent_span_id", _F.TYPE_BYTES, _O, None),
            (5, "name", _F.TYPE_STRING, _O, None),
            (6, "kind", _F.TYPE_INT32, _O, None),
            (7, "start_time_unix_nano", _F.TYPE_FIXED64, _O, None),
            (8, "end_time_unix_nano", _F.TYPE_FIXED64, _O, None),
            (9, "attributes", _F.TYPE_BYTES, _R, None),
            (11, "events", _F.TYPE_BYTES, _R, None),
            (15, "status", _F.TYPE_MESSAGE, _O, "Status"),
        ],
    )
    msg("ScopeSpans", [(1, "scope", _F.TYPE_BYTES, _O, None), (2, "spans", _F.TYPE_MESSAGE, _R, "Span")])
    msg(
        "ResourceSpans",
        [(1, "resource", _F.TYPE_BYTES, _O, None), (2, "scope_spans", _F.TYPE_MESSAGE, _R, "ScopeSpans")],
    )
    msg("Request", [(1, "resource_spans", _F.TYPE_MESSAGE, _R, "ResourceSpans")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("ai_diary.lite.Request"))


LiteTraceRequest = _build()


def _build_envelope() -> Any:
    """The envelope every OTLP export request shares (see ``_decode.parse``): records left as raw bytes."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="ai_diary_otlp_envelope.proto", package="ai_diary.envelope", syntax="proto3"
    )
    for name, fields in (
        ("Middle", [(1, "scope", _F.TYPE_BYTES, _O, None), (2, "records", _F.TYPE_BYTES, _R, None)]),
        ("Outer", [(1, "resource", _F.TYPE_BYTES, _O, None), (2, "middle", _F.TYPE_MESSAGE, _R, "Middle")]),
        ("Envelope", [(1, "outer", _F.TYPE_MESSAGE, _R, "Outer")]),
    ):
        m = fdp.message_type.add(name=name)
        for num, fname, ftype, label, tname in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = ".ai_diary.envelope." + tname
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("ai_diary.envelope.Envelope"))


Envelope = _build_envelope()


class KeyValueCache:
    """Encoded KeyValue bytes -> (key, value); forbidden keys map to _SKIP. Cleared when it reaches CACHE_MAX."""

    def __init__(self, is_forbidden: Callable[[str], bool], anyvalue: Callable[[Any], Any]) -> None:
        self._forbidden, self._anyvalue = is_forbidden, anyvalue
        self._cache: dict[bytes, tuple[str, Any]] = {}

    def miss(self, raw: bytes) -> tuple[str, Any]:
        kv = KeyValue.FromString(raw)
        which = kv.value.WhichOneof("value")
        if self._forbidden(kv.key):
            pair = _SKIP
        else:
            pair = (kv.key, self._anyvalue(kv.value))
            if which in ("array_value", "kvlist_value"):
                return pair  # mutable values are not shared between records
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[raw] = pair
        return pair

    def attributes(self, raws: Any) -> dict[str, Any]:
        get, miss = self._cache.get, self.miss
        out: dict[str, Any] = {}
        for raw in raws:
            pair = get(raw) or miss(raw)
            if pair is not _SKIP:
                out[pair[0]] = pair[1]
        return out


def parse_resource(raw: bytes) -> Any:
    return Resource.FromString(raw).attributes


def parse_scope_name(raw: bytes) -> str:
    name: str = InstrumentationScope.FromString(raw).name
    return name


def parse_event(raw: bytes) -> Any:
    return Span.Event.FromString(raw)
