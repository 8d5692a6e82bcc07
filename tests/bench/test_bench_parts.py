"""bench/bench_parts.py: the collector variants, the trace batch and the section's arithmetic (nothing timed here)."""

from __future__ import annotations

import gzip
from pathlib import Path

import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.bench_parts import collector_config, request_spans, section, trace_batch


def test_the_batch_holds_three_span_traces_shaped_like_the_bench_request() -> None:
    req = ExportTraceServiceRequest.FromString(gzip.decompress(trace_batch(traces=4)))
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == 12 and len({s.trace_id for s in spans}) == 4
    roots = [s for s in spans if not s.parent_span_id]
    assert len(roots) == 4 and {a.key for a in roots[0].attributes} >= {"http.route", "http.response.status_code"}


def test_each_variant_drops_exactly_its_part(tmp_path: Path) -> None:
    shipped = yaml.safe_load(collector_config("shipped", tmp_path).read_text())
    no_sm = yaml.safe_load(collector_config("no_span_metrics", tmp_path).read_text())
    no_redact = yaml.safe_load(collector_config("no_redact", tmp_path).read_text())
    assert "span_metrics" in shipped["service"]["pipelines"]["traces"]["exporters"]
    assert "span_metrics" not in no_sm["service"]["pipelines"]["traces"]["exporters"]
    assert "metrics/span_metrics" not in no_sm["service"]["pipelines"] and "span_metrics" not in no_sm["connectors"]
    assert all("transform/redact" not in p.get("processors", []) for p in no_redact["service"]["pipelines"].values())
    assert any("transform/redact" in p.get("processors", []) for p in shipped["service"]["pipelines"].values())
    assert (
        no_redact["service"]["pipelines"]["traces"]["exporters"]
        == shipped["service"]["pipelines"]["traces"]["exporters"]
    )


def test_the_section_prices_each_part_as_a_difference_of_medians() -> None:
    metrics = {"none": [15.0, 16.0, 14.0], "reader": [38.0, 40.0, 37.0], "no_exemplars": [30.0, 29.0, 31.0]}
    collector = {"shipped": [36.0, 37.0, 35.0], "no_span_metrics": [28.0, 27.0, 29.0], "no_redact": [31.0] * 3}
    export = {"sdk_http": [100.0] * 3, "fast_http": [40.0] * 3, "sdk_grpc": [200.0] * 3, "fast_grpc": [80.0] * 3}
    text = section(metrics, collector, export)
    assert "costs the request thread 23 µs per request over B (exemplars 8 µs of it)" in text
    assert "The collector spends 36 µs per request" in text
    assert "without `span_metrics` it spends -8 µs, without the second privacy wall -5 µs" in text
    assert "against a spread of 35–37 µs between rounds" in text
    assert "| one reader, default exemplar filter (C, D) | **38.0** (37.0–40.0) | +23.0 µs |" in text
    assert "gRPC export **2.5×** cheaper (200 → 80 µs per request) and the HTTP one 2.5×" in text


def test_request_spans_are_real_sdk_spans_three_per_request() -> None:
    spans = request_spans(5)
    assert len(spans) == 15 and sum(1 for s in spans if s.parent is None) == 5
    assert {s.instrumentation_scope.name for s in spans} == {
        "opentelemetry.instrumentation.flask",
        "opentelemetry.instrumentation.sqlalchemy",
    }
