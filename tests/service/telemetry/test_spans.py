"""Traces of the real app through app/telemetry/: server spans per route, DB and GenAI children, errors."""

from __future__ import annotations

import secrets

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from app import telemetry
from app.local_llm import FAIL_ATTEMPTS_HEADER, FAIL_HEADER
from tests.support.telemetry import flush

pytestmark = pytest.mark.telemetry  # apps use the telemetry_state providers (tests/conftest.py)


def server_spans(exporter):
    return [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]


def by_route(exporter, method, route):
    flush()
    return [
        s
        for s in server_spans(exporter)
        if s.attributes.get("http.route") == route and s.attributes.get("http.request.method") == method
    ]


ROUTES = [
    ("POST", "/api/users", 201),
    ("POST", "/api/entries", 201),
    ("GET", "/api/entries", 200),
    ("GET", "/api/entries/<int:entry_id>", 200),
    ("PATCH", "/api/entries/<int:entry_id>", 200),
    ("POST", "/api/entries/<int:entry_id>/ai/<feature>", 200),
    ("DELETE", "/api/entries/<int:entry_id>", 204),
    ("GET", "/api/openapi.json", 200),
]


def test_every_route_has_a_server_span(client, register, span_exporter):
    headers = register("bob")
    eid = client.post("/api/entries", json={"text": "a day", "tags": ["t"]}, headers=headers).json["id"]
    assert client.get("/api/entries", headers=headers).status_code == 200
    assert client.get(f"/api/entries/{eid}", headers=headers).status_code == 200
    assert client.patch(f"/api/entries/{eid}", json={"tags": ["u"]}, headers=headers).status_code == 200
    assert client.post(f"/api/entries/{eid}/ai/summarize", headers=headers).status_code == 200
    assert client.delete(f"/api/entries/{eid}", headers=headers).status_code == 204
    assert client.get("/api/openapi.json").status_code == 200
    for method, route, status in ROUTES:
        spans = by_route(span_exporter, method, route)
        assert spans, (method, route, [s.name for s in server_spans(span_exporter)])
        s = spans[-1]
        assert s.name == f"{method} {route}"
        assert s.attributes["http.response.status_code"] == status
        assert s.status.status_code != StatusCode.ERROR


def test_health_endpoints_are_not_traced(client, span_exporter):
    assert client.get("/healthz").status_code == 200
    client.get("/readyz")
    flush()
    assert not [s for s in span_exporter.get_finished_spans() if "healthz" in s.name or "readyz" in s.name]
    assert not server_spans(span_exporter)


def test_db_and_genai_spans_are_children_of_the_request(client, register, span_exporter, llm_server):
    headers = register("carol")
    eid = client.post("/api/entries", json={"text": "walked the dog"}, headers=headers).json["id"]
    flush()
    span_exporter.clear()
    before = llm_server.stats()
    resp = client.post(f"/api/entries/{eid}/ai/reflect", headers=headers)
    assert resp.status_code == 200, resp.json
    flush()
    spans = span_exporter.get_finished_spans()
    (server,) = server_spans(span_exporter)
    trace_id = server.context.trace_id
    assert all(s.context.trace_id == trace_id for s in spans)
    ids = {s.context.span_id: s for s in spans}

    def descends(span):
        while span.parent is not None:
            if span.parent.span_id == server.context.span_id:
                return True
            span = ids.get(span.parent.span_id)
            if span is None:
                return False
        return False

    db = [s for s in spans if s.attributes.get("db.system.name") or s.attributes.get("db.system")]
    assert db and all(descends(s) for s in db)
    genai = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(genai) == 1 and descends(genai[0])
    g = genai[0]
    served = {k: llm_server.stats()[k] - before[k] for k in ("prompt_tokens", "completion_tokens")}
    assert g.attributes["gen_ai.usage.input_tokens"] == served["prompt_tokens"] > 0
    assert g.attributes["gen_ai.usage.output_tokens"] == served["completion_tokens"] > 0
    assert g.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert g.attributes["app.feature"] == "reflect"
    assert g.attributes["enduser.pseudo.id"] and g.attributes["enduser.pseudo.id"] != "carol"
    assert g.kind == SpanKind.CLIENT
    # openai 3.x talks through httpx2 (HTTPX2ClientInstrumentor): the HTTP client span of the call sits under it
    (http,) = [s for s in spans if s.kind == SpanKind.CLIENT and s.attributes.get("http.request.method") == "POST"]
    assert http.parent.span_id == g.context.span_id and http.attributes["app.feature"] == "reflect"


def test_error_path_marks_span_and_metric(client, register, span_exporter, metric_reader):
    """A real unhandled failure (the entries table is gone: the database raises), not a patched function; LLM
    failures are answered 502/503/504 by design (test_upstream_llm_failure_is_recorded_on_genai_span)."""
    headers = register("dave")
    client.post("/api/entries", json={"text": "x"}, headers=headers)
    with client.application.extensions["db_engine"].begin() as conn:
        conn.exec_driver_sql("DROP TABLE entries")
    flush()
    span_exporter.clear()
    resp = client.get("/api/entries", headers=headers)
    assert resp.status_code == 500
    assert resp.json == {"error": {"code": "internal_error", "message": "internal server error"}}
    flush()
    (server,) = server_spans(span_exporter)
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["http.response.status_code"] == 500
    assert server.attributes["error.type"] == "500"
    assert [e for e in server.events if e.name == "exception"]
    exc = next(e for e in server.events if e.name == "exception")
    assert exc.attributes["exception.type"].endswith("OperationalError")
    from tests.support import metric_points

    pts = [
        p
        for p in metric_points(metric_reader, "http.server.request.duration")
        if p.attributes.get("http.response.status_code") == 500
    ]
    assert pts and pts[0].attributes["error.type"] == "500"


def test_upstream_llm_failure_is_recorded_on_genai_span(client, register, span_exporter, monkeypatch):
    headers = register("erin")
    eid = client.post("/api/entries", json={"text": "x"}, headers=headers).json["id"]
    flush()
    span_exporter.clear()
    app = client.application
    llm = app.extensions["llm"]
    llm._client = None
    orig = llm.client

    def client_with_fault():
        c = orig()
        return c.with_options(default_headers={FAIL_HEADER: "500"}, max_retries=0)

    monkeypatch.setattr(llm, "client", client_with_fault)
    resp = client.post(f"/api/entries/{eid}/ai/summarize", headers=headers)
    assert resp.status_code in (502, 503)
    flush()
    genai = [s for s in span_exporter.get_finished_spans() if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert genai and genai[0].status.status_code == StatusCode.ERROR
    assert genai[0].attributes.get("error.type")
    (server,) = server_spans(span_exporter)
    assert server.attributes["http.response.status_code"] == resp.status_code


def test_resource_attributes(telemetry_state):
    res = telemetry_state.tracer_provider.resource.attributes
    assert res["service.name"] == "ai-diary"
    assert res["service.version"] and res["deployment.environment.name"]
    assert res["service.instance.id"] and res["process.pid"] > 0


@pytest.mark.parametrize("feature", ["summarize"])
def test_ai_call_context_outside_requests(feature, telemetry_state, span_exporter):
    tracer = telemetry_state.tracer_provider.get_tracer("t")
    with telemetry.ai_call_context(feature, "p-123"), tracer.start_as_current_span("inside"):
        pass
    with tracer.start_as_current_span("outside"):
        pass
    flush()
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    assert spans["inside"].attributes["app.feature"] == feature
    assert spans["inside"].attributes["enduser.pseudo.id"] == "p-123"
    assert "app.feature" not in spans["outside"].attributes


def llm_client_with(app, monkeypatch, **options):
    """The app's real openai client, with ``with_options(**options)`` (fault headers, query, retries)."""
    llm = app.extensions["llm"]
    llm._client = None
    orig = llm.client
    monkeypatch.setattr(llm, "client", lambda: orig().with_options(**options))


@pytest.mark.parametrize(
    "telemetry_overrides",
    [
        {
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST": ".*",
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE": ".*",
        }
    ],
)
def test_each_llm_attempt_is_an_http_client_span_under_the_genai_span(
    client, register, span_exporter, monkeypatch, telemetry_state
):
    """Two injected 500s, then success (the SDK retries twice): three POST client spans under the one chat span.
    Header capture is switched on for everything: the Authorization header (the API key) is recorded, and the
    privacy filter keeps it from every exported span; the query value in url.full is redacted."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    raw = InMemorySpanExporter()  # spans as recorded, before the privacy filter
    telemetry_state.tracer_provider.add_span_processor(SimpleSpanProcessor(raw))
    headers = register("fay")
    eid = client.post("/api/entries", json={"text": "x"}, headers=headers).json["id"]
    canary = "cnry" + secrets.token_hex(8)
    llm_client_with(
        client.application,
        monkeypatch,
        default_headers={FAIL_HEADER: "500", FAIL_ATTEMPTS_HEADER: "2"},
        default_query={"sig": canary},
        max_retries=2,
    )
    flush()
    span_exporter.clear()
    resp = client.post(f"/api/entries/{eid}/ai/summarize", headers=headers)
    assert resp.status_code == 200, resp.json
    flush()
    spans = span_exporter.get_finished_spans()
    (chat,) = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    http = [s for s in spans if s.kind == SpanKind.CLIENT and s.attributes.get("http.request.method") == "POST"]
    assert len(http) == 3 and all(s.parent.span_id == chat.context.span_id for s in http)
    assert sorted(s.attributes["http.response.status_code"] for s in http) == [200, 500, 500]
    assert all(s.attributes["app.feature"] == "summarize" and s.attributes["enduser.pseudo.id"] for s in http)
    assert all(s.attributes["url.full"].endswith("/chat/completions?sig=REDACTED") for s in http)
    keys = {k for s in http for k in s.attributes}
    assert "http.request.header.content_type" in keys  # positive control: headers were captured
    assert [k for k in keys if "authorization" in k or "api_key" in k] == []
    texts = str([(s.name, dict(s.attributes), [dict(e.attributes or {}) for e in s.events]) for s in spans])
    assert "test-key" not in texts and canary not in texts
    recorded = [
        s.attributes.get("http.request.header.authorization")
        for s in raw.get_finished_spans()
        if s.kind == SpanKind.CLIENT and s.attributes.get("http.request.method") == "POST"
    ]
    assert recorded == [("Bearer test-key",)] * 3  # positive control: it was there to be filtered


@pytest.mark.parametrize("telemetry_overrides", [{"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "flask, httpx2"}])
def test_disabled_instrumentations_are_not_wired(client, register, span_exporter):
    headers = register("gus")
    eid = client.post("/api/entries", json={"text": "x"}, headers=headers).json["id"]
    assert client.post(f"/api/entries/{eid}/ai/mood", headers=headers).status_code == 200
    flush()
    spans = span_exporter.get_finished_spans()
    assert not server_spans(span_exporter)
    assert [s for s in spans if s.attributes.get("db.system.name") or s.attributes.get("db.system")]  # sqlalchemy
    assert [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]  # openai stays
    assert not [s for s in spans if s.attributes.get("http.request.method") == "POST" and s.kind == SpanKind.CLIENT]


@pytest.mark.parametrize(
    "telemetry_overrides",
    [
        {"OTEL_PYTHON_EXCLUDED_URLS": "/api/openapi"},
        {"OTEL_PYTHON_FLASK_EXCLUDED_URLS": "/api/openapi", "OTEL_PYTHON_EXCLUDED_URLS": "/api/entries"},
    ],
)
def test_excluded_urls_follow_the_flask_instrumentation_precedence(client, register, span_exporter):
    """The Flask variable, else the generic one, else our default (/healthz,/readyz)."""
    headers = register("hal")
    assert client.get("/api/openapi.json").status_code == 200
    assert client.get("/api/entries", headers=headers).status_code == 200
    assert client.get("/healthz").status_code == 200
    routes = {
        s.attributes.get("http.route")
        for s in by_route(span_exporter, "GET", "/api/entries")
        + by_route(span_exporter, "GET", "/healthz")
        + by_route(span_exporter, "GET", "/api/openapi.json")
    }
    assert routes == {"/api/entries", "/healthz"}
