"""configure(): OTEL_* environment handling, OTEL_SDK_DISABLED, and running under opentelemetry-instrument."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcOTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from app import telemetry
from app.config import ConfigError, TelemetrySettings
from app.telemetry import _providers as telemetry_setup
from app.telemetry import _setup as telemetry_state_module
from tests.support import ROOT
from tests.support.telemetry import flush, reset_globals

pytestmark = pytest.mark.telemetry  # apps use the telemetry_state providers (tests/conftest.py)


@pytest.fixture
def fresh(telemetry_env):
    telemetry.shutdown(1.0)
    reset_globals()
    yield telemetry_env
    telemetry.shutdown(2.0)
    reset_globals()


def test_sdk_disabled_sets_no_providers_and_app_works(fresh, tmp_path, llm_server):
    fresh.setenv("OTEL_SDK_DISABLED", "true")
    from app import create_app

    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite3'}",
            "PSEUDONYM_SECRET": "s",
            "OPENAI_BASE_URL": llm_server.base_url,
            "OPENAI_API_KEY": "k",
        }
    )
    c = app.test_client()
    token = c.post("/api/users", json={"name": "zed"}).json["token"]
    h = {"Authorization": f"Bearer {token}"}
    eid = c.post("/api/entries", json={"text": "quiet"}, headers=h).json["id"]
    assert c.post(f"/api/entries/{eid}/ai/summarize", headers=h).status_code == 200
    assert telemetry.state().disabled
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    assert type(metrics.get_meter_provider()).__name__.startswith(("_Proxy", "NoOp"))
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    app.extensions["db_engine"].dispose()


def test_bad_values_name_the_variable(fresh):
    fresh.setenv("OTEL_TRACES_EXPORTER", "no-such-exporter")
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        telemetry.configure()
    fresh.setenv("OTEL_TRACES_EXPORTER", "none")
    fresh.setenv("OTEL_SDK_DISABLED", "maybe")
    with pytest.raises(ValueError, match="OTEL_SDK_DISABLED"):
        telemetry.configure()
    fresh.setenv("OTEL_SDK_DISABLED", "false")
    fresh.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "bogus")
    with pytest.raises(ValueError, match="HISTOGRAM_AGGREGATION"):
        telemetry.configure()


BAD_VALUES = [
    ("OTEL_TRACES_SAMPLER", "bogus"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "abc"),
    ("OTEL_BSP_SCHEDULE_DELAY", "0"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1.5"),
    ("OTEL_BSP_EXPORT_TIMEOUT", "-1"),
    ("OTEL_BLRP_MAX_QUEUE_SIZE", "abc"),
    ("OTEL_BLRP_SCHEDULE_DELAY", "soon"),
    ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "0"),
    ("OTEL_BLRP_EXPORT_TIMEOUT", "x"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "abc"),
    ("OTEL_METRIC_EXPORT_TIMEOUT", "nan"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "ten"),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-5"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
    ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json"),
    ("AI_DIARY_FAST_OTLP", "maybe"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[f"{n}={v}" for n, v in BAD_VALUES])
def test_values_the_sdk_would_only_warn_about_stop_the_start(fresh, name, value):
    fresh.setenv("OTEL_TRACES_EXPORTER", "otlp")  # the protocol is read where an OTLP exporter is chosen
    fresh.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    fresh.setenv(name, value)
    with pytest.raises(ConfigError, match=f"^{name} ") as info:
        telemetry.configure()
    assert repr(value) not in str(info.value)  # the variable is named, its value never echoed
    assert telemetry.state() is None


@pytest.mark.parametrize(
    ("sampler", "arg", "message"),
    [
        ("traceidratio", "abc", "OTEL_TRACES_SAMPLER_ARG"),
        ("parentbased_traceidratio", "1.5", "OTEL_TRACES_SAMPLER_ARG"),
        ("", "", ""),
        ("parentbased_traceidratio", "0", ""),
        ("ALWAYS_OFF", "ignored", ""),
    ],
)
def test_sampler_and_its_ratio(fresh, sampler, arg, message):
    fresh.setenv("OTEL_TRACES_SAMPLER", sampler)
    fresh.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    if message:
        with pytest.raises(ConfigError, match=message):
            telemetry.configure()
        return
    st = telemetry.configure()
    recording = st.tracer_provider.get_tracer("t").start_span("x").is_recording()
    assert recording is (sampler == "")


def test_batch_larger_than_queue_names_both_variables(fresh):
    fresh.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    fresh.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512")
    with pytest.raises(ConfigError, match="OTEL_BSP_MAX_EXPORT_BATCH_SIZE must not exceed OTEL_BSP_MAX_QUEUE_SIZE"):
        telemetry.configure()
    fresh.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100")
    assert telemetry.configure().tracer_provider is not None


def test_exporter_selection_follows_the_sdk(fresh):
    fresh.delenv("OTEL_TRACES_EXPORTER")
    fresh.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    fresh.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert (
        telemetry_setup.exporter_names("traces", TelemetrySettings.from_env()) == []
    )  # nothing configured: no exporter, no localhost:4317
    fresh.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    assert telemetry_setup.exporter_names("traces", TelemetrySettings.from_env()) == ["otlp_proto_grpc"]
    fresh.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert telemetry_setup.exporter_names("traces", TelemetrySettings.from_env()) == ["otlp_proto_http"]
    fresh.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    exps = telemetry_setup.load_exporters("traces", TelemetrySettings.from_env())
    assert [type(e).__name__ for e in exps] == ["ConsoleSpanExporter", "FastOTLPSpanExporter"]
    assert isinstance(exps[0], ConsoleSpanExporter) and isinstance(exps[1], OTLPSpanExporter)
    fresh.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    exps += telemetry_setup.load_exporters("traces", TelemetrySettings.from_env())
    assert [type(e).__name__ for e in exps[2:]] == ["ConsoleSpanExporter", "FastOTLPGrpcSpanExporter"]
    assert isinstance(exps[-1], GrpcOTLPSpanExporter)
    fresh.setenv("AI_DIARY_FAST_OTLP", "false")
    exps += telemetry_setup.load_exporters("traces", TelemetrySettings.from_env())
    assert type(exps[-1]) is GrpcOTLPSpanExporter
    fresh.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    exps += telemetry_setup.load_exporters("traces", TelemetrySettings.from_env())
    assert type(exps[-1]) is OTLPSpanExporter
    for e in exps:
        e.shutdown()


def test_wandb_entry_points_load_when_registered(fresh):
    from importlib.metadata import entry_points

    eps = {
        g: [e.name for e in entry_points(group=g)]
        for g in ("opentelemetry_traces_exporter", "opentelemetry_metrics_exporter", "opentelemetry_logs_exporter")
    }
    if not all("wandb" in names for names in eps.values()):
        pytest.fail(f"the wandb exporter entry points are not installed (pip install -e .): {eps}")
    from opentelemetry.sdk._configuration import _import_exporters
    from opentelemetry.sdk.trace.export import SpanExporter

    fresh.setenv("OTEL_TRACES_EXPORTER", "wandb")
    assert telemetry_setup.exporter_names("traces", TelemetrySettings.from_env()) == ["wandb"]
    traces, _, _ = _import_exporters(["wandb"], [], [])
    assert issubclass(traces["wandb"], SpanExporter)


def test_resource_env_wins_and_sampler_is_honoured(fresh):
    fresh.setenv("OTEL_SERVICE_NAME", "diary-canary")
    fresh.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,team=ai")
    fresh.setenv("OTEL_TRACES_SAMPLER", "always_off")
    fresh.setenv("APP_VERSION", "9.9.9")
    st = telemetry.configure()
    res = st.tracer_provider.resource.attributes
    assert res["service.name"] == "diary-canary" and res["deployment.environment.name"] == "staging"
    assert res["team"] == "ai" and res["service.version"] == "9.9.9"
    assert not st.tracer_provider.get_tracer("t").start_span("x").is_recording()


def test_init_worker_puts_the_worker_in_the_resource(fresh):
    telemetry.init_worker(3)
    try:
        st = telemetry.configure()
        res = st.tracer_provider.resource.attributes
        assert res["app.worker.id"] == 3 and "-w3-" in res["service.instance.id"]
    finally:
        telemetry_state_module._WORKER.clear()  # noqa: SLF001


def test_shutdown_is_bounded_and_idempotent(fresh):
    telemetry.configure()
    assert telemetry.shutdown(2.0) is True
    assert telemetry.shutdown(2.0) is True


SCRIPT = textwrap.dedent("""
    import json, sys, threading, urllib.request
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from werkzeug.serving import make_server
    from app import create_app
    from app import telemetry
    from app.local_llm import serve_in_thread

    tp = trace.get_tracer_provider()
    assert isinstance(tp, TracerProvider), type(tp)
    mem = InMemorySpanExporter()
    tp.add_span_processor(SimpleSpanProcessor(mem))
    llm = serve_in_thread()
    app = create_app({"DATABASE_URL": "sqlite:///" + sys.argv[1], "PSEUDONYM_SECRET": "s",
                      "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "k"})
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % srv.server_port

    def call(method, path, body=None, token=None):
        req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": "Bearer " + token} if token else {})})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    token = call("POST", "/api/users", {"name": "ivy"})["token"]
    eid = call("POST", "/api/entries", {"text": "hi"}, token)["id"]
    mem.clear()
    call("GET", "/api/entries/%d" % eid, token=token)
    get_spans = mem.get_finished_spans()
    mem.clear()
    call("POST", "/api/entries/%d/ai/summarize" % eid, token=token)
    ai_spans = mem.get_finished_spans()
    out = {"owned": telemetry.state().owned,
           "get_server": sum(1 for s in get_spans if s.kind.name == "SERVER"),
           # statement spans (auto-instrumentation also wraps Engine.connect: "connect" spans our wiring does not make)
           "get_db": sum(1 for s in get_spans if (s.attributes.get("db.system.name") or s.attributes.get("db.system"))
                         and s.name != "connect"),
           "ai_server": sum(1 for s in ai_spans if s.kind.name == "SERVER"),
           "ai_chat": sum(1 for s in ai_spans if s.attributes.get("gen_ai.operation.name") == "chat"),
           "route": [s.attributes.get("http.route") for s in get_spans if s.kind.name == "SERVER"]}
    srv.shutdown()
    llm.shutdown()
    sys.stdout.write("RESULT " + json.dumps(out) + "\\n")
""")


def test_under_opentelemetry_instrument_no_double_instrumentation(tmp_path, client, register, span_exporter):
    # the same request in-process, with our own configure(), gives the expected DB span count
    headers = register("ivy")
    eid = client.post("/api/entries", json={"text": "hi"}, headers=headers).json["id"]
    flush()
    span_exporter.clear()
    client.get(f"/api/entries/{eid}", headers=headers)
    flush()
    own_db = sum(
        1
        for s in span_exporter.get_finished_spans()
        if s.attributes.get("db.system.name") or s.attributes.get("db.system")
    )
    assert own_db >= 1
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME="ai-diary",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "opentelemetry-instrument"),
            sys.executable,
            str(script),
            str(tmp_path / "db.sqlite3"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and result, proc.stderr[-3000:]
    out = json.loads(result[0][len("RESULT ") :])
    assert out["owned"] is False
    assert out["get_server"] == 1 and out["route"] == ["/api/entries/<int:entry_id>"]
    assert out["get_db"] == own_db
    assert out["ai_server"] == 1 and out["ai_chat"] == 1


def test_switch_interval_default_and_validation(fresh):
    import sys as _sys

    before = _sys.getswitchinterval()
    try:
        telemetry.configure()
        assert _sys.getswitchinterval() == before  # opt-in only
        telemetry.shutdown(1.0)
        reset_globals()
        fresh.setenv("AI_DIARY_GIL_SWITCH_INTERVAL_MS", "0.5")
        telemetry.configure()
        assert abs(_sys.getswitchinterval() - 0.0005) < 1e-9
        telemetry.shutdown(1.0)
        reset_globals()
        fresh.setenv("AI_DIARY_GIL_SWITCH_INTERVAL_MS", "fast")
        with pytest.raises(ValueError, match="AI_DIARY_GIL_SWITCH_INTERVAL_MS"):
            telemetry.configure()
    finally:
        _sys.setswitchinterval(before)
