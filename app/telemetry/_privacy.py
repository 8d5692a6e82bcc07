"""The privacy policy applied to every signal before it leaves the process (see app/telemetry/).

Diary text, prompts, completions, API tokens and Authorization headers must never reach a sink. The first line of
defence is not collecting them (no header capture, GenAI content capture off, SQL without parameters); this module
is the second: a filter no exporter can bypass when app/telemetry/ builds the pipeline.

- Span attributes and event attributes: keys of headers that carry credentials (``*.header.*`` naming
  authorization, cookie, api-key, token, secret, password, signature or session; ``-`` or ``_``), GenAI message
  content (``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.system_instructions``, ``gen_ai.prompt*``,
  ``gen_ai.completion*``, ``gen_ai.tool.call.arguments|result``) and SQL parameters (``db.query.parameter.*``,
  ``db.statement.parameters``) are dropped. The GenAI content opt-in
  (``AI_DIARY_CAPTURE_GENAI_CONTENT=true``) keeps the content keys only: headers and parameters are always dropped,
  and everything below (URLs, exception messages, stack traces, status descriptions) is redacted all the same.
- Server spans whose request matched no route: the name becomes the method, ``url.path`` (and ``http.target``,
  ``http.url``, ``url.full`` of the old semconv) become REDACTED (raw paths are client-controlled text, and
  unbounded in cardinality).
- Values of ``url.query``, ``url.full``, ``http.target``, ``http.url`` keep their parameter names, not values.
- ``exception.message`` and span status descriptions: the content-free normalizer of the W&B error tables
  (otel_wandb.core._errors: quoted literals of any length, lines after the first -- e.g. PostgreSQL's ``DETAIL: Failing
  row contains (...)`` -- ``[SQL: ...]``/``[parameters: ...]``, parenthesized values, numbers), after pydantic
  ``input_value=...`` fragments and tokens; ``exception.stacktrace``: frames kept, each exception line normalized
  the same way, further message lines dropped (error messages often quote, or simply contain, the input).
- Log records: the same for attributes; bodies get query values and bearer tokens redacted.

Spans are filtered in a SpanExporter wrapper (runs on the batch thread, never on the request thread); logs in a
LogRecordProcessor placed before the batch processors; Python log records for stdout in a logging.Filter.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status

from app.telemetry._redact import (
    REDACTED,
    redact_error,
    redact_message,
    redact_query,
    redact_stacktrace,
    redact_text,
    redact_url,
)
from app.telemetry.logjson import RedactingFilter

__all__ = [
    "REDACTED",
    "Policy",
    "PrivacyLogProcessor",
    "PrivacySpanExporter",
    "RedactingFilter",
    "redact_error",
    "redact_message",
    "redact_query",
    "redact_stacktrace",
    "redact_text",
    "redact_url",
    "span_attributes",
    "span_events",
]
logger = logging.getLogger(__name__)

# header attributes as instrumentations name them: ``http.request.header.<name>``, lowercase, "-" as "_" (the
# OTel Python HTTP utilities) or kept: any name that carries credentials or a session
_HEADER_KEY = re.compile(
    r"(^|\.)header\.[\w.-]*(authorization|cookie|api[-_]?key|token|secret|password|"
    r"signature|session)",
    re.I,
)
_CONTENT_KEY = re.compile(
    r"^gen_ai\.(input\.messages|output\.messages|system_instructions|prompt|completion|tool\.call\.arguments|"
    r"tool\.call\.result|tool\.definitions)",
    re.I,
)
_ALWAYS_DROP_KEY = re.compile(
    r"^(db\.query\.parameter\.|db\.statement\.parameters|http\.request\.body|"
    r"http\.response\.body)",
    re.I,
)
_KEEP, _DROP, _URL, _QUERY, _EXC, _STACK = range(6)
_URL_KEYS = frozenset({"url.query", "url.full", "http.target", "http.url", "url.original"})
_RAW_PATH_KEYS = ("url.path", "http.target", "http.url", "url.full", "url.original")  # old and new semconv


def span_attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """A finished SDK span's attributes as the plain dict the SDK keeps them in (``BoundedAttributes._dict``), else
    ``span.attributes``. The public property wraps them in a MappingProxyType over BoundedAttributes, whose
    ``items()`` is the pure-Python ``ItemsView`` (one ``__getitem__`` call per key): on the export thread that
    iteration cost more than encoding the values. Read only, never modified."""
    raw = getattr(span, "_attributes", None)
    if type(raw) is dict:  # a ReadableSpan built from a dict (Policy.span's copies)
        return raw
    inner = getattr(raw, "_dict", None)
    if type(inner) is dict:
        return inner
    return span.attributes or {}


def span_events(span: ReadableSpan) -> Sequence[Event]:
    """``span.events`` without the copy (a tuple under the list's lock) when the span has none."""
    raw = getattr(span, "_events", None)
    if raw is not None and not len(raw):
        return ()
    return span.events


class Policy:
    """``capture_content`` (the GenAI opt-in) keeps the GenAI content keys; it changes nothing else."""

    def __init__(self, capture_content: bool = False) -> None:
        self.capture_content = capture_content
        self._actions: dict[str, int] = {}  # key -> _KEEP / _DROP / _URL / _QUERY / _EXC (bounded)

    def drop_key(self, key: str) -> bool:
        if _HEADER_KEY.search(key) or _ALWAYS_DROP_KEY.match(key):
            return True
        return not self.capture_content and bool(_CONTENT_KEY.match(key))

    def _action(self, key: str) -> int:
        action = self._actions.get(key)
        if action is None:
            if self.drop_key(key):
                action = _DROP
            elif key == "url.query":
                action = _QUERY
            elif key in _URL_KEYS:
                action = _URL
            elif key == "exception.message":
                action = _EXC
            elif key == "exception.stacktrace":
                action = _STACK
            else:
                action = _KEEP
            if len(self._actions) > 4096:
                self._actions.clear()
            self._actions[key] = action
        return action

    def attributes(self, attrs: Mapping[str, Any] | None) -> tuple[Mapping[str, Any] | None, bool]:
        """(clean attributes, changed?) — the input itself (do not modify it) when nothing needs redacting."""
        if not attrs:
            return None, False
        out: dict[str, Any] | None = None
        actions = self._actions
        for key, val in attrs.items():
            action = actions.get(key)
            if action is None:
                action = self._action(key)
            if action == _KEEP:
                continue
            new: Any = val
            if action == _DROP:
                new = None
            elif not isinstance(val, str):
                continue
            elif action == _QUERY:
                new = redact_query(val)
            elif action == _URL:
                new = redact_url(val)
            elif action == _EXC:
                new = redact_error(val)
            elif action == _STACK:
                new = redact_stacktrace(val)
            if new is not None and new == val:
                continue
            if new is not val:
                if out is None:
                    out = dict(attrs)
                if new is None:
                    del out[key]
                else:
                    out[key] = new
        return (out, True) if out is not None else (attrs, False)

    def span(self, span: ReadableSpan) -> ReadableSpan:
        attrs, changed = self.attributes(span_attributes(span))
        name = span.name
        if span.kind == SpanKind.SERVER and attrs is not None and "http.route" not in attrs:
            # no route matched: the raw path is client-controlled text (the upstream span name uses it)
            method = str(attrs.get("http.request.method") or name.split(" ", 1)[0])
            if name != method:
                name, changed = method, True
            raw_path_keys = [k for k in _RAW_PATH_KEYS if attrs.get(k)]
            if raw_path_keys:
                redacted = dict(attrs)
                for k in raw_path_keys:
                    redacted[k] = REDACTED
                attrs, changed = redacted, True
        events = []
        for ev in span_events(span):
            ev_attrs, ev_changed = self.attributes(ev.attributes)
            changed |= ev_changed
            events.append(Event(ev.name, ev_attrs, ev.timestamp) if ev_changed else ev)
        status = span.status
        if status.description:
            desc = redact_error(status.description)
            if desc != status.description:
                status, changed = Status(status.status_code, desc), True
        if not changed:
            return span
        return ReadableSpan(
            name=name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attrs,
            events=events,
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


class PrivacySpanExporter(SpanExporter):
    """Wraps an exporter; every span passes the policy first. Never raises out of export()."""

    def __init__(self, exporter: SpanExporter, policy: Policy) -> None:
        self.exporter = exporter
        self.policy = policy

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            clean = [self.policy.span(s) for s in spans]
        except Exception:  # noqa: BLE001 - telemetry must never raise; dropping beats leaking
            logger.exception("privacy filter failed; dropping %d spans", len(spans))
            return SpanExportResult.FAILURE
        return self.exporter.export(clean)

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class PrivacyLogProcessor(LogRecordProcessor):
    """First log processor: rewrites the record in place before any exporting processor sees it."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def on_emit(self, log_record: Any) -> None:
        try:
            rec = log_record.log_record
            attrs, changed = self.policy.attributes(rec.attributes)
            if changed and attrs is not None:  # changed: attrs is the cleaned copy
                for key in list(rec.attributes.keys()):
                    if key not in attrs:
                        del rec.attributes[key]
                for key, val in attrs.items():
                    if rec.attributes.get(key) is not val:
                        rec.attributes[key] = val
            if isinstance(rec.body, str):
                rec.body = redact_message(rec.body)
        except Exception:  # noqa: BLE001 - fail closed: what could not be checked does not leave
            logger.debug("privacy log filter failed; body and attributes dropped", exc_info=True)
            try:
                rec = log_record.log_record
                rec.body = REDACTED
                for key in list(rec.attributes.keys()):
                    del rec.attributes[key]
            except Exception:  # noqa: BLE001
                pass

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
