"""The live dashboard (otel_wandb.report._live) over a real pipeline and sink (``run=`` recorder seam): what it shows
is what the sink wrote, ranges filter by interval time, it is read-only, and it refuses bad input with a 400."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest

from otel_wandb import records as r
from otel_wandb.config import BridgeConfig, ConfigError, ExportConfig
from otel_wandb.pipeline import Pipeline
from otel_wandb.report import DashboardServer
from otel_wandb.report._live import data
from otel_wandb.sink import WandbSink
from tests.support import server_span
from tests.support.wandb_run import RecorderRun

CANARY = "diary-canary-7f3a"


def _span(i: int, code: int = 200, route: str = "/api/entries") -> r.SpanRecord:
    return server_span(i, code, route, duration_ns=2_000_000, method="GET")


@pytest.fixture
def pipeline():
    p = Pipeline(WandbSink(run=RecorderRun()), interval_s=3600)  # intervals closed by the test (flush_once)
    yield p
    p.shutdown(5)


@pytest.fixture
def dashboard(pipeline):
    server = DashboardServer(pipeline.sink, "127.0.0.1", 0, interval_s=2).start()
    yield server
    server.stop()


def get(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def base(server: DashboardServer) -> str:
    return server.url.rsplit("/", 1)[0]


def test_the_page_shows_what_the_sink_wrote_and_no_second_count(pipeline, dashboard):
    pipeline.add_spans([_span(i) for i in range(7)] + [_span(100 + i, 500) for i in range(3)])
    assert pipeline.flush_once()
    pipeline.add_spans([_span(200 + i) for i in range(5)])
    assert pipeline.flush_once()
    run = pipeline.sink.run
    written = sum(row["http/requests"] for row in run.logged)
    status, headers, body = get(f"{base(dashboard)}/dashboard.json?range=all")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    p = json.loads(body)
    assert p["totals"]["requests"] == written == 15
    assert p["totals"]["errors"] == 3
    assert p["identity"]["state"] == "running"
    status, headers, page = get(dashboard.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = page.decode()
    assert 'data-total="requests" data-value="15.0"' in html
    assert "connect-src 'self'" in headers["Content-Security-Policy"] and "default-src 'none'" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no remote asset on the page"
    assert html.count("<script>") == 1


def test_a_range_keeps_the_intervals_that_ended_within_it(pipeline):
    sink = pipeline.sink
    history = sink.remember()
    now = time.time()
    for age, n in ((4000, 11), (1200, 5), (60, 2)):  # an interval 66 min ago, one 20 min ago, one a minute ago
        history.add_row({"interval/time": now - age, "interval/seconds": 60, "http/requests": n, "http/errors": 0}, {})
    totals = {k: data(sink, k, now=now)[0].totals["requests"] for k in ("15m", "1h", "all")}
    assert totals == {"15m": 2, "1h": 7, "all": 18}


def test_an_alert_the_sink_recorded_is_on_the_page(pipeline, dashboard):
    pipeline.add_spans([_span(1)])
    assert pipeline.flush_once()
    assert pipeline.sink.alert("error rate above 5%", "error rate 40% over 5 min", "ERROR")
    p = json.loads(get(f"{base(dashboard)}/dashboard.json?range=15m")[2])
    assert p["totals"]["alerts"] == 1
    assert "error rate above 5%" in p["main"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_read_only(dashboard, method):
    status, headers, _ = get(dashboard.url, method, b"{}" if method in ("POST", "PUT", "PATCH") else None)
    assert status == 405 and headers["Allow"] == "GET"


@pytest.mark.parametrize("query", ["range=2d", "range=", "range=1h&range=all"])
def test_a_bad_range_is_400_naming_it(dashboard, query):
    status, _, body = get(f"{dashboard.url}.json?{query}")
    assert status == 400
    assert json.loads(body)["field"] == "range"


def test_root_redirects_and_unknown_paths_are_404(dashboard):
    req = urllib.request.Request(base(dashboard) + "/", method="GET")
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(req, timeout=10)
    assert err.value.code == 302 and err.value.headers["Location"] == "/dashboard"
    assert get(base(dashboard) + "/etc/passwd")[0] == 404


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_privacy_the_page_holds_no_more_than_the_run(pipeline, dashboard):
    """Attributes with diary text never become row keys or values, so the page cannot show them either."""
    s = _span(1)
    s.attributes.update({"app.diary.text": CANARY, "gen_ai.prompt": CANARY})
    pipeline.add_spans([s])
    assert pipeline.flush_once()
    assert CANARY not in json.dumps(pipeline.sink.run.logged, default=str)
    for path in ("/dashboard", "/dashboard.json?range=all"):
        assert CANARY not in get(base(dashboard) + path)[2].decode()


def test_settings_and_their_errors_name_the_variable():
    assert BridgeConfig.from_env({}).dashboard is True
    assert (BridgeConfig.from_env({}).dashboard_host, BridgeConfig.from_env({}).dashboard_port) == ("127.0.0.1", 8088)
    assert BridgeConfig.from_env({"WANDB_BRIDGE_DASHBOARD": "false"}).dashboard is False
    assert ExportConfig.from_env({}).dashboard_port is None
    assert ExportConfig.from_env({"WANDB_EXPORT_DASHBOARD_PORT": "0"}).dashboard_port == 0
    for env, name in (
        ({"WANDB_BRIDGE_DASHBOARD": "maybe"}, "WANDB_BRIDGE_DASHBOARD"),
        ({"WANDB_BRIDGE_DASHBOARD_PORT": "70000"}, "WANDB_BRIDGE_DASHBOARD_PORT"),
    ):
        with pytest.raises(ConfigError, match=name):
            BridgeConfig.from_env(env)
    with pytest.raises(ConfigError, match="WANDB_EXPORT_DASHBOARD_PORT"):
        ExportConfig.from_env({"WANDB_EXPORT_DASHBOARD_PORT": "http"})


def test_in_process_opt_in_serves_one_process_and_never_fails_the_pipeline(tmp_path, caplog):
    env = {"WANDB_MODE": "disabled", "WANDB_DIR": str(tmp_path), "ALERTS_ENABLED": "false"}
    p = Pipeline.from_env({**env, "WANDB_EXPORT_DASHBOARD_PORT": "0"})
    try:
        assert p.dashboard is not None
        assert get(p.dashboard.url)[0] == 200
        taken = p.dashboard.server_address[1]
        q = Pipeline.from_env({**env, "WANDB_EXPORT_DASHBOARD_PORT": str(taken)})  # the port is taken
        assert q.dashboard is None and "live dashboard is off" in caplog.text
        q.shutdown(5)
        w = Pipeline.from_env({**env, "WANDB_EXPORT_DASHBOARD_PORT": "0", "WEB_CONCURRENCY": "3"})
        assert w.dashboard is None and "3 workers" in caplog.text
        w.shutdown(5)
    finally:
        p.shutdown(5)
    assert p.dashboard._thread is None, "shutdown stops the dashboard"


def test_every_viewer_shares_one_drawing_until_the_run_moves(pipeline, dashboard):
    url = f"{base(dashboard)}/dashboard.json?range=all"
    pipeline.add_spans([_span(i) for i in range(4)])
    assert pipeline.flush_once()
    first, again = get(url)[2], get(url)[2]
    assert first is not again and first == again and json.loads(first)["totals"]["requests"] == 4
    assert len(dashboard._cache) == 1, "the second viewer got the first drawing"
    pipeline.add_spans([_span(10 + i) for i in range(3)])
    assert pipeline.flush_once()
    assert json.loads(get(url)[2])["totals"]["requests"] == 7, "a new interval is a new drawing"
