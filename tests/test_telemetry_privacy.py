"""The privacy policy on its own: which keys go, which values are redacted (app/telemetry_privacy.py)."""
from __future__ import annotations

import logging

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.telemetry_privacy import (REDACTED, Policy, PrivacySpanExporter, RedactingFilter, redact_query,
                                   redact_text, redact_url)


def test_query_and_url_values_go_names_stay():
    assert redact_query("q=secret&limit=5&flag") == f"q={REDACTED}&limit={REDACTED}&{REDACTED}"
    assert redact_url("https://h/p?token=abc#frag") == f"https://h/p?token={REDACTED}#{REDACTED}"
    assert redact_url("https://h/p") == "https://h/p"


def test_free_text_loses_quoted_literals_tokens_and_pydantic_inputs():
    out = redact_text("invalid literal for int(): 'dear diary' input_value='x', input_type=str Bearer abc.def.ghi sk-12345678901")
    assert "dear diary" not in out and "abc.def.ghi" not in out and "sk-12345678901" not in out
    assert "invalid literal for int()" in out


def test_policy_drops_headers_content_and_parameters():
    p = Policy()
    attrs = {"http.request.header.authorization": ("Bearer x",), "http.request.header.cookie": ("a",),
             "gen_ai.input.messages": "[...]", "gen_ai.output.messages": "[...]", "db.query.parameter.0": "x",
             "url.query": "q=diary", "http.route": "/r", "exception.message": "bad 'diary'"}
    clean, changed = p.attributes(attrs)
    assert changed
    assert set(clean) == {"url.query", "http.route", "exception.message"}
    assert clean["url.query"] == f"q={REDACTED}" and "diary" not in clean["exception.message"]
    same, changed = p.attributes({"http.route": "/r", "http.response.status_code": 200})
    assert not changed and same == {"http.route": "/r", "http.response.status_code": 200}
    opted_in, _ = Policy(capture_content=True).attributes(attrs)
    assert "gen_ai.input.messages" in opted_in and "http.request.header.authorization" not in opted_in


def test_span_exporter_wrapper_rewrites_only_what_it_must():
    mem = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(PrivacySpanExporter(mem, Policy())))
    t = tp.get_tracer("t")
    with t.start_as_current_span("GET /raw/path/canary", kind=SpanKind.SERVER,
                                 attributes={"http.request.method": "GET", "url.path": "/raw/path/canary"}) as s:
        s.add_event("exception", {"exception.message": "no 'canary' here"})
    with t.start_as_current_span("GET /r/<id>", kind=SpanKind.SERVER,
                                 attributes={"http.request.method": "GET", "http.route": "/r/<id>",
                                             "url.path": "/r/1"}):
        pass
    raw, routed = mem.get_finished_spans()
    assert raw.name == "GET" and raw.attributes["url.path"] == REDACTED
    assert "canary" not in raw.events[0].attributes["exception.message"]
    assert routed.name == "GET /r/<id>" and routed.attributes["url.path"] == "/r/1"


def test_logging_filter_redacts_messages():
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /api?q=%s with Bearer %s", ("secret", "tok123456"),
                            None)
    assert RedactingFilter().filter(rec)
    assert "secret" not in rec.getMessage() and "tok123456" not in rec.getMessage()
