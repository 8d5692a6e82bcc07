"""The privacy policy on its own: which keys go, which values are redacted (app/telemetry/_privacy.py)."""

from __future__ import annotations

import logging
import traceback

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from app.telemetry._privacy import (
    REDACTED,
    Policy,
    PrivacySpanExporter,
    RedactingFilter,
    redact_error,
    redact_query,
    redact_stacktrace,
    redact_text,
    redact_url,
)


def test_query_and_url_values_go_names_stay():
    assert redact_query("q=secret&limit=5&flag") == f"q={REDACTED}&limit={REDACTED}&{REDACTED}"
    assert redact_url("https://h/p?token=abc#frag") == f"https://h/p?token={REDACTED}#{REDACTED}"
    assert redact_url("https://h/p") == "https://h/p"


def test_free_text_loses_quoted_literals_tokens_and_pydantic_inputs():
    out = redact_text(
        "invalid literal for int(): 'dear diary' input_value='x', input_type=str Bearer abc.def.ghi sk-12345678901"
    )
    assert "dear diary" not in out and "abc.def.ghi" not in out and "sk-12345678901" not in out
    assert "invalid literal for int()" in out


def test_policy_drops_headers_content_and_parameters():
    p = Policy()
    attrs = {
        "http.request.header.authorization": ("Bearer x",),
        "http.request.header.cookie": ("a",),
        "gen_ai.input.messages": "[...]",
        "gen_ai.output.messages": "[...]",
        "db.query.parameter.0": "x",
        "url.query": "q=diary",
        "http.route": "/r",
        "exception.message": "bad 'diary'",
    }
    clean, changed = p.attributes(attrs)
    assert changed
    assert set(clean) == {"url.query", "http.route", "exception.message"}
    assert clean["url.query"] == f"q={REDACTED}" and "diary" not in clean["exception.message"]
    same, changed = p.attributes({"http.route": "/r", "http.response.status_code": 200})
    assert not changed and same == {"http.route": "/r", "http.response.status_code": 200}
    opted_in, _ = Policy(capture_content=True).attributes(attrs)
    assert "gen_ai.input.messages" in opted_in and "http.request.header.authorization" not in opted_in


def test_credential_headers_go_whatever_the_instrumentation_calls_them():
    """OTel Python's HTTP utilities write ``http.request.header.x_api_key`` ("-" as "_"); others keep the dash."""
    names = [
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "x_api_key",
        "x-api-key",
        "api_key",
        "openai_api_key",
        "wandb-api-key",
        "x_auth_token",
        "x_goog_api_key",
        "x_amz_security_token",
        "x_session_id",
        "x_hub_signature_256",
    ]
    attrs = {
        **{f"http.request.header.{n}": ("v",) for n in names},
        "http.response.header.set_cookie": ("v",),
        "http.request.header.content_type": ("application/json",),
    }
    clean, _ = Policy(capture_content=True).attributes(attrs)
    assert clean == {"http.request.header.content_type": ("application/json",)}


def test_genai_content_opt_in_keeps_only_content_keys():
    """The opt-in is for GenAI content: error text, URLs and status descriptions stay redacted."""
    row = "new row violates check constraint\nDETAIL: Failing row contains (7, dear diary SECRET)"
    tb = f'Traceback (most recent call last):\n  File "a.py", line 1, in f\n    g()\nIntegrityError: {row}'
    clean, changed = Policy(capture_content=True).attributes(
        {
            "exception.message": row,
            "exception.stacktrace": tb,
            "url.full": "http://h/v1?key=SECRET",
            "gen_ai.input.messages": "[SECRET-PROMPT]",
        }
    )
    assert changed and clean["gen_ai.input.messages"] == "[SECRET-PROMPT]"
    assert "SECRET" not in clean["exception.message"] and "violates check constraint" in clean["exception.message"]
    assert "SECRET" not in clean["exception.stacktrace"] and 'File "a.py"' in clean["exception.stacktrace"]
    assert clean["url.full"] == f"http://h/v1?key={REDACTED}"
    tp, mem = TracerProvider(), InMemorySpanExporter()
    tp.add_span_processor(SimpleSpanProcessor(PrivacySpanExporter(mem, Policy(capture_content=True))))
    with tp.get_tracer("t").start_as_current_span("INSERT") as span:
        span.set_status(Status(StatusCode.ERROR, row))
    (exported,) = mem.get_finished_spans()
    assert "SECRET" not in exported.status.description and "violates" in exported.status.description


def test_span_exporter_wrapper_rewrites_only_what_it_must():
    mem = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(PrivacySpanExporter(mem, Policy())))
    t = tp.get_tracer("t")
    with t.start_as_current_span(
        "GET /raw/path/canary",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "url.path": "/raw/path/canary"},
    ) as s:
        s.add_event("exception", {"exception.message": "no 'canary' here"})
    with t.start_as_current_span(
        "GET /r/<id>",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "http.route": "/r/<id>", "url.path": "/r/1"},
    ):
        pass
    raw, routed = mem.get_finished_spans()
    assert raw.name == "GET" and raw.attributes["url.path"] == REDACTED
    assert "canary" not in raw.events[0].attributes["exception.message"]
    assert routed.name == "GET /r/<id>" and routed.attributes["url.path"] == "/r/1"


def test_logging_filter_redacts_messages():
    rec = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "GET /api?q=%s with Bearer %s", ("secret", "tok123456"), None
    )
    assert RedactingFilter().filter(rec)
    assert "secret" not in rec.getMessage() and "tok123456" not in rec.getMessage()


def test_quoted_literals_of_any_length_and_across_lines_and_open_quotes_go():
    assert "CANARY" not in redact_text("x '" + "CANARY " + "y" * 2100 + "'")  # longer than the old 2000 cap
    assert "CANARY" not in redact_text('bad value "first line\nCANARY on the second"')
    assert "CANARY" not in redact_text("cut off 'CANARY " + "z" * 70000)  # open quote (and over the input bound)
    assert redact_text("plain words stay") == "plain words stay"


def test_error_messages_and_status_descriptions_are_content_free():
    pg = (
        'new row for relation "entries" violates check constraint "entries_len"\n'
        "DETAIL:  Failing row contains (7, dear diary CANARY, 2026-11-29)."
    )
    out = redact_error(pg)
    assert "CANARY" not in out and "violates check constraint" in out
    assert "CANARY" not in redact_error("insert failed DETAIL: Failing row contains (1, CANARY)")  # one line
    assert "tok123456" not in redact_error("auth failed for Bearer tok123456")
    mem = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(PrivacySpanExporter(mem, Policy())))
    with tp.get_tracer("t").start_as_current_span("INSERT diary", kind=SpanKind.CLIENT) as span:
        span.set_status(Status(StatusCode.ERROR, pg))
    (s,) = mem.get_finished_spans()
    assert "CANARY" not in s.status.description and "violates" in s.status.description


def test_stacktraces_keep_frames_and_lose_messages():
    secret = "CAN" + "ARY"  # not in the source lines the traceback quotes
    try:
        try:
            raise ValueError(f"bad {secret!r} value\nDETAIL: {secret}")
        except ValueError as exc:
            raise KeyError(secret) from exc
    except KeyError as exc:
        tb = "".join(traceback.format_exception(exc))
    out = redact_stacktrace(tb)
    assert "CANARY" not in out
    assert "test_stacktraces_keep_frames_and_lose_messages" in out and "ValueError: bad <str> value" in out
    assert out.count("Traceback (most recent call last):") == 2 and "KeyError" in out


def test_the_log_filter_fails_closed():
    """A record the policy could not check leaves with neither its body nor its attributes."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from app.telemetry._privacy import PrivacyLogProcessor

    class BrokenPolicy(Policy):
        def attributes(self, attrs):
            raise RuntimeError("policy bug")

    mem = InMemoryLogRecordExporter()
    lp = LoggerProvider()
    lp.add_log_record_processor(PrivacyLogProcessor(BrokenPolicy()))
    lp.add_log_record_processor(SimpleLogRecordProcessor(mem))
    log = logging.getLogger("test.failclosed")
    log.propagate = False
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    handler = LoggingHandler(logger_provider=lp)
    log.addHandler(handler)
    try:
        log.warning("diary says %s", "CANARY-secret", extra={"app.content.text": "CANARY-secret"})
    finally:
        log.removeHandler(handler)
    (rec,) = mem.get_finished_logs()
    assert "CANARY" not in rec.to_json()
