"""Render :class:`~otel_wandb.report._model.ReportData` as one self-contained HTML page (inline CSS and SVG only).

The sections mirror the W&B dashboard (``_workspace``): Requests, Latency, Errors, AI usage & cost, Alerts,
plus Logs and Audit (the log source's own analysis). A measured figure is in
``<span class="total" data-total="<name>" data-value="<exact value>">``; a figure this source cannot tell is
``<span class="total na-total" data-total="<name>" data-unavailable="<reason>" title="<reason>">—</span>`` with the
reason under it, and a section or panel without its source is ``<p class="na" data-unavailable="<name>">``: never a 0.
Severities are coloured by name from :data:`otel_wandb.report._svg.SEVERITY_COLORS`, in charts and tables alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from html import escape
from string import Template

from otel_wandb.report import _svg as svg
from otel_wandb.report._model import AUTH_FAILED, ReportData

WIDE = 1320  # px: a chart spanning the page's row (main is at most 1400 px wide)

# The offline report runs no script at all; the live dashboard (``_live``) runs its one inline script and may fetch
# from its own origin only: nothing on the page can reach another host.
STATIC_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
LIVE_CSP = STATIC_CSP + "; script-src 'unsafe-inline'; connect-src 'self'; form-action 'self'"

PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="$csp">
<title>$title</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f1f5f9;color:#0f172a}
header{background:#0f172a;color:#f8fafc;padding:16px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#cbd5e1;font-size:12px}main{padding:16px 24px;max-width:1400px}
.totals{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:8px}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:10px 14px;min-width:120px}
.card .label{color:#64748b;font-size:12px}.card .total{font-size:22px;font-weight:600}
section{margin-top:20px}section h2{font-size:16px;margin:0 0 8px;border-bottom:2px solid #cbd5e1;padding-bottom:4px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.panel{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:8px;flex:1 1 520px;min-width:0}
.panel h3{font-size:13px;margin:0 0 4px;color:#334155}svg.chart{display:block;width:100%;height:auto}
table{border-collapse:collapse;background:#fff;font-size:12px;width:100%}th,td{border:1px solid #e2e8f0;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f8fafc}td.num{text-align:right;font-variant-numeric:tabular-nums}
.notes{color:#92400e;background:#fffbeb;border:1px solid #fde68a;border-radius:6px;padding:6px 10px;font-size:12px}
.na{color:#475569;background:#f8fafc;border:1px dashed #cbd5e1;border-radius:6px;padding:6px 10px;font-size:12px}
.card .why{color:#64748b;font-size:11px;max-width:220px}.card .na-total{color:#94a3b8}
.empty{color:#64748b;font-size:12px}
header form{margin-top:6px;font-size:12px;color:#cbd5e1}header select{font:inherit}
$severity_css
</style></head><body>
<header><h1>$title</h1><p id="span">source: $source &middot; generated $generated &middot; $span</p>$live</header>
<main>
$main
</main>$script</body></html>
""")


SEVERITY_CSS = "".join(
    f".sev-{name},.level-{name}{{color:{color};font-weight:600}}" for name, color in svg.SEVERITY_COLORS.items()
)
DASH = "—"
TOP_ROWS = 15  # rows of the top tables and bars of the ranked bar charts


def _card(name: str, label: str, value: float | None, text: str, reason: str = "") -> str:
    if value is None:  # not known from this source: a dash, the reason as its tooltip and in short under it
        why = escape(reason, quote=True)
        return (
            f'<div class="card" title="{why}"><div class="label">{escape(label)}</div><span class="total '
            f'na-total" data-total="{name}" data-unavailable="{why}" title="{why}">{DASH}</span>'
            f'<div class="why">{escape(_short(reason))}</div></div>'
        )
    return (
        f'<div class="card"><div class="label">{escape(label)}</div><span class="total" data-total="{name}" '
        f'data-value="{value!r}">{escape(text)}</span></div>'
    )


def _short(reason: str) -> str:
    """The clause before the explanation: "no log record carries http.response.status_code"."""
    return reason.split(": ", 1)[0]


def _panel(title: str, chart: str, wide: bool = False) -> str:
    style = ' style="flex:1 1 100%"' if wide else ""
    return f'<div class="panel"{style}><h3>{escape(title)}</h3>{chart}</div>'


def _na(name: str, reason: str) -> str:
    """What stands where a panel or a section has no source: a dash and the reason (never an empty chart)."""
    return (
        f'<p class="na" data-unavailable="{escape(name)}" title="{escape(reason, quote=True)}">{DASH} not in '
        f"this source: {escape(reason)}</p>"
    )


def _na_panel(title: str, name: str, reason: str, wide: bool = False) -> str:
    return _panel(title, _na(name, reason), wide)


def _latency(d: ReportData) -> str:
    """Percentiles next to p95 per route; without per-route figures (log source) the one chart spans the row."""
    if not d.known("latency"):
        return _na_section("latency", "Latency", d.unavailable["latency"])
    wide = not any(v is not None for vals in d.p95_by_route.values() for v in vals)
    why = d.empty.get("latency", "no data")
    overall = _panel(
        "Server latency p50 / p95 / p99",
        svg.line_chart(
            "latency",
            "Server latency percentiles",
            d.times,
            {"p50": d.p50, "p95": d.p95, "p99": d.p99},
            "ms",
            width=WIDE if wide else svg.W,
            empty_reason=why,
        ),
        wide=wide,
    )
    if wide:
        return _section("latency", "Latency", overall)
    routes = {_route(rt): vals for rt, vals in d.p95_by_route.items()}
    return _section(
        "latency",
        "Latency",
        overall
        + _panel(
            "p95 per route (busiest routes)",
            svg.line_chart("latency_by_route", "Server latency p95 per route", d.times, routes, "ms", empty_reason=why),
        ),
    )


def _route(route: str) -> str:
    """Flask converters out of the way for a legend: ``/api/entries/<int:entry_id>`` -> ``/api/entries/<entry_id>``."""
    return re.sub(r"<[a-z_]+:", "<", route)


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{escape(title)}</h2><div class="grid">{body}</div></section>'


def _na_section(sid: str, title: str, reason: str) -> str:
    return f'<section id="{sid}"><h2>{escape(title)}</h2>{_na(sid, reason)}</section>'


def _ts(t: object) -> str:
    return svg.fmt_time(float(t), with_date=True) if isinstance(t, (int, float)) else ""


def _ts_s(t: object) -> str:
    """To the second, with the year (a message's first / last seen)."""
    if not isinstance(t, (int, float)):
        return ""
    return datetime.fromtimestamp(float(t), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _usd(v: float) -> str:
    if 0 < abs(v) < 0.0001:  # keep two significant digits rather than print $0.0000
        return f"${v:.{min(10, 1 - math.floor(math.log10(abs(v))))}f}"
    return f"${v:,.4f}" if v < 100 else f"${v:,.2f}"


def _table(
    head: list[str],
    rows: list[list[str]],
    num_cols: AbstractSet[int] = frozenset(),
    table_id: str = "",
    title: str = "",
    row_attrs: list[str] | None = None,
) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    attrs = row_attrs or [""] * len(rows)
    trs = "".join(
        f"<tr{a}>"
        + "".join(f'<td class="num">{c}</td>' if i in num_cols else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r, a in zip(rows, attrs)
    )
    tid = f' data-table="{escape(table_id)}"' if table_id else ""
    h3 = f"<h3>{escape(title)}</h3>" if title else ""
    return f'<div class="panel" style="flex:1 1 100%">{h3}<table{tid}><tr>{th}</tr>{trs}</table></div>'


def _sev(name: object) -> str:
    """A severity (or alert level) in a table, coloured from the one severity palette."""
    return f'<span class="sev-{escape(svg.severity_key(name))}">{escape(str(name))}</span>'


def _count(v: float) -> str:
    return f"{v:,.0f}"


CARDS: tuple[tuple[str, str, Callable[[float], str]], ...] = (  # name, label, format
    ("requests", "requests", _count),
    ("errors", "errors (5xx)", _count),
    ("error_rate", "error rate", lambda v: f"{v:.2%}"),
    ("ai_calls", "AI calls", _count),
    ("tokens", "AI tokens", _count),
    ("cost_usd", "AI cost (USD)", _usd),
    ("alerts", "alerts", _count),
    ("log_records", "log records", _count),
    ("error_records", "ERROR / FATAL records", _count),
    ("audit_events", "audit events", _count),
    ("auth_failures", "failed authentications", _count),
)


def _cards(d: ReportData) -> str:
    out = []
    for name, label, fmt in CARDS:
        value = d.totals.get(name)
        if value is None and name not in d.unavailable:
            continue  # neither measured nor explained: the source does not speak of it (an older ReportData)
        out.append(_card(name, label, value, fmt(value) if value is not None else "", d.unavailable.get(name, "")))
    return "".join(out)


def _requests(d: ReportData) -> str:
    if not d.known("requests"):
        return _na_section("requests", "Requests", d.unavailable["requests"])
    why = d.empty.get("requests", "no data")
    return _section(
        "requests",
        "Requests",
        _panel(
            "Request rate",
            svg.line_chart(
                "request_rate", "Request rate", d.times, {"requests/s": d.request_rate}, "req/s", empty_reason=why
            ),
        )
        + _panel(
            "Requests per interval",
            svg.line_chart(
                "requests",
                "Requests and errors per interval",
                d.times,
                {"requests": d.requests, "errors": d.errors},
                empty_reason=why,
                colors={"errors": svg.SEVERITY_COLORS["ERROR"]},
            ),
        ),
    )


def _errors(d: ReportData) -> str:
    red = svg.SEVERITY_COLORS["ERROR"]
    if d.known("error_rate"):
        rate = _panel(
            "Error rate",
            svg.line_chart(
                "error_rate",
                "Error rate (5xx / requests)",
                d.times,
                {"error rate": d.error_rate},
                "",
                lambda v: f"{v:.1%}",
                "pct",
                colors={"error rate": red},
            ),
        )
    else:
        rate = _na_panel("Error rate", "error_rate", d.unavailable["error_rate"])
    groups = d.error_groups[:TOP_ROWS]
    chart = _panel(
        "Top error groups",
        svg.bar_chart(
            "error_groups",
            "Top error groups",
            [(f"{g['type']}: {g['message']}", float(g["count"])) for g in groups],
            color=red,
            empty_reason=d.empty.get("error_groups", "none"),
        ),
    )
    table = (
        _table(
            ["count", "type", "message", "where", "first seen", "last seen"],
            [
                [
                    str(g["count"]),
                    escape(str(g["type"])),
                    escape(str(g["message"])),
                    escape(_route(str(g.get("where") or ""))),
                    _ts(g.get("first_seen")),
                    _ts(g.get("last_seen")),
                ]
                for g in groups
            ],
            {0},
            "error_groups",
        )
        if groups
        else ""
    )
    return _section("errors", "Errors", rate + chart + table)


def _ranked(counts: dict[str, int], label: Callable[[str], str] = str) -> list[tuple[str, float]]:
    return [(label(k), float(v)) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_ROWS]]


def _logs(d: ReportData) -> str:
    """Log volume per severity over time, ERROR/FATAL records per logger and per route, the top messages."""
    if d.logs_by_severity or d.known("log_records"):
        parts = [
            _panel(
                "Log volume per severity",
                svg.stacked_bars(
                    "logs_by_severity",
                    "Log records per severity and interval",
                    d.times,
                    d.seconds,
                    d.logs_by_severity,
                    "records",
                    svg.SEVERITY_COLORS,
                    WIDE,
                    d.empty.get("logs_by_severity", "no data"),
                ),
                wide=True,
            )
        ]
    else:
        parts = [_na_panel("Log volume per severity", "logs_by_severity", d.unavailable["log_records"], True)]
    per_record = ("errors_by_logger", "errors_by_route", "top_messages")
    reasons = {d.unavailable.get(name, "") for name in per_record}
    if len(reasons) == 1 and "" not in reasons:  # the run: one panel says why for the three
        parts.append(
            _na_panel(
                "ERROR / FATAL records per logger and per route, top messages",
                ",".join(per_record),
                reasons.pop(),
                True,
            )
        )
        return _section("logs", "Logs", "".join(parts))
    red = svg.SEVERITY_COLORS["ERROR"]
    for name, title, counts, label in (
        ("errors_by_logger", "ERROR / FATAL records per logger", d.errors_by_logger, str),
        ("errors_by_route", "ERROR / FATAL records per route", d.errors_by_route, _route),
    ):
        if d.known(name):
            parts.append(
                _panel(
                    title,
                    svg.bar_chart(
                        name, title, _ranked(counts, label), color=red, empty_reason=d.empty.get(name, "none")
                    ),
                )
            )
        else:
            parts.append(_na_panel(title, name, d.unavailable[name]))
    title = "Top messages (content-free: quoted text, numbers and ids masked; audit records: see Audit)"
    top = d.top_messages[:TOP_ROWS]
    if not d.known("top_messages"):
        parts.append(_na_panel(title, "top_messages", d.unavailable["top_messages"], True))
    elif not top:
        parts.append(_panel(title, f'<p class="empty">{escape(d.empty.get("top_messages", "none"))}</p>', True))
    else:
        parts.append(
            _table(
                ["count", "severity", "logger", "message", "first seen (UTC)", "last seen (UTC)"],
                [
                    [
                        f"{m['count']:,}",
                        _sev(m["severity"]),
                        escape(str(m["logger"])),
                        escape(str(m["message"])),
                        _ts_s(m["first_seen"]),
                        _ts_s(m["last_seen"]),
                    ]
                    for m in top
                ],
                {0},
                "top_messages",
                title,
                [
                    f' data-count="{m["count"]}" data-severity="{escape(str(m["severity"]))}" '
                    f'data-first="{m["first_seen"]:.3f}" data-last="{m["last_seen"]:.3f}"'
                    for m in top
                ],
            )
        )
    return _section("logs", "Logs", "".join(parts))


def _ai(d: ReportData) -> str:
    if not d.known("ai"):
        return _na_section("ai", "AI usage & cost", d.unavailable["ai"])
    panels = []
    for key, label, data, unit, fmt, axis in (
        ("tokens", "Tokens", d.tokens, "tokens", svg.fmt_num, "num"),
        ("cost", "Cost", d.cost, "USD", _usd, "usd"),
    ):
        figure = "tokens" if key == "tokens" else "cost_usd"
        for dim in ("model", "feature"):
            title = f"{label} per {dim}"
            if d.known(figure):
                panels.append(
                    _panel(
                        title,
                        svg.line_chart(
                            f"{key}_by_{dim}",
                            title,
                            d.times,
                            data[dim],
                            unit,
                            fmt,
                            axis,
                            empty_reason=d.empty.get("ai", "no data"),
                        ),
                    )
                )
            else:
                panels.append(_na_panel(title, f"{key}_by_{dim}", d.unavailable[figure]))
    names = [(dim, name) for dim in ("model", "feature") for name in sorted(set(d.tokens[dim]) | set(d.cost[dim]))]
    if names:
        panels.append(
            _table(
                ["model / feature", "tokens", "cost (USD)"],
                [
                    [
                        escape(f"{dim}: {name}"),
                        f"{sum(d.tokens[dim].get(name, [])):,.0f}" if d.known("tokens") else DASH,
                        _usd(sum(d.cost[dim].get(name, []))) if d.known("cost_usd") else DASH,
                    ]
                    for dim, name in names
                ],
                {1, 2},
                "ai",
            )
        )
    return _section("ai", "AI usage & cost", "".join(panels))


def _alerts(d: ReportData) -> str:
    if not d.known("alerts"):
        return _na_section("alerts", "Alerts", d.unavailable["alerts"])
    t = d.times
    return _section(
        "alerts",
        "Alerts",
        _panel(
            "Alert timeline",
            svg.timeline("alerts", "Alert timeline", d.alerts, t[0] if t else None, t[-1] if t else None, WIDE),
            wide=True,
        )
        + _table(
            ["time", "level", "title", "text"],
            [
                [_ts(a.get("time")), _sev(a.get("level")), escape(str(a.get("title"))), escape(str(a.get("text")))]
                for a in d.alerts
            ],
        ),
    )


def _audit(d: ReportData) -> str:
    """Audit actions over time and in total, failed authentications over time (the log source)."""
    if not d.known("audit"):
        return _na_section("audit", "Audit", d.unavailable["audit"])
    why = d.empty.get("audit", "no audit records")
    # auth.failed is audited at WARN (app/audit): the severity palette colours it; the other actions take colours
    # that no severity uses, so that no successful action looks like an error
    others = [a for a in d.audit_by_action if a != AUTH_FAILED]
    colors = {a: svg.NEUTRAL_COLORS[i % len(svg.NEUTRAL_COLORS)] for i, a in enumerate(others)}
    colors[AUTH_FAILED] = svg.SEVERITY_COLORS["WARN"]
    failed = {"failed authentications": d.auth_failures}
    return _section(
        "audit",
        "Audit",
        _panel(
            "Audit actions over time",
            svg.stacked_bars(
                "audit_by_action",
                "Audit records per action and interval",
                d.times,
                d.seconds,
                d.audit_by_action,
                "records",
                colors,
                WIDE,
                why,
            ),
            wide=True,
        )
        + _panel(
            "Failed authentications over time",
            svg.stacked_bars(
                "auth_failures",
                "Failed authentications per interval",
                d.times,
                d.seconds,
                failed,
                "records",
                {"failed authentications": svg.SEVERITY_COLORS["WARN"]},
                empty_reason=d.empty.get("auth_failures", "no failed authentication"),
            ),
        )
        + _panel(
            "Audit actions",
            svg.bar_chart(
                "audit_actions",
                "Audit actions",
                _ranked(d.audit_actions),
                color=svg.NEUTRAL_COLORS[2],
                empty_reason=why,
            ),
        ),
    )


def render(d: ReportData, *, live: str = "", script: str = "") -> str:
    """The whole page. ``live`` (controls under the title) and ``script`` (one inline script) make it the live
    dashboard; without them it is the offline report, which runs no script."""
    return PAGE.substitute(
        csp=LIVE_CSP if script else STATIC_CSP,
        title=escape(d.title),
        source=escape(d.source),
        span=escape(span_text(d)),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        main=render_main(d),
        severity_css=SEVERITY_CSS,
        live=live,
        script=script,
    )


def span_text(d: ReportData) -> str:
    t = d.times
    return f"{_ts(t[0])} → {_ts(t[-1])} UTC, {len(t)} intervals" if t else "no intervals"


def render_main(d: ReportData) -> str:
    """The body of the page: the headline figures, the notes and the sections (what the live dashboard swaps)."""
    if d.kind == "logs":  # what the log files hold first; what they cannot tell at the end, said once each
        sections = [_logs(d), _errors(d), _audit(d), _requests(d), _latency(d), _ai(d), _alerts(d)]
    else:
        sections = [_requests(d), _latency(d), _errors(d), _ai(d), _alerts(d), _logs(d), _audit(d)]
    notes = "".join(f'<p class="notes">{escape(n)}</p>' for n in d.notes)
    return f'<div class="totals">{_cards(d)}</div>\n{notes}\n' + "\n".join(sections)
