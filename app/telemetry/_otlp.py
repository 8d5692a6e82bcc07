"""Faster OTLP span exporters (HTTP/protobuf and gRPC): the SDK's exporters with a direct protobuf wire encoder.

Profiling the service under load (bench/bench_telemetry.py) showed the SDK's ``encode_spans`` (one upb message
object per span, attribute, value) as the largest single telemetry cost in the worker process: ~140 µs per span
on this machine, more than the instrumentation on the request thread. This encoder writes the same
``ExportTraceServiceRequest`` bytes directly and caches the encoded form of repeated pieces: the resource, the
instrumentation scopes, and key/value pairs whose value repeats (routes, methods, SQL text, model names; bounded).
tests/service/telemetry/test_otlp.py checks that both encoders' output parses to equal messages.

Used by app/telemetry/_providers.py in place of ``otlp_proto_http`` and ``otlp_proto_grpc`` for traces unless
``AI_DIARY_FAST_OTLP=false``. Transport, retries, headers, compression, timeouts and endpoint variables are the SDK
exporters' own; over gRPC the encoded bytes go through a stub whose request serializer passes them on (the SDK's
stub serializes a message object). bench/bench_parts.py measures both exporters against the SDK's.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcOTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from app.telemetry._privacy import span_attributes, span_events

logger = logging.getLogger(__name__)
_KV_CACHE_MAX = 8192
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_pack_q = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack
_pack_i = struct.Struct("<I").pack
_pack_times = struct.Struct("<BQBQ").pack  # start_time_unix_nano (field 7) and end_time_unix_nano (8), fixed64
_IDS = b"\x0a\x10%b\x12\x08%b"  # trace_id (field 1), span_id (2)
_FLAGS_LOCAL = b"\x85\x01" + _pack_i(_HAS_IS_REMOTE)  # flags (field 16, fixed32)
_FLAGS_REMOTE = b"\x85\x01" + _pack_i(_HAS_IS_REMOTE | _IS_REMOTE)


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _str(tag: bytes, s: str) -> bytes:
    return _ld(tag, s.encode("utf-8"))


def _value(v: Any) -> bytes:
    """AnyValue message body."""
    if v is None:
        return b""
    if isinstance(v, bool):
        return b"\x10\x01" if v else b"\x10\x00"
    if isinstance(v, str):
        return _str(b"\x0a", v)
    if isinstance(v, int):
        return b"\x18" + _varint(v & 0xFFFFFFFFFFFFFFFF)
    if isinstance(v, float):
        return b"\x21" + _pack_d(v)
    if isinstance(v, bytes):
        return _ld(b"\x3a", v)
    if isinstance(v, Sequence):
        return _ld(b"\x2a", b"".join(_ld(b"\x0a", _value(x)) for x in v))
    if isinstance(v, Mapping):
        return _ld(b"\x32", b"".join(_ld(b"\x0a", _kv(str(k), x)) for k, x in v.items()))
    raise TypeError(f"Invalid type {type(v)} of value {v}")


def _kv(key: str, v: Any) -> bytes:
    return _str(b"\x0a", key) + _ld(b"\x12", _value(v))


class SpanEncoder:
    """Encodes ReadableSpans into ExportTraceServiceRequest bytes. Not thread-safe: one per exporter."""

    def __init__(self) -> None:
        self._kv_cache: dict[tuple[str, type, Any], bytes] = {}
        self._resources: dict[Any, bytes] = {}
        self._scopes: dict[Any, bytes] = {}
        self._names: dict[tuple[str, int], bytes] = {}  # (span name, kind) -> their encoded fields (bounded)
        self._last_resource: tuple[Any, bytes] = (None, b"")  # a process has one resource: no hashing per batch

    def attributes(self, tag: bytes, attrs: Mapping[str, Any] | None) -> bytes:
        if not attrs:
            return b""
        cache = self._kv_cache
        parts = []
        for key, v in attrs.items():
            cls = v.__class__
            if cls is str or cls is int or cls is bool:
                ck = (key, cls, v)
                enc = cache.get(ck)
                if enc is None:
                    enc = _ld(tag, _kv(key, v))
                    if len(cache) >= _KV_CACHE_MAX:
                        cache.clear()
                    cache[ck] = enc
                parts.append(enc)
                continue
            try:
                parts.append(_ld(tag, _kv(key, v)))
            except Exception:  # noqa: BLE001 - as the SDK encoder: skip the attribute, keep the span
                logger.exception("Failed to encode key %s", key)
        return b"".join(parts)

    def resource(self, res: Any) -> bytes:
        if res is self._last_resource[0]:
            return self._last_resource[1]
        enc = self._resources.get(res)
        if enc is None:
            enc = _ld(b"\x0a", self.attributes(b"\x0a", res.attributes))
            self._resources = {res: enc} if len(self._resources) > 16 else {**self._resources, res: enc}
        self._last_resource = (res, enc)
        return enc

    def scope(self, scope: Any) -> bytes:
        enc = self._scopes.get(scope)
        if enc is None:
            body = b""
            if scope is not None:
                body = (
                    (_str(b"\x0a", scope.name) if scope.name else b"")
                    + (_str(b"\x12", scope.version) if scope.version else b"")
                    + self.attributes(b"\x1a", scope.attributes)
                )
            enc = _ld(b"\x0a", body)
            if len(self._scopes) > 256:
                self._scopes.clear()
            self._scopes[scope] = enc
        return enc

    def span(self, s: ReadableSpan) -> bytes:
        ctx = s.context
        parent = s.parent
        out = [_IDS % (ctx.trace_id.to_bytes(16, "big"), ctx.span_id.to_bytes(8, "big"))]
        ts = ctx.trace_state
        if ts:
            out.append(_str(b"\x1a", ",".join(f"{k}={v}" for k, v in ts.items())))
        if parent is not None:
            out.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        name, kind = s.name, s.kind
        nk = (name, kind._value_)
        enc = self._names.get(nk)
        if enc is None:
            # SDK SpanKind INTERNAL=0 -> OTLP SPAN_KIND_INTERNAL=1, ...
            enc = (_str(b"\x2a", name) if name else b"") + b"\x30" + _varint(kind._value_ + 1)
            if len(self._names) > 1024:
                self._names.clear()
            self._names[nk] = enc
        out.append(enc)
        start, end = s.start_time, s.end_time
        if start and end:
            out.append(_pack_times(0x39, start, 0x41, end))
        else:
            if start:
                out += [b"\x39", _pack_q(start)]
            if end:
                out += [b"\x41", _pack_q(end)]
        out.append(self.attributes(b"\x4a", span_attributes(s)))
        if s.dropped_attributes:
            out += [b"\x50", _varint(s.dropped_attributes)]
        for ev in span_events(s):
            body = (
                (b"\x09" + _pack_q(ev.timestamp) if ev.timestamp else b"")
                + (_str(b"\x12", ev.name) if ev.name else b"")
                + self.attributes(b"\x1a", ev.attributes)
            )
            dropped = getattr(ev, "dropped_attributes", 0)
            if dropped:
                body += b"\x20" + _varint(dropped)
            out.append(_ld(b"\x5a", body))
        if s.dropped_events:
            out += [b"\x60", _varint(s.dropped_events)]
        links = getattr(s, "_links", None)
        for link in s.links if links is None or len(links) else ():
            lc = link.context
            body = (
                b"\x0a\x10"
                + lc.trace_id.to_bytes(16, "big")
                + b"\x12\x08"
                + lc.span_id.to_bytes(8, "big")
                + self.attributes(b"\x22", link.attributes)
            )
            if link.dropped_attributes:
                body += b"\x28" + _varint(link.dropped_attributes)
            body += b"\x35" + _pack_i(_HAS_IS_REMOTE | (_IS_REMOTE if lc.is_remote else 0))
            out.append(_ld(b"\x6a", body))
        if s.dropped_links:
            out += [b"\x70", _varint(s.dropped_links)]
        st = s.status
        if st is not None:
            code = st.status_code._value_
            if not code and not st.description:
                out.append(b"\x7a\x00")
            else:
                body = (_str(b"\x12", st.description) if st.description else b"") + (
                    b"\x18" + _varint(code) if code else b""
                )
                out.append(_ld(b"\x7a", body))
        out.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
        return b"".join(out)

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        # Resource.__hash__ is a sorted JSON dump of its attributes: hashing per span cost more than encoding the
        # span. Each distinct resource and scope object is looked up by equality once per batch (equal ones share a
        # group, as in the SDK's encoder), then by identity.
        groups: dict[Any, dict[Any, list[bytes]]] = {}
        by_res: dict[int, dict[Any, list[bytes]]] = {}
        by_scope: dict[tuple[int, int], list[bytes]] = {}
        for s in spans:
            res = s.resource
            scope = s.instrumentation_scope or None
            key = (id(res), id(scope))
            encoded = by_scope.get(key)
            if encoded is None:
                scopes = by_res.get(key[0])
                if scopes is None:
                    scopes = by_res[key[0]] = groups.setdefault(res, {})
                encoded = by_scope[key] = scopes.setdefault(scope, [])
            encoded.append(_ld(b"\x12", self.span(s)))
        out = []
        for res, scopes in groups.items():
            body = [self.resource(res)]
            for scope, encoded in scopes.items():
                ss = self.scope(scope) + b"".join(encoded)
                if scope is not None and scope.schema_url:
                    ss += _str(b"\x1a", scope.schema_url)
                body.append(_ld(b"\x12", ss))
            if res.schema_url:
                body.append(_str(b"\x1a", res.schema_url))
            out.append(_ld(b"\x0a", b"".join(body)))
        return b"".join(out)


class FastOTLPSpanExporter(OTLPSpanExporter):
    """OTLPSpanExporter (HTTP/protobuf) with SpanEncoder; falls back to the SDK path if its internals differ."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client, metrics_ = getattr(self, "_client", None), getattr(self, "_metrics", None)
        if self._shutdown or client is None or metrics_ is None:
            return super().export(spans)
        with metrics_.export_operation(len(spans)) as result:
            try:
                data = self._encoder.encode(spans)
            except Exception as error:  # noqa: BLE001
                logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE
            limit = getattr(self, "_max_request_size", None)
            if limit and len(data) > limit:
                logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.", len(data), limit
                )
                return SpanExportResult.FAILURE
            export_result = client.export(data)
            if not export_result.success:
                result.error = export_result.error
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class BytesTraceStub:
    """The TraceService stub for requests already serialized (SpanEncoder's bytes): the same method and response
    as the generated ``TraceServiceStub``, with a request serializer that passes the bytes on."""

    def __init__(self, channel: Any) -> None:
        self.Export = channel.unary_unary(
            _EXPORT_METHOD, request_serializer=bytes, response_deserializer=ExportTraceServiceResponse.FromString
        )


class FastOTLPGrpcSpanExporter(GrpcOTLPSpanExporter):
    """OTLPSpanExporter (gRPC) with SpanEncoder; the SDK's path if its internals differ (no ``_stub``/``_client``).

    Retries, the reconnection on UNAVAILABLE (which builds the stub again from ``_stub``), deadlines, headers and
    compression stay the SDK's; only the request is encoded here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()
        self._fast = all(hasattr(self, a) for a in ("_stub", "_client", "_channel"))
        if self._fast:
            self._stub = BytesTraceStub
            self._client = BytesTraceStub(self._channel)  # type: ignore[assignment]  # upstream types it from its stub

    def _translate_data(self, data: Sequence[ReadableSpan]) -> Any:
        if self._fast:
            return self._encoder.encode(data)
        return super()._translate_data(data)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            return super().export(spans)
        except Exception:  # noqa: BLE001 - the SDK's retry loop catches RpcError only: an encoding error would escape
            logger.exception("Failed to encode or export span batch")
            return SpanExportResult.FAILURE


# entry-point name (opentelemetry_traces_exporter) -> ours, for app/telemetry/_providers.py
FAST_SPAN_EXPORTERS: dict[str, type[Any]] = {
    "otlp_proto_http": FastOTLPSpanExporter,
    "otlp_proto_grpc": FastOTLPGrpcSpanExporter,
}
