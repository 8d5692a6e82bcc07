"""The fast OTLP span encoder (app/telemetry/_otlp.py) produces what the SDK's encoder produces."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
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

from app.telemetry._otlp import FastOTLPSpanExporter, SpanEncoder
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
