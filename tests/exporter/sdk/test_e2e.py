"""End to end: the real app (Flask test client, real openai SDK against the local LLM server) wired through
app/telemetry/ with our three exporters -> a real offline W&B run -> read back from disk and checked against
what was done: requests made, errors injected, the LLM server's own usage totals, pricing, exact p95."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text as sql_text

from app.local_llm import FAIL_HEADER
from otel_wandb import sdk
from otel_wandb.config import ExportConfig
from otel_wandb.core import CoreConfig
from otel_wandb.pipeline import Pipeline
from otel_wandb.pricing import PriceList
from otel_wandb.runfile import find_runs, read_run
from otel_wandb.sink import WandbSink
from tests.support import exact
from tests.support.telemetry import flush

pytestmark = pytest.mark.telemetry  # apps use the telemetry_state providers (tests/conftest.py)

PRICES = PriceList.load(ExportConfig.from_env({}).pricing_path)


@pytest.fixture
def wandb_dir(tmp_path):
    return tmp_path / "wandb-out"


@pytest.fixture
def pipe(wandb_dir):
    sink = WandbSink(mode="offline", dir=str(wandb_dir), project="e2e")
    p = Pipeline(sink, interval_s=3600, core_config=CoreConfig(pricing=PRICES, max_error_rows=20, slowest_n=5))
    yield p
    p.shutdown(10)


@pytest.fixture
def span_exporter(pipe):
    return sdk.WandbSpanExporter(pipeline=pipe)


@pytest.fixture
def metric_reader(pipe):
    return PeriodicExportingMetricReader(sdk.WandbMetricExporter(pipeline=pipe), export_interval_millis=3_600_000)


@pytest.fixture
def log_exporter(pipe):
    return sdk.WandbLogExporter(pipeline=pipe)


def test_app_traffic_lands_in_the_offline_run_with_exact_numbers(
    make_app, telemetry_state, pipe, wandb_dir, llm_server, monkeypatch
):
    raw = InMemorySpanExporter()  # the same spans, unaggregated, for the exact reference values
    telemetry_state.tracer_provider.add_span_processor(SimpleSpanProcessor(raw))
    app = make_app()
    client = app.test_client()
    before = llm_server.stats()
    made = 0
    resp = client.post("/api/users", json={"name": "e2e"})
    made += 1
    headers = {"Authorization": f"Bearer {resp.json['token']}"}
    ids = []
    for i in range(8):
        ids.append(client.post("/api/entries", json={"text": f"a quiet day number {i}"}, headers=headers).json["id"])
        made += 1
    ok_ai = 0
    for i, eid in enumerate(ids):
        feature = ("summarize", "reflect", "mood")[i % 3]
        assert client.post(f"/api/entries/{eid}/ai/{feature}", headers=headers).status_code == 200
        made += 1
        ok_ai += 1
    # a long entry (> 1024 prompt tokens) asked twice: the second call reports cached tokens, priced apart
    long_id = client.post(
        "/api/entries", json={"text": "a long and quiet day by the sea. " * 160}, headers=headers
    ).json["id"]
    made += 1
    for _ in range(2):
        assert client.post(f"/api/entries/{long_id}/ai/reflect", headers=headers).status_code == 200
        made += 1
        ok_ai += 1
    assert client.get("/api/entries/999999", headers=headers).status_code == 404  # a 4xx is not an error
    made += 1
    llm = app.extensions["llm"]
    llm._client = None
    orig = llm.client
    monkeypatch.setattr(llm, "client", lambda: orig().with_options(default_headers={FAIL_HEADER: "500"}, max_retries=0))
    injected = 3
    for eid in ids[:injected]:
        assert client.post(f"/api/entries/{eid}/ai/summarize", headers=headers).status_code >= 500
        made += 1
    after = llm_server.stats()
    flush(telemetry_state)
    telemetry_state.meter_provider.force_flush()
    assert pipe.force_flush(60)
    assert pipe.shutdown(20)

    (run_dir,) = find_runs(wandb_dir)
    run = read_run(run_dir)
    rows = [h for h in run.history if "http/requests" in h]
    # one interval holds all the traffic; the sink's own INFO log ("run is offline ...", emitted while the first
    # interval is written) may land in a second, final interval
    assert 1 <= len(rows) == pipe.log_calls <= 2
    assert all(r["http/requests"] == 0 for r in rows[1:])
    row = rows[0]
    assert row["http/requests"] == made
    assert row["http/errors"] == injected
    assert row["http/requests@status_class=4xx"] == 1
    # tokens: the LLM server's own usage totals
    tokens_in = after["prompt_tokens"] - before["prompt_tokens"]
    tokens_out = after["completion_tokens"] - before["completion_tokens"]
    cached = after["cached_tokens"] - before["cached_tokens"]
    assert tokens_in > 0 and tokens_out > 0 and cached >= 1024
    assert row["ai/input_tokens_total"] == tokens_in and row["ai/output_tokens_total"] == tokens_out
    assert row["ai/cached_tokens_total"] == cached
    assert row["ai/calls"] == ok_ai + injected and row["ai/errors"] == injected
    price = PRICES.prices["gpt-4o-mini"]
    pin, pout, pcached = price.input, price.output, price.cached_input
    cost = (tokens_in - cached) * pin + tokens_out * pout + cached * pcached
    assert row["ai/cost_usd"] == pytest.approx(cost, rel=1e-9)
    assert row["app.ai.cost/total"] == pytest.approx(cost, rel=1e-6), "the app's own cost metric agrees"
    # latency: p95 of the very same server spans
    durations = [(s.end_time - s.start_time) / 1e6 for s in raw.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(durations) == made
    assert row["http/p95_ms"] == pytest.approx(exact(durations, 0.95), rel=0.011)
    # tables present, bounded
    errors = run.tables["tables/recent_errors"]
    assert 1 <= len(errors) <= 20
    assert all(
        e["route"] == "/api/entries/<int:entry_id>/ai/<feature>"
        for e in errors
        if e["exception_type"].startswith("HTTP")
    )
    assert len(run.tables["tables/slowest_traces"]) == 5
    assert run.tables["tables/error_groups"]
    # privacy: no diary text anywhere in the run
    blob = (run_dir / next(run_dir.glob("run-*.wandb")).name).read_bytes()
    assert b"a quiet day number" not in blob
    for f in (run_dir / "files").rglob("*.json"):
        assert "a quiet day number" not in f.read_text()


def test_an_unhandled_exception_is_one_error_group_in_the_run(make_app, telemetry_state, pipe, wandb_dir):
    """The request span's exception event and the catch-all handler's ERROR log (exc_info) of the same exception
    make one group, one occurrence per request, in the real app and a real offline run."""
    app = make_app()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {client.post('/api/users', json={'name': 'g'}).json['token']}"}
    with app.extensions["db_engine"].begin() as conn:
        conn.execute(sql_text("DROP TABLE entries"))  # a real database failure on every entry route
    for _ in range(3):
        assert client.get("/api/entries", headers=headers).status_code == 500
    flush(telemetry_state)
    assert pipe.force_flush(60) and pipe.shutdown(20)

    run = read_run(find_runs(wandb_dir)[0])
    groups = run.tables["tables/error_groups"]
    assert len(groups) == 1, groups  # not a second "log:app.errors" group for the handler's log line
    assert groups[0]["type"].endswith("OperationalError")
    assert groups[0]["count"] == 3
    assert "no such table" in groups[0]["message"]


SCRIPT = textwrap.dedent("""
    import logging, time
    from opentelemetry import trace, metrics
    from opentelemetry.trace import SpanKind
    tracer = trace.get_tracer("script")
    counter = metrics.get_meter("script").create_counter("app.ai.cost", unit="USD")
    for i in range(40):
        with tracer.start_as_current_span("GET /work", kind=SpanKind.SERVER, attributes={
                "http.route": "/work", "http.request.method": "GET",
                "http.response.status_code": 500 if i < 4 else 200}):
            time.sleep(0.001)  # the span lasts a millisecond
    counter.add(0.5, {"app.feature": "mood"})
    logging.getLogger("script").error("job %d failed", 7)
""")


@pytest.mark.integration  # a real `opentelemetry-instrument python` process writing an offline run
def test_opentelemetry_instrument_entry_points_produce_a_run(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WANDB_"))}
    env.update(
        OTEL_TRACES_EXPORTER="wandb",
        OTEL_METRICS_EXPORTER="wandb",
        OTEL_LOGS_EXPORTER="wandb",
        OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED="true",
        OTEL_SERVICE_NAME="job",
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path),
        WANDB_EXPORT_INTERVAL="3600",
        OTEL_METRIC_EXPORT_INTERVAL="3600000",
    )
    bindir = Path(sys.executable).parent
    proc = subprocess.run(
        [str(bindir / "opentelemetry-instrument"), sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = find_runs(tmp_path)
    run = read_run(run_dir)
    rows = [h for h in run.history if "http/requests" in h]
    assert sum(r["http/requests"] for r in rows) == 40
    assert sum(r["http/errors"] for r in rows) == 4
    assert run.summary["app.ai.cost/total"] == {"last": pytest.approx(0.5)}  # a running total's summary
    logged = [e for e in run.tables["tables/recent_errors"] if e["exception_type"] == "log:script"]
    assert [e["message"] for e in logged] == ["job <num> failed"]  # the normalized, content-free message
    # exactly the ERROR logs of the process: ours, plus any the instrumentation loader itself logs at ERROR
    # (here: "sqlalchemy only instruments ..." for an installed version outside its range)
    error_logs = [e for e in run.tables["tables/recent_errors"] if e["exception_type"].startswith("log:")]
    assert sum(r.get("logs/count@severity=ERROR", 0) for r in rows) == len(error_logs)
    assert run.exit_code == 0
