"""The live dashboard of a running bridge fed by the real collector, loaded in headless Chromium: it renders without
console errors and asks nothing of another host, the request total it shows grows by exactly the traffic sent once an
export interval has passed, an alert that fired appears on it, and the OTLP ingest port still wants its token."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlsplit

import pytest

from app.demo.topology import start_bridge
from otel_wandb.runfile import find_runs, read_run
from tests.support import wait_until
from tests.support.cdp import browser
from tests.support.collector import post, spans_request

pytestmark = pytest.mark.integration

TOKEN = "bridge-token-for-the-dashboard-test"
TOTAL = "document.querySelector('[data-total=requests]').dataset.value"


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as res:  # noqa: S310 - loopback
        return json.loads(res.read())


def _send(col, n: int, start: int, error_every: int = 0) -> None:
    body = spans_request(n, start=start, error_every=error_every, attrs={"http.route": "/api/entries"})
    assert post(col.http_endpoint, "/v1/traces", body.SerializeToString())[0] == 200


@pytest.mark.timeout(240)
def test_the_dashboard_shows_the_live_run(start_collector, tmp_path):
    bridge = start_bridge(
        {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(tmp_path / "wandb"),
            "WANDB_EXPORT_INTERVAL": "1",
            "WANDB_BRIDGE_TOKEN": TOKEN,
            "ALERTS_STATE_FILE": "off",
        }
    )
    try:
        assert bridge.dashboard_url, "the bridge names its dashboard URL at start"
        host = urlsplit(bridge.dashboard_url).netloc
        api = bridge.dashboard_url + ".json?range=all"
        col = start_collector(
            {
                "WANDB_BRIDGE_EXPORTER": "otlp_http/wandb_bridge",
                "WANDB_BRIDGE_ENDPOINT": bridge.url,
                "WANDB_BRIDGE_TOKEN": TOKEN,
                "WANDB_BRIDGE_RETRY_INITIAL": "100ms",
            }
        )
        # the ingest port keeps its bearer token; the dashboard port wants none (read-only, loopback)
        assert post(bridge.url, "/v1/traces", spans_request(1).SerializeToString())[0] == 401

        _send(col, 30, 0)
        wait_until(lambda: _json(api)["totals"]["requests"] == 30, 60, "the first 30 requests on the dashboard")
        with browser(tmp_path) as b:
            page = b.open(bridge.dashboard_url)
            assert float(page.evaluate(TOTAL)) == 30
            every = float(page.evaluate("document.getElementById('every').textContent"))
            assert every == 1, "the page refreshes each export interval"

            # more traffic, 12 of it failing: after an interval the page shows exactly 30 + 25, and the alert
            _send(col, 25, 1000, error_every=2)
            wait_until(lambda: float(page.evaluate(TOTAL)) != 30, 60, "the page to refresh itself")
            assert float(page.evaluate(TOTAL)) == 55, "grown by exactly the 25 requests sent"
            assert float(page.evaluate("document.querySelector('[data-total=errors]').dataset.value")) == 13
            wait_until(
                lambda: "High Error Rate" in page.evaluate("document.querySelector('main').textContent"),
                60,
                "the fired alert on the page",
            )
            assert float(page.evaluate("document.querySelector('[data-total=alerts]').dataset.value")) >= 1

            # the run's identity: offline, with the command that uploads it
            header = page.evaluate("document.querySelector('header').textContent")
            assert "offline run" in header and "wandb sync " in header and str(tmp_path / "wandb") in header

            # the range choice goes through the same endpoint and keeps the URL in step
            page.evaluate("var s=document.getElementById('range'); s.value='15m'; s.dispatchEvent(new Event('change'))")
            wait_until(lambda: page.evaluate("location.search") == "?range=15m", 10, "the range in the URL")
            assert float(page.evaluate(TOTAL)) == 55

            assert page.console_errors() == [], "no script error, CSP violation or failed load"
            off_host = [u for u in page.requests() if urlsplit(u).netloc != host]
            assert off_host == [], f"requests off the host: {off_host}"
            assert any(u.startswith(bridge.dashboard_url + ".json") for u in page.requests()), "it polled"

            # positive control: a request off the host is refused by the page's policy, and these checks see it
            page.evaluate("fetch('http://192.0.2.1/x').catch(function(){})")
            wait_until(page.console_errors, 10, "the refused fetch reported")
            assert any("192.0.2.1" in u for u in page.requests() + page.console_errors())
        col.stop()
    finally:
        assert bridge.stop() == 0
    run = read_run(find_runs(tmp_path / "wandb")[0])
    assert sum(run.series("http/requests")) == 55, "the page showed what the run holds"
    assert "[FIRING] High Error Rate" in [a.get("title") for a in run.alerts]
