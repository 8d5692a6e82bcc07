"""OTLP -> records: what the OTel Python SDK encodes comes out as the plain records the core expects."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_wandb.bridge import _decode as otlp_decode
from otel_wandb.bridge._decode import PayloadError, is_forbidden_key
from tests.support.collector import ALLOWED_NEIGHBOURS, FORBIDDEN_KEYS, metrics_request

RESOURCE = Resource.create({"service.name": "diary", "deployment.environment.name": "test"})
CANARY = "CANARY-diary-text-7f3a"
FORBIDDEN = {key: CANARY for key in FORBIDDEN_KEYS}


def test_sdk_spans_roundtrip():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app.api")
    with (
        tracer.start_as_current_span(
            "POST /entries",
            kind=SpanKind.SERVER,
            attributes={"http.route": "/entries", "tags": ["a", "b"], "ratio": 0.5, "ok": True, **FORBIDDEN},
        ) as parent,
        tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as child,
    ):
        child.record_exception(ValueError("model said no"))
        child.set_status(Status(StatusCode.ERROR, "model said no"))
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    decoded = otlp_decode.decode("traces", body)
    assert decoded.rejected == 0
    child_rec, parent_rec = decoded.records
    pctx = parent.get_span_context()
    assert parent_rec.trace_id == f"{pctx.trace_id:032x}" and parent_rec.span_id == f"{pctx.span_id:016x}"
    assert parent_rec.parent_span_id is None and child_rec.parent_span_id == parent_rec.span_id
    assert (parent_rec.kind, child_rec.kind, parent_rec.scope) == ("server", "client", "app.api")
    assert parent_rec.attributes == {"http.route": "/entries", "tags": ["a", "b"], "ratio": 0.5, "ok": True}
    assert parent_rec.resource["service.name"] == "diary"
    assert child_rec.is_error and child_rec.status_message == "model said no"
    (exc,) = child_rec.exceptions
    assert (exc.type, exc.message) == ("ValueError", "model said no") and "ValueError" in exc.stacktrace
    assert parent_rec.end_ns >= child_rec.end_ns > child_rec.start_ns >= parent_rec.start_ns
    assert CANARY not in repr(decoded.records)


def test_sdk_metrics_roundtrip_all_kinds():
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=RESOURCE,
        views=[View(instrument_name="exp.*", aggregation=ExponentialBucketHistogramAggregation())],
    )
    meter = provider.get_meter("m")
    meter.create_counter("c", unit="1").add(3, {"route": "/a", **FORBIDDEN})
    meter.create_up_down_counter("ud").add(-2)
    meter.create_histogram("h", unit="s").record(0.2)
    h = meter.create_histogram("exp.h", unit="s")
    for v in (0.1, 0.2, 0.4):
        h.record(v)
    meter.create_gauge("g").set(1.5)
    body = encode_metrics(reader.get_metrics_data()).SerializeToString()
    points = {p.name: p for p in otlp_decode.decode("metrics", body).records}
    assert (points["c"].kind, points["c"].value, points["c"].monotonic, points["c"].attributes) == (
        "sum",
        3.0,
        True,
        {"route": "/a"},
    )
    assert (points["ud"].value, points["ud"].monotonic) == (-2.0, False)
    hist = points["h"]
    assert (hist.kind, hist.count, hist.sum, hist.min, hist.max, hist.unit) == ("histogram", 1, 0.2, 0.2, 0.2, "s")
    assert len(hist.bucket_counts) == len(hist.bounds) + 1 and sum(hist.bucket_counts) == 1
    exp = points["exp.h"]
    assert (exp.kind, exp.count, exp.min, exp.max) == ("exp_histogram", 3, 0.1, 0.4)
    assert sum(exp.positive_counts) == 3 and exp.scale <= 20
    assert (points["g"].kind, points["g"].value) == ("gauge", 1.5)
    assert {p.temporality for p in points.values()} == {"cumulative"}
    provider.shutdown()


def test_sdk_logs_roundtrip():
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    from opentelemetry._logs import SeverityNumber

    provider.get_logger("audit").emit(
        body="entry.delete",
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        attributes={"actor": "u1", **FORBIDDEN},
    )
    provider.get_logger("app").emit(body={"event": "x", "n": 1}, severity_number=SeverityNumber.ERROR)
    # GenAI events hold content in the body (event_name field, or the older event.name attribute): replaced
    genai = provider.get_logger("genai")
    genai.emit(event_name="gen_ai.user.message", body={"content": CANARY}, severity_number=SeverityNumber.INFO)
    genai.emit(body=f"{CANARY} answer", attributes={"event.name": "gen_ai.choice"})
    body = encode_logs(exporter.get_finished_logs()).SerializeToString()
    audit, err, user_msg, choice = otlp_decode.decode("logs", body).records
    assert (user_msg.body, choice.body, choice.attributes) == ("REDACTED", "REDACTED", {"event.name": "gen_ai.choice"})
    assert (audit.scope, audit.severity_number, audit.body, audit.attributes) == (
        "audit",
        9,
        "entry.delete",
        {"actor": "u1"},
    )
    assert audit.time_ns > 0 and audit.trace_id is None
    assert (err.scope, err.severity_number, err.body) == ("app", 17, '{"event": "x", "n": 1}')


def test_forbidden_keys():
    """The collector's key policy (FORBIDDEN_KEY_PATTERN): whole keys, any case, '-' or '_' in header names."""
    assert [k for k in FORBIDDEN_KEYS if not is_forbidden_key(k)] == []
    assert [k for k in ALLOWED_NEIGHBOURS if is_forbidden_key(k)] == []
    assert not any(is_forbidden_key(k) for k in ("app.contents", "xapp.content", "http.request.header.authorization2"))
    assert is_forbidden_key("HTTP.Request.Header.X-Api-Key") and is_forbidden_key("http.request.header.cookie")
    attrs = otlp_decode.attributes(
        metrics_request(attrs={**FORBIDDEN, **ALLOWED_NEIGHBOURS})
        .resource_metrics[0]
        .scope_metrics[0]
        .metrics[0]
        .sum.data_points[0]
        .attributes
    )
    assert attrs == {"point": 0, **ALLOWED_NEIGHBOURS}


def test_payload_errors():
    with pytest.raises(PayloadError, match="protobuf traces"):
        otlp_decode.decode("traces", b"\x0a\xff\xff")
    bad_id = otlp_decode.decode(
        "traces", b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"xyz"}]}]}]}', json_body=True
    )  # one bad span: rejected on its own, named
    assert bad_id.records == [] and bad_id.rejected == 1 and "spanId" in bad_id.errors[0]
    with pytest.raises(PayloadError, match="resourceSpans must be a list"):
        otlp_decode.decode("traces", b'{"resourceSpans": 5}', json_body=True)
    assert otlp_decode.decode("logs", b"{}", json_body=True).records == []
