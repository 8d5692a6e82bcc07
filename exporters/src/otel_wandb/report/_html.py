"""Render :class:`~otel_wandb.report._model.ReportData` as one self-contained HTML page (inline CSS and SVG only).

The sections mirror the W&B dashboard (exporters/src/otel_wandb/report/_workspace.py): Requests, Latency, Errors, AI usage & cost, Alerts.
Totals are in ``<span class="total" data-total="<name>" data-value="<exact value>">`` elements.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from html import escape
from string import Template

from otel_wandb.report import _svg as svg
from otel_wandb.report._model import ReportData

WIDE = 1320  # px: a chart spanning the page's row (main is at most 1400 px wide)

PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
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
.level-ERROR{color:#dc2626;font-weight:600}.level-WARN{color:#d97706;font-weight:600}
</style></head><body>
<header><h1>$title</h1><p>source: $source &middot; generated $generated &middot; $span</p></header>
<main>
<div class="totals">$totals</div>
$notes
$sections
</main></body></html>
""")


def _card(name: str, label: str, value: float, text: str) -> str:
    return (f'<div class="card"><div class="label">{escape(label)}</div><span class="total" data-total="{name}" '
            f'data-value="{value!r}">{escape(text)}</span></div>')


def _panel(title: str, chart: str, wide: bool = False) -> str:
    style = ' style="flex:1 1 100%"' if wide else ""
    return f'<div class="panel"{style}><h3>{escape(title)}</h3>{chart}</div>'


def _latency(d: ReportData) -> str:
    """Percentiles next to p95 per route; without per-route figures (log source) the one chart spans the row."""
    wide = not any(v is not None for vals in d.p95_by_route.values() for v in vals)
    overall = _panel("Server latency p50 / p95 / p99", svg.line_chart(
        "latency", "Server latency percentiles", d.times, {"p50": d.p50, "p95": d.p95, "p99": d.p99}, "ms",
        width=WIDE if wide else svg.W), wide=wide)
    if wide:
        return overall
    routes = {_route(rt): vals for rt, vals in d.p95_by_route.items()}
    return overall + _panel("p95 per route (busiest routes)", svg.line_chart(
        "latency_by_route", "Server latency p95 per route", d.times, routes, "ms"))


def _route(route: str) -> str:
    """Flask converters out of the way for a legend: ``/api/entries/<int:entry_id>`` -> ``/api/entries/<entry_id>``."""
    return re.sub(r"<[a-z_]+:", "<", route)


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{escape(title)}</h2><div class="grid">{body}</div></section>'


def _ts(t: object) -> str:
    return svg.fmt_time(float(t), with_date=True) if isinstance(t, (int, float)) else ""  # type: ignore[arg-type]


def _usd(v: float) -> str:
    if 0 < abs(v) < 0.0001:  # keep two significant digits rather than print $0.0000
        return f"${v:.{min(10, 1 - math.floor(math.log10(abs(v))))}f}"
    return f"${v:,.4f}" if v < 100 else f"${v:,.2f}"


def _table(head: list[str], rows: list[list[str]], num_cols: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in num_cols else f"<td>{c}</td>"
                                   for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="panel" style="flex:1 1 100%"><table><tr>{th}</tr>{trs}</table></div>'


def _sid(section: str) -> str:
    return section.split('"', 2)[1]


def _note_section(section: str) -> str:
    head = section.split('<div class="grid">', 1)[0]
    return head + '<p class="notes">not in the log files: see the notes above, or run ai-diary-report on the W&B ' \
        'run</p></section>'


def render(d: ReportData, max_groups: int = 15) -> str:
    t = d.times
    tot = d.totals
    cards = [_card("requests", "requests", tot.get("requests", 0.0), f"{tot.get('requests', 0):,.0f}"),
             _card("errors", "errors (5xx)", tot.get("errors", 0.0), f"{tot.get('errors', 0):,.0f}")]
    if tot.get("requests"):
        rate = tot.get("errors", 0.0) / tot["requests"]
        cards.append(_card("error_rate", "error rate", rate, f"{rate:.2%}"))
    cards.append(_card("tokens", "AI tokens", tot.get("tokens", 0.0), f"{tot.get('tokens', 0):,.0f}"))
    cards.append(_card("cost_usd", "AI cost (USD)", tot.get("cost_usd", 0.0), _usd(tot.get("cost_usd", 0.0))))
    if d.kind == "run":
        cards.append(_card("alerts", "alerts", tot.get("alerts", 0.0), f"{tot.get('alerts', 0):,.0f}"))
    else:
        cards.append(_card("log_records", "log records", tot.get("log_records", 0.0),
                           f"{tot.get('log_records', 0):,.0f}"))
    rate_s = {"requests/s": d.request_rate}
    sections = [
        _section("requests", "Requests",
                 _panel("Request rate", svg.line_chart("request_rate", "Request rate", t, rate_s, "req/s"))
                 + _panel("Requests per interval", svg.line_chart(
                     "requests", "Requests and errors per interval", t, {"requests": d.requests,
                                                                         "errors": d.errors}))),
        _section("latency", "Latency", _latency(d)),
        _section("errors", "Errors",
                 _panel("Error rate", svg.line_chart("error_rate", "Error rate (5xx / requests)", t,
                                                     {"error rate": d.error_rate}, "", lambda v: f"{v:.1%}", "pct"))
                 + (_panel("Log records by severity", svg.line_chart(
                     "logs_by_severity", "Log records by severity", t, d.logs_by_severity))
                    if d.logs_by_severity else "")
                 + _panel("Top error groups", svg.bar_chart(
                     "error_groups", "Top error groups", [(f"{g['type']}: {g['message']}", float(g["count"]))
                                                          for g in d.error_groups[:max_groups]]))
                 + _table(["count", "type", "message", "where", "first seen", "last seen"],
                          [[str(g["count"]), escape(str(g["type"])), escape(str(g["message"])),
                            escape(str(g.get("where") or "")), _ts(g.get("first_seen")), _ts(g.get("last_seen"))]
                           for g in d.error_groups[:max_groups]], {0})),
        _section("ai", "AI usage & cost", "".join(
            _panel(f"{label} per {dim}", svg.line_chart(f"{key}_by_{dim}", f"{label} per {dim}", t, data[dim], unit,
                                                        fmt, axis))
            for key, label, data, unit, fmt, axis in (("tokens", "Tokens", d.tokens, "tokens", svg.fmt_num, "num"),
                                                      ("cost", "Cost", d.cost, "USD", _usd, "usd"))
            for dim in ("model", "feature"))
            + _table(["model / feature", "tokens", "cost (USD)"],
                     [[escape(f"{dim}: {name}"), f"{sum(d.tokens[dim].get(name, [])):,.0f}",
                       _usd(sum(d.cost[dim].get(name, [])))]
                      for dim in ("model", "feature") for name in sorted(set(d.tokens[dim]) | set(d.cost[dim]))],
                     {1, 2})),
        _section("alerts", "Alerts",
                 _panel("Alert timeline", svg.timeline("alerts", "Alert timeline", d.alerts,
                                                       t[0] if t else None, t[-1] if t else None, WIDE), wide=True)
                 + _table(["time", "level", "title", "text"],
                          [[_ts(a.get("time")), f'<span class="level-{escape(str(a.get("level")))}">'
                            f'{escape(str(a.get("level")))}</span>', escape(str(a.get("title"))),
                            escape(str(a.get("text")))] for a in d.alerts])),
    ]
    if d.kind == "logs":  # log files rarely hold request / AI figures: say so instead of drawing empty charts
        missing = {"requests": not any(d.requests), "latency": not any(v is not None for v in d.p50),
                   "ai": not any(sum(v) for v in d.tokens["model"].values()), "alerts": not d.alerts}
        sections = [_note_section(s) if missing.get(_sid(s)) else s for s in sections]
    if d.audit_actions:
        sections.append(_section("audit", "Audit events", _panel("Audit actions", svg.bar_chart(
            "audit_actions", "Audit actions", sorted(d.audit_actions.items(), key=lambda kv: (-kv[1], kv[0])),
            color=svg.PALETTE[0]))))
    span = f"{_ts(t[0])} → {_ts(t[-1])} UTC, {len(t)} intervals" if t else "no intervals"
    notes = "".join(f'<p class="notes">{escape(n)}</p>' for n in d.notes)
    return PAGE.substitute(title=escape(d.title), source=escape(d.source), span=escape(span), notes=notes,
                           generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                           totals="".join(cards), sections="\n".join(sections))
