"""The real docker-compose.yml on a real Docker engine (tests/support/docker.py: a private dockerd, stopped by pid at
the end; upstream images where the registry answers, stand-ins with the same roles where it does not, said so).

Like a fresh checkout: no .env, `docker compose build` then `up`; every service must be healthy within
HEALTH_TIMEOUT_S. Then, on the running stack:
  - the API flows (register, entries, the three AI features through the local LLM: no OPENAI_API_KEY);
  - the development defaults announced (local LLM, pseudonym key, bridge token), production refusing to start
    without PSEUDONYM_SECRET;
  - the collector's combined.log / error.log / audit.log on the logs volume, routed right;
  - Jaeger's query API: ai-diary traces with a server span holding a GenAI descendant (model, tokens), and nowhere
    the diary text that was sent;
  - faults under steady traffic: the collector container SIGKILLed (`docker kill`) and started again, the bridge
    container restarted: no API request fails, and afterwards every request's server span is in Jaeger and in the
    W&B runs (the collector's persistent queues are on the collector-queue volume);
  - `docker compose stop` (what `down` does before removing): every container exits on its signal within its grace
    period (none killed: no 137), and each W&B run is finished; the runs hold request totals equal to what was sent.
Figures (build time, image sizes and what takes the space, start-up time, the fault runs) are printed at the end.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ClientThreads
from tests.support.docker import APP_IMAGE, Harness, http_json, poll

# the first run on a machine builds everything: Compose from Go modules (~3 min), the python stand-in (~1 min),
# Jaeger from Go modules (~8 min niced on 2 cores), the app image; on GitHub Actions the images are pulled
pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]

HEALTH_TIMEOUT_S = 120  # stated: `up` -> every service healthy (measured ~40 s here; the healthchecks run every 10 s)
APP_IMAGE_MAX_BYTES = 300 * 10**6
CANARY = f"compose-real-canary-{uuid.uuid4().hex[:12]}"
FEATURES = ("summarize", "reflect", "mood")
CLIENTS = 4
REPORT: dict[str, Any] = {}  # figures, printed at the end
STATE: dict[str, str] = {}  # what later tests take from earlier ones (the user's token)


class Api:
    """Every request the test makes to the app, counted: each one must become one server span (/healthz is not
    traced by design and goes through ``health``)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.lock = threading.Lock()
        self.sent = 0
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []

    def request(self, client: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response | None:
        try:
            response = client.request(method, path, **kw)
        except httpx.HTTPError as exc:  # a transport failure is a failed request (it may have reached the app)
            with self.lock:
                self.sent += 1
                self.errors.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            return None
        with self.lock:
            self.sent += 1
            self.statuses[response.status_code] += 1
        return response

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, timeout=60, headers=headers)

    def failed(self) -> int:
        with self.lock:
            return len(self.errors) + sum(n for status, n in self.statuses.items() if status >= 500)


class Traffic(ClientThreads):
    """CLIENTS threads creating, reading and listing entries (the diary text holds the canary), ~25 iterations/s in
    all, until stopped."""

    join_s = 120.0

    def __init__(self, api: Api, token: str) -> None:
        self.api, self.token = api, token
        super().__init__(CLIENTS)

    def client(self, i: int) -> None:
        with self.api.client(self.token) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                r = self.api.request(c, "POST", "/api/entries", json={"text": f"client {i} day {n}: {CANARY}"})
                if r is not None and r.status_code == 201:
                    self.api.request(c, "GET", f"/api/entries/{r.json()['id']}")
                self.api.request(c, "GET", "/api/entries", params={"limit": 5})
                self.stop.wait(0.15)


def _say(text: str) -> None:
    print(text, flush=True)
    REPORT.setdefault("log", []).append(text)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("compose-real"))
    require_upstream = os.environ.get("AI_DIARY_COMPOSE_IMAGES", "") == "upstream"
    try:
        h.install()
        h.start_engine()
        h.prepare_images(require_upstream)
        h.build()
        h.choose_ports()
        t0 = time.monotonic()
        up = h.compose("up", "-d", "--no-build", timeout=600, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        h.wait_healthy(HEALTH_TIMEOUT_S)
        h.timings["up -> all healthy"] = time.monotonic() - t0  # `up -d` itself waits for depends_on conditions
        yield h
    finally:
        try:
            if h.engine_started:
                h.compose("down", "-v", "--remove-orphans", "--timeout", "60", timeout=300, check=False)
        finally:
            h.stop_engine()
            _report(h, request)


def _report(h: Harness, request: pytest.FixtureRequest) -> None:
    lines = ["", "== compose on a real engine: figures =="]
    lines += [f"  {k:<34} {v:7.1f} s" for k, v in h.timings.items()]
    lines += [f"  image {k:<28} {v}" for k, v in h.images.items()]
    for key, value in REPORT.items():
        if key != "log":
            lines.append(f"  {key}: {json.dumps(value) if not isinstance(value, str) else value}")
    lines += [f"  note: {n}" for n in h.notes]
    text = "\n".join(lines)
    (h.work / "report.txt").write_text(text + "\n")
    # in make test's own output, not only in a failure's captured teardown: suspend capturing while writing
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            for line in lines:
                reporter.write_line(line)
    else:
        print(text)


@pytest.fixture(scope="module")
def api(stack: Harness) -> Api:
    return Api(f"http://127.0.0.1:{stack.ports['APP_PORT']}")


def jaeger_traces(stack: Harness) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{stack.ports['JAEGER_UI_PORT']}/api/traces?service=ai-diary&limit=100000&lookback=2h"
    return list(http_json(url, timeout=60)["data"])


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def server_span_ids(traces: list[dict[str, Any]]) -> set[str]:
    return {s["spanID"] for t in traces for s in t["spans"] if _tags(s).get("span.kind") == "server"}


def bridge_stats(stack: Harness) -> dict[str, int]:
    code = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:4319/healthz', timeout=5).read().decode())"
    return dict(json.loads(stack.exec_python("wandb-bridge", code)))


# -- 1. start-up ---------------------------------------------------------------------------------------------------


def test_every_service_healthy_within_the_stated_time(stack: Harness) -> None:
    services = {c["Service"]: c for c in stack.ps()}
    assert set(services) == {"init-volumes", "app", "otel-collector", "wandb-bridge", "jaeger", "local-llm"}
    assert stack.timings["up -> all healthy"] <= HEALTH_TIMEOUT_S
    REPORT["health"] = (
        f"all healthy {stack.timings['up -> all healthy']:.0f} s after `up` (stated: {HEALTH_TIMEOUT_S} s)"
    )
    # published on loopback only (dockerd's --ip does not apply to compose networks: the file names 127.0.0.1)
    for svc in ("app", "jaeger", "wandb-bridge"):
        bindings = stack.inspect(svc)["HostConfig"]["PortBindings"]
        assert bindings and all(b["HostIp"] == "127.0.0.1" for v in bindings.values() for b in v), bindings


def test_image_sizes(stack: Harness) -> None:
    sizes = stack.image_sizes()
    breakdown = stack.app_image_breakdown()
    base = stack.base_images()[0]
    venv = breakdown.pop("/opt/venv (all)")
    top = dict(sorted(breakdown.items(), key=lambda kv: -kv[1])[:8])
    REPORT["image sizes (MB)"] = {k: round(v / 1e6) for k, v in sizes.items() if not k.startswith("ai-diary-standin")}
    REPORT["app image = base + venv (MB)"] = {
        f"base {base} ({stack.images.get(base)})": round(sizes[base] / 1e6),
        "/opt/venv": round(venv / 1e6),
        **{f"  {k}": round(v / 1e6, 1) for k, v in top.items()},
    }
    assert sizes[APP_IMAGE] <= APP_IMAGE_MAX_BYTES, f"{sizes[APP_IMAGE] / 1e6:.0f} MB"


# -- 2. the API flows, the announced defaults, the sinks -----------------------------------------------------------


def test_api_flows_through_the_local_llm(stack: Harness, api: Api) -> None:
    with api.client() as c:
        health = c.get("/healthz")  # not traced (excluded URL): not counted
        assert health.status_code == 200 and health.json()["status"] == "ok"
        user = api.request(c, "POST", "/api/users", json={"name": "compose-real"})
        assert user is not None and user.status_code == 201, user and user.text
        token = user.json()["token"]
    STATE["token"] = token
    with api.client(token) as c:
        ids = []
        for i in range(3):
            r = api.request(c, "POST", "/api/entries", json={"text": f"entry {i}: {CANARY} by the sea", "tags": ["x"]})
            assert r is not None and r.status_code == 201, r and r.text
            ids.append(r.json()["id"])
        listed = api.request(c, "GET", "/api/entries", params={"limit": 10})
        assert listed is not None and listed.status_code == 200 and len(listed.json()["items"]) == 3
        patched = api.request(c, "PATCH", f"/api/entries/{ids[0]}", json={"text": f"edited {CANARY}"})
        assert patched is not None and patched.status_code == 200
        bad = api.request(c, "POST", "/api/entries", json={"text": ""})
        assert bad is not None and bad.status_code == 400
        for feature in FEATURES:
            r = api.request(c, "POST", f"/api/entries/{ids[1]}/ai/{feature}")
            assert r is not None and r.status_code == 200, (feature, r and r.text)
            assert r.json()["result"], r.json()
        got = api.request(c, "GET", f"/api/entries/{ids[1]}")
        assert got is not None and got.status_code == 200
    assert api.failed() == 0, api.errors


def test_development_defaults_are_announced_and_production_refuses(stack: Harness) -> None:
    # the bridge starts its W&B run with the first interval that has data (WANDB_EXPORT_INTERVAL, 15 s here)
    logs = poll(
        lambda: (
            (out := stack.compose("logs", "--no-color", "app", "wandb-bridge").stdout)
            and "W&B run is offline" in out
            and out
        ),
        60,
        "the bridge's offline-run line",
        interval=2,
    )
    assert "no OPENAI_API_KEY: the AI features use the local LLM stand-in at http://local-llm:8001/v1" in logs
    assert "PSEUDONYM_SECRET is not set: pseudonyms use the development key" in logs
    assert "WANDB_BRIDGE_TOKEN is not set" in logs
    prod = stack.compose(
        "run", "--rm", "--no-deps", "-T", "-e", "DEPLOYMENT_ENVIRONMENT=production", "app", timeout=120, check=False
    )
    assert prod.returncode != 0
    assert "PSEUDONYM_SECRET is required when DEPLOYMENT_ENVIRONMENT is production" in prod.stdout + prod.stderr


def _genai_under_server(trace: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    spans = {s["spanID"]: s for s in trace["spans"]}
    for span in trace["spans"]:
        tags = _tags(span)
        if "gen_ai.request.model" not in tags:
            continue
        parent = span
        while refs := [r for r in parent.get("references", []) if r["refType"] == "CHILD_OF"]:
            parent = spans.get(refs[0]["spanID"], {})
            if _tags(parent).get("span.kind") == "server":
                return parent, span
    return None


def test_traces_in_jaeger_hold_genai_spans_and_no_diary_text(stack: Harness, api: Api) -> None:
    sent = api.sent
    traces = poll(
        lambda: (t := jaeger_traces(stack)) and len(server_span_ids(t)) >= sent and t,
        90,
        f"{sent} server spans of ai-diary in Jaeger",
    )
    assert len(server_span_ids(traces)) == sent
    found = [pair for t in traces if (pair := _genai_under_server(t))]
    assert len(found) == len(FEATURES), [server["operationName"] for server, _ in found]
    for server, genai in found:
        tags = _tags(genai)
        assert tags["gen_ai.request.model"] == "gpt-4o-mini", tags
        assert tags["gen_ai.usage.input_tokens"] > 0 and tags["gen_ai.usage.output_tokens"] > 0, tags
        assert "/ai/" in server["operationName"], server["operationName"]
    REPORT["jaeger GenAI span"] = {k: v for k, v in _tags(found[0][1]).items() if k.startswith("gen_ai.")}
    assert CANARY not in json.dumps(traces), "diary text reached Jaeger"


PROBE = """
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
provider = LoggerProvider()
exporter = OTLPLogExporter(endpoint="otel-collector:4317", insecure=True)
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
logger = provider.get_logger("routing-probe")
logger.emit(severity_number=SeverityNumber.ERROR, severity_text="ERROR", body="probe error MARKER")
logger.emit(severity_number=SeverityNumber.INFO, severity_text="INFO", body="probe info MARKER")
provider.shutdown()
"""


def test_collector_log_files_routed_right(stack: Harness, tmp_path: Path) -> None:
    """The app's records (its audit trail among them) and two probe records sent over OTLP from inside the network
    (the app logs nothing at ERROR when nothing fails): combined.log holds everything, error.log exactly the records
    of severity >= ERROR, audit.log exactly those of the audit scope."""
    from tests.support.collector import read_log_records

    marker = uuid.uuid4().hex
    stack.exec_python("app", PROBE.replace("MARKER", marker))

    def copied() -> Path | None:
        d = stack.volume_copy("logs", tmp_path / f"logs-{time.monotonic_ns()}")
        events = [(r["body"] or "").rsplit(" ", 1)[-1] for r in read_log_records(d, "audit.log")]
        errors = [r["body"] for r in read_log_records(d, "error.log")]
        return d if events.count("entry.create") >= 3 and "ai.mood" in events and errors else None

    logs = poll(copied, 60, "the audit records of the API flows in audit.log, the ERROR probe in error.log")
    combined = read_log_records(logs, "combined.log")
    error = read_log_records(logs, "error.log")
    audit = read_log_records(logs, "audit.log")
    assert {r["body"] for r in combined} >= {f"probe error {marker}", f"probe info {marker}"}
    assert f"probe error {marker}" in {r["body"] for r in error}
    assert all(r["severity"] >= 17 for r in error)  # SEVERITY_NUMBER_ERROR
    assert all(r["scope"] == "audit" for r in audit)
    # combined holds everything, the two others exactly their share of it
    assert sum(r["scope"] == "audit" for r in combined) == len(audit)
    assert sum(r["severity"] >= 17 for r in combined) == len(error)
    events = Counter((r["body"] or "").rsplit(" ", 1)[-1] for r in audit)  # the body is "audit <action>"
    assert events["user.register"] == 1 and events["entry.create"] == 3 and events["entry.update"] == 1, events
    assert all(events[f"ai.{f}"] == 1 for f in FEATURES), events
    for path in logs.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), f"diary text in {path.name}"
    REPORT["log files (records)"] = {"combined.log": len(combined), "error.log": len(error), "audit.log": len(audit)}


def test_live_dashboard_shows_the_traffic_sent(stack: Harness, api: Api) -> None:
    """Issue 14 on the real stack: the bridge's dashboard, through the port compose publishes on the host's loopback,
    shows request totals equal to what was sent (after one export interval), the run's identity, no diary text."""
    base = f"http://127.0.0.1:{stack.ports['DASHBOARD_PORT']}"
    sent = api.sent
    t0 = time.monotonic()
    # before the bridge's first interval with data the total is null (not measured yet), never a made-up 0
    data = poll(
        lambda: (
            ((d := http_json(f"{base}/dashboard.json?range=all", timeout=10))["totals"]["requests"] or 0) >= sent and d
        ),
        90,
        f"{sent} requests on the live dashboard",
        interval=1,
    )
    assert data["totals"]["requests"] == sent, (data["totals"], sent)
    page = httpx.get(f"{base}/dashboard", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "wandb sync" in page.text, "the offline run's identity names the upload command"
    assert CANARY not in page.text and CANARY not in json.dumps(data)
    assert httpx.post(f"{base}/dashboard", timeout=10).status_code == 405  # read-only
    REPORT["live dashboard"] = {
        "requests shown": data["totals"]["requests"],
        "requests sent": sent,
        "shown after s": round(time.monotonic() - t0, 1),
    }


# -- 3. faults under steady traffic --------------------------------------------------------------------------------


def test_bridge_restart_under_traffic_fails_no_request(stack: Harness, api: Api) -> None:
    before = api.sent
    with Traffic(api, STATE["token"]):
        time.sleep(5)
        t0 = time.monotonic()
        stack.compose("restart", "wandb-bridge", timeout=120)
        restart_s = time.monotonic() - t0
        poll(lambda: stack.inspect("wandb-bridge")["State"].get("Health", {}).get("Status") == "healthy", 90,
             "wandb-bridge healthy again", interval=0.5)  # fmt: skip
        time.sleep(5)
    assert api.failed() == 0, api.errors[:5]
    REPORT["bridge restart"] = {"requests": api.sent - before, "failed": api.failed(), "restart_s": round(restart_s, 1)}


def test_collector_kill_under_traffic_fails_no_request(stack: Harness, api: Api) -> None:
    before = api.sent
    with Traffic(api, STATE["token"]):
        time.sleep(5)
        collector = stack.container("otel-collector")
        t0 = time.monotonic()
        stack.docker("kill", collector)  # SIGKILL: a crash (a killed container is not restarted by its policy)
        killed = stack.docker("inspect", "--format", "{{.State.ExitCode}}", collector, text=True).stdout.strip()
        stack.docker("start", collector)
        down_s = time.monotonic() - t0
        time.sleep(8)
    sent = api.sent - before
    assert api.failed() == 0, api.errors[:5]
    REPORT["collector kill"] = {
        "requests": sent,
        "failed": api.failed(),
        "exit_code": killed,
        "down_s": round(down_s, 1),
        "statuses": dict(api.statuses),
    }


def test_after_the_faults_every_request_span_is_in_jaeger(stack: Harness, api: Api) -> None:
    sent = api.sent
    t0 = time.monotonic()
    traces = poll(
        lambda: (t := jaeger_traces(stack)) and len(server_span_ids(t)) >= sent and t,
        120,
        f"{sent} server spans in Jaeger after the collector kill",
        interval=2,
    )
    spans = [s for t in traces for s in t["spans"] if _tags(s).get("span.kind") == "server"]
    REPORT["jaeger after faults"] = {
        "requests sent": sent,
        "server spans (distinct)": len(server_span_ids(traces)),
        "duplicates (at-least-once)": len(spans) - len(server_span_ids(traces)),
        "caught up in s": round(time.monotonic() - t0, 1),
    }
    assert len(server_span_ids(traces)) == sent
    assert CANARY not in json.dumps(traces)


# -- 4. down -------------------------------------------------------------------------------------------------------


def test_down_kills_nothing_and_the_runs_hold_every_request(stack: Harness, api: Api, tmp_path: Path) -> None:
    from otel_wandb.runfile import find_runs, read_run

    sent = api.sent
    # everything the app sent has reached the bridge's queue before the stop (the collector retries until then)
    poll(lambda: bridge_stats(stack)["spans"] >= sent, 120, f">= {sent} spans at the bridge", interval=2)
    grace = {"app": 35, "wandb-bridge": 40, "jaeger": 30}  # docker-compose.yml stop_grace_period; the others: 10 s
    running = [c["Service"] for c in stack.ps() if c["State"] == "running"]
    started = datetime.now(UTC)
    t0 = time.monotonic()
    stack.compose("stop", timeout=300)  # what `down` does before it removes: SIGTERM, then SIGKILL after the grace
    stop_s = time.monotonic() - t0
    exits, finished = {}, {}
    for service in running:
        state = stack.inspect(service)["State"]
        exits[service] = state["ExitCode"]
        finished[service] = datetime.fromisoformat(state["FinishedAt"][:26].rstrip("Z") + "+00:00")
        assert not state["OOMKilled"], service
    # compose signals a container once the ones depending on it have stopped: each one's time is from the previous
    order = sorted(finished, key=finished.__getitem__)
    took = {s: (finished[s] - (finished[order[i - 1]] if i else started)).total_seconds() for i, s in enumerate(order)}
    REPORT["compose stop"] = {
        "took_s": round(stop_s, 1),
        "exit codes": exits,
        "each (s, in stop order)": {s: round(took[s], 1) for s in order},
    }
    assert all(code == 0 for code in exits.values()), exits  # 137 = killed after the grace period
    for service in order:
        assert took[service] < grace.get(service, 10), (service, took[service])

    wandb = stack.volume_copy("wandb-data", tmp_path / "wandb-data")
    runs = [read_run(r) for r in find_runs(wandb)]
    assert len(runs) == 2, [r.run_dir.name for r in runs]  # one per bridge start (it was restarted once)
    assert all(r.exit_code == 0 for r in runs), [r.exit_code for r in runs]  # finished
    totals = [_summary(r, "http/requests_total") for r in runs]
    REPORT["W&B runs"] = {"runs": len(runs), "http/requests_total": totals, "requests sent": sent}
    assert sum(totals) == sent, (totals, sent)
    for path in wandb.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), f"diary text in {path}"
    t0 = time.monotonic()
    stack.compose("down", "--timeout", "60", timeout=300)
    stack.timings["compose down (after stop)"] = time.monotonic() - t0


def _summary(run: Any, key: str) -> int:
    value = run.summary.get(key, 0)
    return int(value["last"] if isinstance(value, dict) and "last" in value else value)
