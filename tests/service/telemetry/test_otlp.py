"""The fast OTLP span encoder (app/telemetry/_otlp.py) produces what the SDK's encoder produces."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from grpc import Compression
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcOTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from app.telemetry._otlp import BytesTraceStub, FastOTLPGrpcSpanExporter, FastOTLPSpanExporter, SpanEncoder
from app.telemetry._privacy import Policy, span_attributes, span_events
from tests.support.telemetry import flush

pytestmark = pytest.mark.telemetry  # apps use the telemetry_state providers (tests/conftest.py)


def same(spans) -> None:
    ours = ExportTraceServiceRequest.FromString(SpanEncoder().encode(spans))
    sdk = ExportTraceServiceRequest.FromString(encode_spans(spans).SerializePartialToString())
    assert ours == sdk, (ours, sdk)


def synthetic_spans():
    mem = InMemorySpanExporter()
    tps = [TracerProvider(resource=Resource.create({"service.name": n, "k": i})) for i, n in enumerate("ab")]
    for tp in tps:
        tp.add_span_processor(SimpleSpanProcessor(mem))
    remote = SpanContext(
        0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("vendor", "x1"), ("b", "2")])
    )
    for tp in tps:
        for scope, version, schema in (("s1", "1.0", "https://opentelemetry.io/schemas/1.21.0"), ("s2", None, None)):
            t = tp.get_tracer(scope, version, schema_url=schema, attributes={"scope.attr": 1} if version else None)
            with t.start_as_current_span(
                "root",
                kind=SpanKind.SERVER,
                context=set_span_in_context(NonRecordingSpan(remote)),
                attributes={
                    "s": "ü-string",
                    "i": -5,
                    "big": 2**62,
                    "f": 1.5,
                    "b": True,
                    "bf": False,
                    "arr": ["a", "b"],
                    "iarr": [1, 2],
                    "barr": [True],
                    "farr": [0.5],
                    "empty": "",
                },
            ) as sp:
                sp.add_event("evt", {"e": 1, "msg": "x"})
                sp.add_event("bare")
                sp.set_status(Status(StatusCode.ERROR, "bad thing"))
                with t.start_as_current_span(
                    "child", kind=SpanKind.CLIENT, links=[Link(remote, {"l": "v"}), Link(SpanContext(1, 2, False))]
                ):
                    pass
                try:
                    with t.start_as_current_span("raises"):
                        raise ValueError("boom")
                except ValueError:
                    pass
            t.start_span("unended-ok", kind=SpanKind.PRODUCER).end()
            s = t.start_span("ok", kind=SpanKind.CONSUMER)
            s.set_status(Status(StatusCode.OK))
            s.end()
    return mem.get_finished_spans()


def test_synthetic_spans_encode_identically():
    spans = synthetic_spans()
    assert len(spans) > 10
    same(spans)
    same(spans[:1])
    same([])
    enc = SpanEncoder()
    assert enc.encode(spans) == enc.encode(spans)  # cached pieces give the same bytes


def test_equal_resources_and_policy_copies_encode_identically():
    """The encoder groups spans by identity, then merges equal resources and scopes (the SDK's encoder: one
    ResourceSpans per equal resource, whatever the order); spans the privacy policy rebuilt (plain-dict attributes)
    encode like the SDK's own."""
    mem = InMemorySpanExporter()
    tps = [TracerProvider(resource=Resource.create({"service.name": "same", "k": 1})) for _ in range(2)]
    for tp in tps:
        tp.add_span_processor(SimpleSpanProcessor(mem))
    for i in range(3):
        for tp in tps:  # interleaved: resource a, b, a, b ...
            with tp.get_tracer("scope", "1.0").start_as_current_span(
                "GET /x?token=abc" if i == 1 else "GET /api/entries/<id>",
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "GET", "url.query": "token=abc"}
                | (
                    {"url.path": "/x/secret"}
                    if i == 1
                    else {"url.path": "/api/entries/1", "http.route": "/api/entries/<id>"}
                ),
            ) as sp:
                if i == 2:
                    sp.set_status(Status(StatusCode.ERROR, "failed for 'alice@example.com'"))
                    sp.add_event("evt", {"exception.message": "value 'x' is bad"})
    raw = mem.get_finished_spans()
    assert raw[0].resource == raw[1].resource and raw[0].resource is not raw[1].resource
    assert span_attributes(raw[0]) == dict(raw[0].attributes) and type(span_attributes(raw[0])) is dict
    assert span_events(raw[0]) == () and len(span_events(raw[-1])) == 1
    clean = [Policy().span(s) for s in raw]
    assert all(c is not s for c, s in zip(clean, raw, strict=True))  # every span was rebuilt (query, path, status)
    for spans in (raw, clean):
        same(spans)
        req = ExportTraceServiceRequest.FromString(SpanEncoder().encode(spans))
        assert len(req.resource_spans) == 1 and len(req.resource_spans[0].scope_spans) == 1
        assert len(req.resource_spans[0].scope_spans[0].spans) == len(raw)
    encoded = ExportTraceServiceRequest.FromString(SpanEncoder().encode(clean)).resource_spans[0].scope_spans[0]
    assert all("abc" not in str(s) and "alice" not in str(s) and "/x/secret" not in str(s) for s in encoded.spans)


def test_app_spans_encode_identically(client, register, span_exporter):
    headers = register("otlp")
    eid = client.post("/api/entries", json={"text": "x", "tags": ["a"]}, headers=headers).json["id"]
    client.post(f"/api/entries/{eid}/ai/summarize", headers=headers)
    client.get("/api/nope")
    flush()
    spans = span_exporter.get_finished_spans()
    assert len(spans) > 5
    same(spans)


class _Sink(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def sink():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()  # quick shutdown()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1/traces"
    srv.shutdown()
    srv.server_close()


def test_exporter_posts_parsable_batches(sink):
    _Sink.bodies = []
    spans = synthetic_spans()
    exp = FastOTLPSpanExporter(endpoint=sink)
    assert exp.export(spans) == SpanExportResult.SUCCESS
    exp.shutdown()
    (body,) = _Sink.bodies
    req = ExportTraceServiceRequest.FromString(body)
    assert sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans) == len(spans)


def test_dead_endpoint_fails_without_raising():
    exp = FastOTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", timeout=1)
    assert exp.export(synthetic_spans()[:2]) == SpanExportResult.FAILURE
    exp.shutdown()


@pytest.fixture
def grpc_sink():
    """A real gRPC server with the OTLP TraceService's Export method, keeping each request's raw bytes."""
    import grpc

    bodies: list[bytes] = []

    def export(request: bytes, context) -> ExportTraceServiceResponse:
        bodies.append(request)
        return ExportTraceServiceResponse()

    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export, response_serializer=_serialize_response)},
    )
    server = grpc.server(ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", bodies
    server.stop(None)


def _serialize_response(r: ExportTraceServiceResponse) -> bytes:
    return r.SerializeToString()


@pytest.mark.parametrize("compression", [None, Compression.Gzip])
def test_grpc_exporter_sends_what_the_sdks_sends(grpc_sink, compression):
    endpoint, bodies = grpc_sink
    spans = synthetic_spans()
    for cls in (FastOTLPGrpcSpanExporter, GrpcOTLPSpanExporter):
        exp = cls(endpoint=endpoint, insecure=True, compression=compression, timeout=5)
        assert exp.export(spans) == SpanExportResult.SUCCESS
        exp.shutdown()
    ours, sdk = (ExportTraceServiceRequest.FromString(b) for b in bodies)
    assert ours == sdk and sum(len(ss.spans) for rs in ours.resource_spans for ss in rs.scope_spans) == len(spans)


def test_grpc_reconnection_keeps_the_bytes_stub(grpc_sink):
    endpoint, bodies = grpc_sink
    exp = FastOTLPGrpcSpanExporter(endpoint=endpoint, insecure=True, timeout=5)
    assert isinstance(exp._client, BytesTraceStub)
    exp._initialize_channel_and_stub()  # what the SDK does after UNAVAILABLE
    assert isinstance(exp._client, BytesTraceStub)
    assert exp.export(synthetic_spans()[:2]) == SpanExportResult.SUCCESS
    exp.shutdown()
    assert len(ExportTraceServiceRequest.FromString(bodies[0]).resource_spans[0].scope_spans[0].spans) == 2


def test_grpc_dead_endpoint_and_a_bad_batch_fail_without_raising():
    exp = FastOTLPGrpcSpanExporter(endpoint="127.0.0.1:9", insecure=True, timeout=1)
    assert exp.export(synthetic_spans()[:2]) == SpanExportResult.FAILURE
    assert exp.export([object()]) == SpanExportResult.FAILURE  # the encoder raises: counted as a failed batch
    exp.shutdown()
