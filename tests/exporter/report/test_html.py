"""ai-diary-report from a real offline W&B run (core → WandbSink → .wandb file → runfile → HTML):
totals equal the run's, and the page renders its SVG charts in headless Chromium."""

from __future__ import annotations

import os
import random
import re
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from otel_wandb import records as r
from otel_wandb.core import Aggregator, CoreConfig
from otel_wandb.pricing import Price, PriceList
from otel_wandb.report import main as report_main
from otel_wandb.report import write_report
from otel_wandb.report._svg import SEVERITY_COLORS
from otel_wandb.runfile import find_runs, read_run
from otel_wandb.sink import WandbSink
from tests.support import ROOT
from tests.support.chromium import chromium_cmd, console_messages

T0 = 1_796_000_000 * 10**9  # 2026-11-29 (ns)
STEP = 10 * 10**9
ROUTES = ("/api/entries", "/api/entries/<int:id>/summary", "/api/entries/<int:id>/reflect")
MODELS = ("gpt-4o-mini", "llama-3.1-8b-local")
FEATURES = ("summarize", "reflect", "mood")
PRICING = PriceList(
    {
        "gpt-4o-mini": Price(input=0.15e-6, cached_input=0.075e-6, output=0.6e-6),
        "llama-3.1-8b-local": Price(0.0, 0.0, 0.0),
    }
)


@dataclass
class Truth:
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    cost: float = 0.0
    alerts: list[str] = field(default_factory=list)


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def make_run(
    wandb_dir: Path, intervals: int = 8, seed: int = 7, offset_s: int = 0, ai: bool = True
) -> tuple[Path, Truth]:
    """Drive the real core and the real W&B sink (offline) with known traffic; return the run dir and the truth.
    ``ai=False``: the same traffic without a single AI call."""
    rng = random.Random(seed)
    T0 = globals()["T0"] + offset_s * 10**9
    truth = Truth()
    agg = Aggregator(CoreConfig(pricing=PRICING), start_ns=T0, process_start_ns=T0)  # cost streams start with us
    sink = WandbSink(project="ai-diary-report-test", mode="offline", dir=str(wandb_dir), name="report-test", env={})
    cum_cost: dict[tuple, float] = {}
    for i in range(intervals):
        base = T0 + i * STEP
        spans, points = [], []
        for k in range(rng.randint(20, 60)):
            route = rng.choice(ROUTES)
            failing = (i in (3, 4) and k % 4 == 0) or rng.random() < 0.02
            code = 500 if failing else rng.choice((200, 200, 201, 404))
            start = base + rng.randint(0, STEP // 2)
            dur = int(rng.lognormvariate(3.5 if i != 5 else 6.8, 0.4) * 1e6)
            trace = _hex(rng, 32)
            exc = (
                (
                    r.ExceptionInfo(
                        "TimeoutError",
                        f"db timeout after {rng.randint(1000, 5000)} ms",
                        'File "app/db.py", line 42, in query',
                    ),
                )
                if failing
                else ()
            )
            spans.append(
                r.SpanRecord(
                    name=f"GET {route}",
                    kind=r.SERVER,
                    start_ns=start,
                    end_ns=start + dur,
                    trace_id=trace,
                    span_id=_hex(rng, 16),
                    is_error=failing,
                    attributes={"http.route": route, "http.request.method": "GET", "http.response.status_code": code},
                    exceptions=exc,
                )
            )
            truth.requests += 1
            truth.errors += code >= 500
            if ai and route != "/api/entries":
                model, feature = rng.choice(MODELS), rng.choice(FEATURES)
                inp, out = rng.randint(50, 900), rng.randint(10, 300)
                spans.append(
                    r.SpanRecord(
                        name=f"chat {model}",
                        kind=r.CLIENT,
                        start_ns=start + 1000,
                        end_ns=start + dur // 2,
                        trace_id=trace,
                        span_id=_hex(rng, 16),
                        attributes={
                            "gen_ai.operation.name": "chat",
                            "gen_ai.request.model": model,
                            "app.feature": feature,
                            "gen_ai.usage.input_tokens": inp,
                            "gen_ai.usage.output_tokens": out,
                        },
                    )
                )
                truth.tokens += inp + out
                p = PRICING.prices[model]
                cost = inp * p.input + out * p.output + 0.0005  # the app's price list differs from the span pricing
                key = (model, feature)
                cum_cost[key] = cum_cost.get(key, 0.0) + cost
                truth.cost += cost
        for (model, feature), total in cum_cost.items():  # cumulative counter, as the SDK exports it
            points.append(
                r.MetricPoint(
                    name="app.ai.cost",
                    kind=r.SUM,
                    unit="USD",
                    temporality=r.CUMULATIVE,
                    monotonic=True,
                    value=total,
                    start_time_ns=T0,
                    time_ns=base + STEP,
                    attributes={"gen_ai.request.model": model, "app.feature": feature},
                )
            )
        agg.add_spans(spans)
        agg.add_metrics(points)
        agg.add_logs(
            [
                r.LogRecord(time_ns=base + 5, severity_number=9, body="ok"),
                r.LogRecord(time_ns=base + 6, severity_number=17, body="AI call failed: status=502"),
            ]
        )
        res = agg.flush(base + STEP)
        assert sink.log(res.row, res.tables)
        if i == 3:
            assert sink.alert("High Error Rate", "error rate 25% > threshold 5%", "ERROR", 300)
            truth.alerts.append("High Error Rate")
        if i == 5:
            assert sink.alert("High Response Time", "p95 1200 ms > threshold 1000 ms", "WARN", 600)
            truth.alerts.append("High Response Time")
        if i == 6:
            assert sink.alert("[RESOLVED] High Error Rate", "error rate 1% <= 5%", "INFO", 300)
            truth.alerts.append("[RESOLVED] High Error Rate")
    assert sink.finish(timeout=60)
    runs = find_runs(wandb_dir)
    assert len(runs) == 1
    return runs[0], truth


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory) -> tuple[Path, Truth]:
    return make_run(tmp_path_factory.mktemp("wandb"))


@pytest.fixture(scope="module")
def report(offline_run, tmp_path_factory) -> Path:
    return write_report(offline_run[0], tmp_path_factory.mktemp("out") / "nested" / "report.html")


class Totals(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, float] = {}
        self.unavailable: dict[str, str] = {}  # figure -> reason (shown as "—", never as a number)
        self.tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "data-total" in a and "data-value" in a:
            self.totals[a["data-total"]] = float(a["data-value"])
        elif "data-total" in a:
            self.unavailable[a["data-total"]] = a["data-unavailable"]
        for k in ("src", "href"):
            if a.get(k):
                self.external.append(a[k])


def parse(html: str) -> Totals:
    p = Totals()
    p.feed(html)
    return p


def test_totals_equal_the_runs(offline_run, report):
    run_dir, truth = offline_run
    run = read_run(run_dir)
    totals = parse(report.read_text()).totals

    def last(key: str) -> float:  # running totals are summarized as {"last": value} (exporters/src/otel_wandb/sink.py)
        v = run.summary[key]
        return v["last"] if isinstance(v, dict) else v

    # the run's own running totals (summary: last value) ...
    assert totals["requests"] == last("http/requests_total") == truth.requests
    assert totals["errors"] == last("http/errors_total") == truth.errors
    assert totals["tokens"] == last("ai/input_tokens_total") + last("ai/output_tokens_total")
    assert totals["tokens"] == truth.tokens
    assert totals["cost_usd"] == pytest.approx(last("app.ai.cost/total"), rel=1e-9)
    assert totals["cost_usd"] == pytest.approx(truth.cost, rel=1e-9)
    assert totals["alerts"] == len(run.alerts) == 3
    assert truth.errors > 0 and truth.cost > 0


def test_page_is_self_contained(report):
    html = report.read_text()
    p = parse(html)
    assert "script" not in p.tags and p.external == []
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)
    charts = re.findall(r'<svg class="chart" data-chart="([^"]+)" data-points="(\d+)"', html)
    got = {name: int(n) for name, n in charts}
    for name in (
        "request_rate",
        "requests",
        "latency",
        "latency_by_route",
        "error_rate",
        "error_groups",
        "tokens_by_model",
        "tokens_by_feature",
        "cost_by_model",
        "cost_by_feature",
        "alerts",
    ):
        assert got.get(name, 0) > 0, f"chart {name} is empty"
    assert got["alerts"] == 3
    by_route = html.split('data-chart="latency_by_route"', 1)[1].split("</svg>", 1)[0]
    assert sorted(re.findall(r'class="series" data-series="([^"]+)"', by_route)) == sorted(
        {"/api/entries", "/api/entries/&lt;id&gt;/summary", "/api/entries/&lt;id&gt;/reflect"}
    )
    timeline = html.split('data-chart="alerts"', 1)[1].split("</svg>", 1)[0]
    labels = re.findall(r'class="event-label"[^>]*><title>[^<]*</title>([^<]+)</text>', timeline)
    assert labels and all(len(x) <= 30 for x in labels) and any("High Response Time" in x for x in labels)
    assert "TimeoutError" in html and "High Response Time" in html
    for model in MODELS:
        assert model in html


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _png_distinct_colors(data: bytes, sample_rows: int = 60) -> int:
    """Decode a few rows of an 8-bit RGB(A) PNG (no Pillow needed) and count distinct pixel colours."""
    w, h = _png_size(data)
    bit_depth, color_type = data[24], data[25]
    assert bit_depth == 8 and color_type in (2, 6)
    bpp = 3 if color_type == 2 else 4
    pos, idat = 8, b""
    while pos < len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if ctype == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    colors: set[bytes] = set()
    step = max(1, h // sample_rows)
    for y in range(h):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        if y % step == 0:
            colors.update(bytes(line[i : i + 3]) for i in range(0, stride, bpp))
        prev = line
    return len(colors)


@pytest.mark.integration  # a real Chromium
def test_renders_in_headless_chromium(report, tmp_path):
    url = report.resolve().as_uri()
    dom = subprocess.run(
        chromium_cmd(tmp_path, "--virtual-time-budget=3000", "--enable-logging=stderr", "--v=0", "--dump-dom", url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    # the browser parsed the page into SVG elements with the drawn series, bars and alert markers
    assert len(re.findall(r"<svg[^>]+class=\"chart\"", dom.stdout)) >= 10
    assert len(re.findall(r"<polyline[^>]+class=\"series\"", dom.stdout)) >= 10
    assert len(re.findall(r"<rect[^>]+class=\"bar\"", dom.stdout)) >= 1
    assert len(re.findall(r"<circle[^>]+class=\"event\"", dom.stdout)) == 3
    png = tmp_path / "shot.png"
    shot = subprocess.run(
        chromium_cmd(tmp_path, f"--screenshot={png}", "--window-size=1280,2400", "--hide-scrollbars", url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    data = png.read_bytes()
    assert _png_size(data) == (1280, 2400)
    assert _png_distinct_colors(data) > 20  # a blank page has 1-2 colours; charts bring many


def test_cli_writes_the_report_and_rejects_bad_sources(offline_run, tmp_path, capsys):
    out = tmp_path / "r.html"
    wandb_dir = offline_run[0].parent.parent  # <dir>/wandb/offline-run-*: the newest run is picked
    assert report_main([str(wandb_dir), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert 'data-total="requests"' in out.read_text()
    assert report_main([str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "not a W&B run" in capsys.readouterr().err


@pytest.mark.integration  # the command line in its own process
def test_publishing_the_dashboard_needs_an_api_key():
    res = subprocess.run(
        [sys.executable, "-m", "otel_wandb.report", "--publish-dashboard"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"},
        timeout=60,
        cwd=ROOT,
    )
    assert res.returncode == 2 and "WANDB_API_KEY" in res.stderr


def test_several_runs_merge_into_one_report(offline_run, tmp_path):
    """One run per worker: the merged report's totals are the sums of both runs' own totals."""
    other_dir, other = make_run(tmp_path / "w2", intervals=5, seed=11, offset_s=3)
    first_dir, first = offline_run
    html = write_report([first_dir, other_dir], tmp_path / "merged.html").read_text()
    totals = parse(html).totals
    assert totals["requests"] == first.requests + other.requests
    assert totals["errors"] == first.errors + other.errors
    assert totals["tokens"] == first.tokens + other.tokens
    assert totals["cost_usd"] == pytest.approx(first.cost + other.cost, rel=1e-9)
    assert totals["alerts"] == len(first.alerts) + len(other.alerts) == 4
    assert "2 W&amp;B runs merged" in html and "highest run" in html
    points = dict(re.findall(r'data-chart="([^"]+)" data-points="(\d+)"', html))
    assert int(points["alerts"]) == 4 and int(points["requests"]) >= 2 * 8


def test_run_report_colours_severities_from_the_one_palette(report):
    html = report.read_text()
    volume = html.split('data-chart="logs_by_severity"', 1)[1].split("</svg>", 1)[0]
    fills = dict(re.findall(r'<rect class="legend" data-series="([^"]+)"[^>]* fill="(#[0-9a-f]{6})"', volume))
    assert fills == {"ERROR": SEVERITY_COLORS["ERROR"], "INFO": SEVERITY_COLORS["INFO"]}  # ERROR listed first
    bars = re.findall(
        r'<rect class="bar" data-series="(\w+)" data-time="[^"]+" data-value="([^"]+)"[^>]* '
        r'fill="(#[0-9a-f]{6})"',
        volume,
    )
    assert len(bars) == 2 * 8 and all(v == "1" for _, v, _ in bars)  # one ok + one failure logged per interval
    assert {(s, f) for s, _, f in bars} == {("ERROR", "#dc2626"), ("INFO", "#2563eb")}
    timeline = html.split('data-chart="alerts"', 1)[1].split("</svg>", 1)[0]
    events = re.findall(r'<circle class="event"[^>]* fill="(#[0-9a-f]{6})"', timeline)
    assert events == [SEVERITY_COLORS["ERROR"], SEVERITY_COLORS["WARN"], "#16a34a"]  # resolved: green


def test_run_report_knows_its_own_figures_and_says_what_only_the_logs_hold(offline_run, report):
    p = parse(report.read_text())
    assert set(p.unavailable) == {"audit_events", "auth_failures"}
    assert all("audit log" in why for why in p.unavailable.values())
    html = report.read_text()
    assert re.search(r'<p class="na" data-unavailable="errors_by_logger,errors_by_route,top_messages" ', html)
    assert re.search(r'<section id="audit"><h2>Audit</h2><p class="na" data-unavailable="audit" ', html)
    assert p.totals["log_records"] == 16 and p.totals["error_records"] == 8


def test_a_run_without_ai_calls_measures_zero_ai(tmp_path):
    """No AI span: the exporter saw every span, so 0 calls, 0 tokens and $0 are measured -- shown as 0, and the AI
    panels say there were no AI calls (not "no data", not a dash)."""
    run_dir, truth = make_run(tmp_path / "w", intervals=3, seed=3, ai=False)
    assert truth.tokens == 0 and truth.requests > 0
    html = write_report(run_dir, tmp_path / "r.html").read_text()
    p = parse(html)
    assert p.totals["ai_calls"] == p.totals["tokens"] == p.totals["cost_usd"] == 0.0
    assert p.totals["requests"] == truth.requests
    for name, text in (("ai_calls", "0"), ("tokens", "0"), ("cost_usd", "$0.0000")):
        assert re.search(rf'data-total="{name}" data-value="0.0">{re.escape(text)}</span>', html), name
    ai = html.split('<section id="ai">', 1)[1].split("</section>", 1)[0]
    assert ai.count(">no AI calls in this run</text>") == 4 and "data-unavailable" not in ai
    assert set(p.unavailable) == {"audit_events", "auth_failures"}


def test_an_unknown_figure_merges_as_unknown_and_a_rate_is_recomputed(offline_run, tmp_path):
    from otel_wandb.report import from_run, merge

    a = from_run(offline_run[0])
    b = from_run(offline_run[0])
    b.unknown("requests", "test: this part could not tell")
    m = merge([a, a])
    assert m.totals["error_rate"] == pytest.approx(a.totals["errors"] / a.totals["requests"])
    assert m.totals["audit_events"] is None and "audit log" in m.unavailable["audit_events"]
    partial = merge([a, b])
    assert partial.totals["requests"] == a.totals["requests"]  # the part that measured it
    assert any(n.startswith("requests: measured in 1 of 2 sources only") for n in partial.notes)
