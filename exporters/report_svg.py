"""Inline SVG charts generated in Python (no JavaScript): time-series lines, horizontal bars, an event timeline.

Every chart is an ``<svg class="chart" data-chart="<id>" data-points="<n>">`` with a ``<title>``, so a test (or a
reader with a screen reader) can find it; points carry ``<title>`` tooltips that browsers show on hover.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from html import escape
from typing import Callable, Mapping, Sequence

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
LEVEL_COLORS = {"ERROR": "#dc2626", "WARN": "#d97706", "INFO": "#2563eb"}
W, H = 640, 230
ML, MR, MT, MB = 56, 12, 14, 44  # margins: left, right, top, bottom


def fmt_num(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    if a == 0 or a >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"


def fmt_time(t: float, with_date: bool = False) -> str:
    ts = datetime.fromtimestamp(t, tz=timezone.utc)
    return ts.strftime("%m-%d %H:%M" if with_date else "%H:%M:%S")


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _frame(chart_id: str, title: str, points: int, body: str, height: int = H) -> str:
    return (f'<svg class="chart" data-chart="{escape(chart_id)}" data-points="{points}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}">'
            f"<title>{escape(title)}</title>{body}</svg>")


def empty(chart_id: str, title: str, reason: str) -> str:
    body = (f'<rect x="0.5" y="0.5" width="{W - 1}" height="{H - 1}" fill="#f8fafc" stroke="#cbd5e1"/>'
            f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" fill="#64748b" font-size="13">{escape(reason)}</text>')
    return _frame(chart_id, title, 0, body)


def line_chart(chart_id: str, title: str, times: Sequence[float], series: Mapping[str, Sequence[float | None]],
               unit: str = "", fmt: Callable[[float], str] = fmt_num) -> str:
    pts = sum(1 for vals in series.values() for v in vals if v is not None)
    if not times or not pts:
        return empty(chart_id, title, "no data")
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 1.0
    ymax = _nice_max(max(v for vals in series.values() for v in vals if v is not None))
    pw, ph = W - ML - MR, H - MT - MB
    x = lambda t: ML + (t - t0) / span * pw if t1 > t0 else ML + pw / 2  # noqa: E731
    y = lambda v: MT + ph - v / ymax * ph  # noqa: E731
    parts = [f'<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="#fff" stroke="#e2e8f0"/>']
    for i in range(5):  # y grid and labels
        v = ymax * i / 4
        parts.append(f'<line x1="{ML}" x2="{ML + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e2e8f0"/>'
                     f'<text x="{ML - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11" fill="#475569">'
                     f"{escape(fmt(v))}</text>")
    with_date = t1 - t0 > 86400
    for i in range(5 if t1 > t0 else 1):  # x labels
        t = t0 + span * i / 4 if t1 > t0 else t0
        anchor = "start" if i == 0 and t1 > t0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x(t):.1f}" y="{MT + ph + 16}" text-anchor="{anchor}" font-size="11" '
                     f'fill="#475569">{fmt_time(t, with_date)}</text>')
    if unit:
        parts.append(f'<text x="12" y="{MT + ph / 2}" font-size="11" fill="#475569" '
                     f'transform="rotate(-90 12 {MT + ph / 2})" text-anchor="middle">{escape(unit)}</text>')
    legend_x = ML
    for n, (name, vals) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        segs: list[list[str]] = [[]]
        dots = []
        for t, v in zip(times, vals):
            if v is None:
                segs.append([])
                continue
            segs[-1].append(f"{x(t):.1f},{y(v):.1f}")
            dots.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"><title>{escape(name)} '
                        f"{fmt_time(t, with_date)}: {escape(fmt(v))}{escape(unit and ' ' + unit)}</title></circle>")
        for seg in segs:
            if len(seg) > 1:
                parts.append(f'<polyline class="series" data-series="{escape(name)}" fill="none" stroke="{color}" '
                             f'stroke-width="2" points="{" ".join(seg)}"/>')
        parts.extend(dots)
        label = escape(name[:28])
        parts.append(f'<rect x="{legend_x}" y="{H - 16}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{legend_x + 14}" y="{H - 7}" font-size="11" fill="#1e293b">{label}</text>')
        legend_x += 24 + 7 * len(name[:28])
    return _frame(chart_id, title, pts, "".join(parts))


def bar_chart(chart_id: str, title: str, items: Sequence[tuple[str, float]], fmt: Callable[[float], str] = fmt_num,
              color: str = PALETTE[1]) -> str:
    if not items:
        return empty(chart_id, title, "none")
    row_h, label_w = 22, 300
    height = MT + row_h * len(items) + 10
    vmax = max(v for _, v in items) or 1.0
    bw = W - label_w - 70
    parts = []
    for i, (label, v) in enumerate(items):
        yy = MT + i * row_h
        w = max(1.0, v / vmax * bw)
        short = label if len(label) <= 46 else label[:45] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{yy + 14}" text-anchor="end" font-size="11" fill="#1e293b">'
                     f"<title>{escape(label)}</title>{escape(short)}</text>"
                     f'<rect class="bar" x="{label_w}" y="{yy + 3}" width="{w:.1f}" height="{row_h - 7}" '
                     f'fill="{color}"><title>{escape(label)}: {escape(fmt(v))}</title></rect>'
                     f'<text x="{label_w + w + 6:.1f}" y="{yy + 14}" font-size="11" fill="#475569">'
                     f"{escape(fmt(v))}</text>")
    return _frame(chart_id, title, len(items), "".join(parts), height)


def timeline(chart_id: str, title: str, events: Sequence[Mapping[str, object]], t0: float | None,
             t1: float | None) -> str:
    """Events (``time``, ``title``, ``level``) as markers on a time axis, one lane per level."""
    timed = [e for e in events if isinstance(e.get("time"), (int, float))]
    if not timed:
        return empty(chart_id, title, "no alerts" if not events else "alerts without time")
    times = [float(e["time"]) for e in timed]  # type: ignore[arg-type]
    lo = min(times + ([t0] if t0 is not None else []))
    hi = max(times + ([t1] if t1 is not None else []))
    span = (hi - lo) or 1.0
    lanes = [lv for lv in ("ERROR", "WARN", "INFO") if any(str(e.get("level")).upper() == lv for e in timed)] or \
        ["INFO"]
    lane_h, height = 34, MT + 34 * 3 + 30
    pw = W - ML - MR - 20
    x = lambda t: ML + 10 + (t - lo) / span * pw  # noqa: E731
    parts = []
    for i, lv in enumerate(lanes):
        yy = MT + i * lane_h + lane_h / 2
        parts.append(f'<line x1="{ML}" x2="{W - MR}" y1="{yy}" y2="{yy}" stroke="#e2e8f0"/>'
                     f'<text x="{ML - 6}" y="{yy + 4}" text-anchor="end" font-size="11" fill="#475569">{lv}</text>')
    for e in timed:
        lv = str(e.get("level")).upper()
        lane = lanes.index(lv) if lv in lanes else 0
        yy = MT + lane * lane_h + lane_h / 2
        resolved = str(e.get("title", "")).startswith("[RESOLVED]")
        color = "#16a34a" if resolved else LEVEL_COLORS.get(lv, PALETTE[0])
        parts.append(f'<circle class="event" cx="{x(float(e["time"])):.1f}" cy="{yy}" r="6" fill="{color}" '  # type: ignore[arg-type]
                     f'fill-opacity="0.85"><title>{fmt_time(float(e["time"]))} {escape(str(e.get("title")))}'  # type: ignore[arg-type]
                     f"</title></circle>")
    axis_y = MT + lane_h * len(lanes) + 14
    for i in range(5):
        t = lo + span * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(f'<text x="{x(t):.1f}" y="{axis_y}" text-anchor="{anchor}" font-size="11" fill="#475569">'
                     f"{fmt_time(t)}</text>")
    return _frame(chart_id, title, len(timed), "".join(parts), max(height, axis_y + 10))
