"""ai-diary-report from the collector's log files (rotated + gz backups): figures equal the records', a figure the
files do not hold is "—" with its reason (never 0), a measured zero is 0, severities have one palette, and the
analysis panels (volume per severity, errors per logger / route, top messages, audit, failed authentications) count
exactly what was written."""

from __future__ import annotations

import gzip
import re
import subprocess
from html import unescape
from pathlib import Path

import pytest

from otel_wandb.logfiles._files import Entry, to_line
from otel_wandb.report import from_logs, render, resolve, write_report
from otel_wandb.report._svg import SEVERITY_COLORS
from tests.exporter.report.test_html import parse
from tests.support.chromium import chromium_cmd, console_messages

T0 = 1_796_000_000 * 10**9
S = 10**9
SEV_TEXT = {1: "TRACE", 5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR", 21: "FATAL"}


def rec(sec: int, sev: int, body: str, scope: str = "app", text: str | None = None, **attrs) -> Entry:
    return Entry(
        T0 + sec * S,
        sev,
        SEV_TEXT[sev] if text is None else text,
        body,
        scope,
        attributes=attrs,
        resource={"service.name": "ai-diary"},
    )


def totals(html: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r'data-total="([^"]+)" data-value="([^"]+)"', html)}


def charts(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-chart="([^"]+)" data-points="(\d+)"', html)}


def chart(html: str, chart_id: str) -> str:
    return html.split(f'data-chart="{chart_id}"', 1)[1].split("</svg>", 1)[0]


def segments(html: str, chart_id: str, base: float) -> dict[tuple[str, int], float]:
    """(series, minute of the interval end after ``base``) -> value, from a stacked-bar chart."""
    found = re.findall(
        r'<rect class="bar" data-series="([^"]+)" data-time="([^"]+)" data-value="([^"]+)"', chart(html, chart_id)
    )
    return {(unescape(s), round((float(t) - base) / 60)): float(v) for s, t, v in found}


def bars(html: str, chart_id: str) -> dict[str, float]:
    found = re.findall(r'<rect class="bar" data-label="([^"]+)" data-value="([^"]+)"', chart(html, chart_id))
    return {unescape(label): float(v) for label, v in found}


def fills(html: str, chart_id: str) -> dict[str, set[str]]:
    """Series -> the fill colours of its bars and legend swatch."""
    out: dict[str, set[str]] = {}
    for series, fill in re.findall(
        r'<rect class="(?:bar|legend)" data-series="([^"]+)"[^>]*? fill="(#[0-9a-f]{6})"', chart(html, chart_id)
    ):
        out.setdefault(series, set()).add(fill)
    return out


def rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


# ---- a log directory with known content --------------------------------------------------------------------------
# Times in seconds after a whole minute M0: 60 one-minute buckets (the record at 59:30 stretches the span to an hour).
M0 = 1_796_000_040  # a multiple of 60
OFF = M0 - T0 // S
CANARY = "CANARY-dear-diary-7f3a"
ROUTE_ONE = "/api/entries/<int:entry_id>"


def known_records() -> list[Entry]:
    r = lambda sec, *a, **k: rec(OFF + sec, *a, **k)  # noqa: E731
    return [
        # minute 0: 3 INFO requests logged by app.api, one WARN from app.llm (text WARNING: folded into WARN)
        r(1, 9, "GET /api/entries 200", "app.api", **{"http.route": "/api/entries"}),
        r(2, 9, "GET /api/entries 200", "app.api", **{"http.route": "/api/entries"}),
        r(3, 9, "GET /api/entries 200", "app.api", **{"http.route": "/api/entries"}),
        r(4, 13, "AI provider slow: 2500 ms", "app.llm", text="WARNING"),
        r(5, 9, "audit entry.create", "audit", **{"audit.action": "entry.create", "audit.outcome": "success"}),
        # minute 1: two db timeouts on one route, a FATAL (text CRITICAL), two failed authentications
        r(61, 17, "db timeout after 3000 ms", "app.db", **{"http.route": ROUTE_ONE}),
        r(75, 17, "db timeout after 4000 ms", "app.db", **{"http.route": ROUTE_ONE}),
        r(80, 21, "worker out of memory", "gunicorn.error", text="CRITICAL"),
        r(90, 13, "audit auth.failed", "audit", **{"audit.action": "auth.failed", "audit.outcome": "failure"}),
        r(91, 13, "audit auth.failed", "audit", **{"audit.action": "auth.failed", "audit.outcome": "failure"}),
        # minute 2: DEBUG, and errors whose messages quote diary text (the canary), in the body and the exception
        r(121, 5, "cache miss for key 12", "app.cache"),
        r(130, 17, f"AI provider rejected input: '{CANARY} my secret day'", "app.llm"),
        r(131, 9, f'summary ready for "{CANARY}"', "app.llm"),
        r(
            132,
            17,
            "summarize failed",
            "app.llm",
            **{
                "exception.type": "ValueError",
                "exception.message": f'bad entry "a \\" {CANARY}"\n{CANARY}',
                "http.route": ROUTE_ONE,
            },
        ),
        # minute 3: another failed authentication, a registration
        r(185, 13, "audit auth.failed", "audit", **{"audit.action": "auth.failed", "audit.outcome": "failure"}),
        r(186, 9, "audit user.register", "audit", **{"audit.action": "user.register", "audit.outcome": "success"}),
        # minute 59
        r(3570, 9, "GET /api/entries 200", "app.api", **{"http.route": "/api/entries"}),
    ]


@pytest.fixture(scope="module")
def known(tmp_path_factory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("known") / "logs"
    d.mkdir()
    recs = known_records()
    with gzip.open(d / "combined-2026-11-29T10-00-00.000-size.log.gz", "wt") as fh:  # a rotated backup
        fh.write(to_line(recs[:6]) + "\n")
    (d / "combined.log").write_text(to_line(recs[6:]) + "\n")
    return d, write_report(d, d.parent / "report-logs.html").read_text()


def test_log_volume_per_severity_per_minute(known):
    _, html = known
    assert segments(html, "logs_by_severity", M0) == {
        ("INFO", 1): 4,
        ("WARN", 1): 1,  # the interval ending at minute 1 holds minute 0
        ("FATAL", 2): 1,
        ("ERROR", 2): 2,
        ("WARN", 2): 2,
        ("ERROR", 3): 2,
        ("INFO", 3): 1,
        ("DEBUG", 3): 1,
        ("WARN", 4): 1,
        ("INFO", 4): 1,
        ("INFO", 60): 1,
    }
    assert charts(html)["logs_by_severity"] == 11  # drawn segments
    assert len(re.findall(r'<rect class="bar" data-series="INFO"', chart(html, "logs_by_severity"))) == 4
    t = totals(html)
    assert t["log_records"] == len(known_records()) == 17
    assert t["error_records"] == 5  # ERROR + FATAL


def test_one_severity_palette_error_red_info_blue(known):
    _, html = known
    got = fills(html, "logs_by_severity")
    assert got == {
        "FATAL": {SEVERITY_COLORS["FATAL"]},
        "ERROR": {SEVERITY_COLORS["ERROR"]},
        "WARN": {SEVERITY_COLORS["WARN"]},
        "INFO": {SEVERITY_COLORS["INFO"]},
        "DEBUG": {SEVERITY_COLORS["DEBUG"]},
    }
    (er, eg, eb), (ir, ig, ib) = rgb(got["ERROR"].pop()), rgb(got["INFO"].pop())
    assert er > 180 and er > 2 * max(eg, eb), "ERROR is red"
    assert ib > 180 and ib > 1.5 * max(ir, ig), "INFO is blue"
    wr, wg, wb = rgb(SEVERITY_COLORS["WARN"])
    assert wr > wg > wb and wb < 60, "WARN is amber"
    for grey in ("DEBUG", "TRACE"):
        c = rgb(SEVERITY_COLORS[grey])
        assert max(c) - min(c) < 60, f"{grey} is grey"
    fr, fg, fb = rgb(SEVERITY_COLORS["FATAL"])
    assert fr > 2 * max(fg, fb), "FATAL is red"
    # the tables use the same palette (classes generated from it), and so do the alert levels
    assert f".sev-ERROR,.level-ERROR{{color:{SEVERITY_COLORS['ERROR']}" in html
    assert f".sev-INFO,.level-INFO{{color:{SEVERITY_COLORS['INFO']}" in html
    assert re.search(r'<tr data-count="2" data-severity="ERROR"[^>]*>.*?<span class="sev-ERROR">ERROR</span>', html)


def test_errors_per_logger_and_per_route(known):
    _, html = known
    assert bars(html, "errors_by_logger") == {"app.db": 2, "app.llm": 2, "gunicorn.error": 1}
    assert bars(html, "errors_by_route") == {"/api/entries/<entry_id>": 3, "(outside a request)": 2}
    red = SEVERITY_COLORS["ERROR"]
    assert set(re.findall(r'class="bar"[^>]* fill="(#[0-9a-f]+)"', chart(html, "errors_by_logger"))) == {red}


def test_top_messages_with_first_and_last_seen(known):
    _, html = known
    table = html.split('data-table="top_messages"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(
        r'<tr data-count="(\d+)" data-severity="(\w+)" data-first="([\d.]+)" data-last="([\d.]+)">'
        r"(.*?)</tr>",
        table,
    )
    got = {
        (sev, re.findall(r"<td>(.*?)</td>", cells)[1], unescape(re.findall(r"<td>(.*?)</td>", cells)[2])): (
            int(n),
            float(first) - M0,
            float(last) - M0,
        )
        for n, sev, first, last, cells in rows
    }
    assert got == {
        ("INFO", "app.api", "GET /api/entries <num>"): (4, 1, 3570),
        ("ERROR", "app.db", "db timeout after <num> ms"): (2, 61, 75),
        ("WARN", "app.llm", "AI provider slow: <num> ms"): (1, 4, 4),
        ("FATAL", "gunicorn.error", "worker out of memory"): (1, 80, 80),
        ("DEBUG", "app.cache", "cache miss for key <num>"): (1, 121, 121),
        ("ERROR", "app.llm", "AI provider rejected input: <str>"): (1, 130, 130),
        ("INFO", "app.llm", "summary ready for <str>"): (1, 131, 131),
        ("ERROR", "app.llm", "ValueError: bad entry <str>"): (1, 132, 132),
    }
    assert [int(r[0]) for r in rows] == [4, 2, 1, 1, 1, 1, 1, 1]  # most frequent first, then first seen
    assert "2026-11-30 00:54:01" in table and "2026-11-30 01:53:30" in table  # first / last seen, to the second
    assert "audit " not in table  # audit records have their own panels


def test_audit_actions_and_failed_authentications_over_time(known):
    _, html = known
    assert segments(html, "audit_by_action", M0) == {
        ("entry.create", 1): 1,
        ("auth.failed", 2): 2,
        ("auth.failed", 4): 1,
        ("user.register", 4): 1,
    }
    assert segments(html, "auth_failures", M0) == {("failed authentications", 2): 2, ("failed authentications", 4): 1}
    assert bars(html, "audit_actions") == {"auth.failed": 3, "entry.create": 1, "user.register": 1}
    colors = fills(html, "audit_by_action")  # a failure in the severity palette's amber, no success in red/amber
    assert colors["auth.failed"] == {SEVERITY_COLORS["WARN"]}
    assert not (colors["entry.create"] | colors["user.register"]) & set(SEVERITY_COLORS.values())
    assert fills(html, "auth_failures") == {"failed authentications": {SEVERITY_COLORS["WARN"]}}
    t = totals(html)
    assert t["audit_events"] == 5 and t["auth_failures"] == 3


def test_what_the_log_files_do_not_hold_is_a_dash_with_its_reason_never_zero(known):
    _, html = known
    p = parse(html)
    assert set(p.unavailable) == {"requests", "errors", "error_rate", "ai_calls", "tokens", "cost_usd", "alerts"}
    assert "http.response.status_code" in p.unavailable["requests"]
    assert "gen_ai.request.model" in p.unavailable["tokens"] and "W&B run" in p.unavailable["alerts"]
    for name, reason in p.unavailable.items():
        card = re.search(
            rf'<span class="total na-total" data-total="{name}" data-unavailable="([^"]+)" '
            rf'title="([^"]+)">(.*?)</span><div class="why">(.*?)</div>',
            html,
        )
        assert card, name
        assert card.group(3) == "—" and unescape(card.group(1)) == unescape(card.group(2)) == reason
        assert reason.startswith(unescape(card.group(4))) and card.group(4)  # the short note under the dash
    for section in ("requests", "latency", "ai", "alerts"):  # sections without a source: one dash and why
        body = html.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
        assert re.search(rf'<p class="na" data-unavailable="{section}" title="[^"]+">— not in this source: ', body)
        assert "<svg" not in body and ">0<" not in body
    # the measured figures are numbers; none of the unknown ones is
    assert set(p.totals) == {"log_records", "error_records", "audit_events", "auth_failures"}


def test_measured_zeros_are_zero(tmp_path: Path):
    """No audit record and no error in the files: those are measured, so 0 (and the charts say what is empty)."""
    d = tmp_path / "logs"
    d.mkdir()
    (d / "combined.log").write_text(
        to_line(
            [
                rec(0, 9, "started"),
                rec(30, 9, "ready"),
                rec(40, 9, "GET 200", **{"http.response.status_code": 200, "http.route": "/health"}),
            ]
        )
        + "\n"
    )
    html = write_report(d, tmp_path / "r.html").read_text()
    p = parse(html)
    assert p.totals == {
        "requests": 1.0,
        "errors": 0.0,
        "error_rate": 0.0,
        "log_records": 3.0,
        "error_records": 0.0,
        "audit_events": 0.0,
        "auth_failures": 0.0,
    }
    for name in ("errors", "error_records", "audit_events", "auth_failures"):
        assert re.search(rf'data-total="{name}" data-value="0.0">0</span>', html), name
    assert re.search(r'data-total="error_rate" data-value="0.0">0.00%</span>', html)
    assert set(p.unavailable) == {"ai_calls", "tokens", "cost_usd", "alerts"}
    c = charts(html)
    assert c["errors_by_logger"] == c["errors_by_route"] == c["auth_failures"] == c["audit_actions"] == 0
    assert "no ERROR or FATAL records" in chart(html, "errors_by_logger")
    assert "no failed authentication" in chart(html, "auth_failures")
    assert 'data-unavailable="latency"' in html  # no record carries a duration: latency is unknown, not 0


def test_a_quoted_canary_never_reaches_the_page(known):
    d, html = known
    assert CANARY in "".join(e.body + str(e.attributes) for e in known_records())  # it was written ...
    raw = gzip.decompress((next(d.glob("*.gz"))).read_bytes()).decode() + (d / "combined.log").read_text()
    assert CANARY in raw
    assert CANARY not in html and "secret" not in html and "dear-diary" not in html  # ... and never shown
    assert "ValueError: bad entry &lt;str&gt;" in html


def test_report_from_log_files_with_http_and_ai_attributes(tmp_path: Path):
    d = tmp_path / "logs"
    d.mkdir()
    access = [
        rec(
            i * 7,
            9 if i % 5 else 17,
            f"request {i}",
            **{
                "http.route": "/api/entries",
                "http.response.status_code": 200 if i % 5 else 503,
                "http.server.request.duration": 0.010 * (i + 1),
            },
        )
        for i in range(30)
    ]
    ai = [
        rec(
            i * 11,
            9,
            "ai call",
            **{
                "gen_ai.request.model": "gpt-4o-mini",
                "app.feature": "summarize",
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 20 + i,
                "app.ai.cost_usd": 0.001,
            },
        )
        for i in range(10)
    ]
    audit = [
        rec(5, 9, "audit entry.create", "audit", **{"audit.action": "entry.create", "audit.seq": 1}),
        rec(6, 13, "audit auth.failed", "audit", **{"audit.action": "auth.failed", "audit.seq": 2}),
    ]
    with gzip.open(d / "combined-2026-11-29T10-00-00.000-size.log.gz", "wt") as fh:
        fh.write(to_line(access[:10]) + "\n")
    (d / "combined-2026-11-29T10-30-00.000-size.log").write_text(to_line(access[10:20] + ai) + "\n")
    (d / "combined.log").write_text(to_line(access[20:] + audit) + "\n" + "garbage\n")
    assert resolve(d) == ("logs", d)
    html = write_report(d, tmp_path / "logs.html").read_text()
    t = totals(html)
    assert t["requests"] == 30 and t["errors"] == 6 and t["error_rate"] == 0.2
    assert t["ai_calls"] == 10
    assert t["tokens"] == sum(100 + 20 + i for i in range(10))
    assert abs(t["cost_usd"] - 0.010) < 1e-12
    assert t["log_records"] == 30 + 10 + 2
    assert t["audit_events"] == 2 and t["auth_failures"] == 1
    c = charts(html)
    assert c["request_rate"] > 0 and c["latency"] > 0 and c["tokens_by_model"] > 0 and c["error_groups"] == 1
    assert c["audit_actions"] == 2
    assert set(parse(html).unavailable) == {"alerts"}  # alerts live in the W&B run
    assert re.findall(r'<p class="na" data-unavailable="([^"]+)"', html) == ["alerts"]


def test_tokens_without_cost_say_so(tmp_path: Path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "combined.log").write_text(
        to_line([rec(0, 9, "ai call", **{"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 7})]) + "\n"
    )
    p = parse(write_report(d, tmp_path / "r.html").read_text())
    assert p.totals["tokens"] == 7 and p.totals["ai_calls"] == 1
    assert "app.ai.cost_usd" in p.unavailable["cost_usd"]


def test_audit_log_only_when_combined_holds_none(tmp_path: Path):
    """combined.log rotated the audit records away; audit.log (kept longer) still has them."""
    d = tmp_path / "logs"
    d.mkdir()
    (d / "combined.log").write_text(to_line([rec(0, 9, "started")]) + "\n")
    (d / "audit.log").write_text(
        to_line(
            [rec(10, 13, "audit auth.failed", "audit", **{"audit.action": "auth.failed", "audit.outcome": "failure"})]
        )
        + "\n"
    )
    data = from_logs(d)
    assert data.audit_actions == {"auth.failed": 1} and data.totals["auth_failures"] == 1
    assert data.totals["log_records"] == 1  # the volume is combined.log's
    assert 'data-total="auth_failures" data-value="1.0"' in render(data)


def test_report_from_plain_application_logs_says_what_is_missing(tmp_path: Path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "combined.log").write_text(
        to_line([rec(0, 9, "started"), rec(1, 17, "db timeout after 3000 ms"), rec(2, 17, "db timeout after 4000 ms")])
        + "\n"
    )
    html = write_report(d, tmp_path / "r.html").read_text()
    p = parse(html)
    assert "requests" not in p.totals and p.totals["log_records"] == 3
    assert "no log record carries http.response.status_code" in html
    assert re.findall(r'<p class="na" data-unavailable="([^"]+)"', html) == [
        "error_rate",
        "requests",
        "latency",
        "ai",
        "alerts",
    ]
    assert charts(html)["error_groups"] == 1 and "db timeout after &lt;num&gt; ms" in html


@pytest.mark.integration  # a real Chromium
def test_logs_report_renders_in_headless_chromium_without_console_errors(known, tmp_path):
    d, _ = known
    page = d.parent / "report-logs.html"
    res = subprocess.run(
        chromium_cmd(
            tmp_path,
            "--virtual-time-budget=3000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.resolve().as_uri(),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert console_messages(res.stderr) == []
    dom = res.stdout
    for chart_id in (
        "logs_by_severity",
        "errors_by_logger",
        "errors_by_route",
        "audit_by_action",
        "auth_failures",
        "audit_actions",
        "error_groups",
    ):
        assert re.search(rf'<svg[^>]+data-chart="{chart_id}"', dom), chart_id
    assert len(re.findall(r'<rect[^>]+class="bar"', dom)) >= 11


def test_empty_log_files_measure_zero_records_and_know_nothing_else(tmp_path: Path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "combined.log").write_text("")
    html = write_report(d, tmp_path / "r.html").read_text()
    p = parse(html)
    assert p.totals == {"log_records": 0.0, "error_records": 0.0, "audit_events": 0.0, "auth_failures": 0.0}
    assert re.search(r'data-total="log_records" data-value="0.0">0</span>', html)
    assert set(p.unavailable) == {"requests", "errors", "error_rate", "ai_calls", "tokens", "cost_usd", "alerts"}
    assert "no log records in these files" in chart(html, "logs_by_severity")
