"""Inline SVG charts generated in Python (no JavaScript): time-series lines, horizontal bars, an event timeline.

Every chart is an ``<svg class="chart" data-chart="<id>" data-points="<n>">`` with a ``<title>``, so a test (or a
reader with a screen reader) can find it; points carry ``<title>`` tooltips that browsers show on hover.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape

# Series that are not severities (models, features, routes, audit actions) take these by position.
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
# THE severity palette: every chart, table and timeline of both reports that colours a log severity or an alert
# level takes its colour from here, by name, never by position: ERROR/FATAL red, WARN amber, INFO blue,
# DEBUG/TRACE grey (FATAL a darker red and TRACE a lighter grey, so that a stack of both still tells them apart).
SEVERITY_ORDER = ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE", "UNSET")  # most severe first
SEVERITY_COLORS = {
    "FATAL": "#991b1b",
    "ERROR": "#dc2626",
    "WARN": "#d97706",
    "INFO": "#2563eb",
    "DEBUG": "#64748b",
    "TRACE": "#94a3b8",
    "UNSET": "#a8a29e",
}
NEUTRAL_COLORS = ("#16a34a", "#7c3aed", "#0891b2", "#db2777")  # hues no severity uses (green, violet, cyan, pink)
_SEVERITY_ALIASES = {
    "WARNING": "WARN",
    "CRITICAL": "FATAL",
    "ERR": "ERROR",
    "INFORMATION": "INFO",
    "NOTSET": "UNSET",
    "": "UNSET",
}


def severity_key(name: object) -> str:
    """The canonical severity name: ``warning`` -> ``WARN``, ``CRITICAL`` -> ``FATAL``, ``ERROR2`` -> ``ERROR``;
    anything else is upper-cased as is (and coloured as UNSET)."""
    text = str(name or "").strip().upper()
    text = _SEVERITY_ALIASES.get(text, text)
    base = text.rstrip("0123456789")
    return base if base in SEVERITY_COLORS else text


def severity_color(name: object) -> str:
    return SEVERITY_COLORS.get(severity_key(name), SEVERITY_COLORS["UNSET"])


def by_severity(names: Sequence[str]) -> list[str]:
    """``names`` most severe first (unknown names last, alphabetically)."""
    rank = {n: i for i, n in enumerate(SEVERITY_ORDER)}
    return sorted(names, key=lambda n: (rank.get(severity_key(n), len(rank)), n))


W, H = 640, 230
ML, MR, MT, MB = 56, 12, 14, 44  # margins: left (timeline; line charts size theirs), right, top, bottom
CHAR_W = 6.6  # px per character of an 11 px label (digits and "$.,%k" in a system sans: ~6.1-6.4)


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
    ts = datetime.fromtimestamp(t, tz=UTC)
    return ts.strftime("%m-%d %H:%M" if with_date else "%H:%M:%S")


def nice_ticks(vmax: float, target: int = 4) -> tuple[list[float], float]:
    """Axis ticks 0, step, 2·step, ... up to the first multiple >= ``vmax``, with step 1, 2 or 5 × 10^k chosen so
    about ``target`` intervals cover the data ("nice numbers"). Returns (ticks, step)."""
    if not math.isfinite(vmax) or vmax <= 0:
        vmax = 1.0
    raw = vmax / target
    exp = 10.0 ** math.floor(math.log10(raw))
    step = next(m * exp for m in (1, 2, 5, 10) if raw <= m * exp * (1 + 1e-9))
    count = max(1, math.ceil(vmax / step - 1e-9))
    return [round(i * step, 12) for i in range(count + 1)], step


def _decimals(step: float) -> int:
    """Digits after the point that tell multiples of ``step`` apart (0.5 -> 1, 0.0005 -> 4, 20 -> 0)."""
    return max(0, -math.floor(math.log10(step) + 1e-9))


def tick_label(v: float, step: float, axis: str = "num") -> str:
    """One axis label, as precise as the tick step needs (and no more): ``num`` (k / M above 1000), ``pct``
    (fractions shown as %), ``usd`` (cents for steps from $0.01, more digits below: $0.0005)."""
    prefix = "$" if axis == "usd" else ""
    if v == 0:
        return f"{prefix}0{'%' if axis == 'pct' else ''}"
    if axis == "pct":
        return f"{v * 100:.{_decimals(step * 100)}f}%"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if step >= scale:
            return f"{prefix}{v / scale:.{_decimals(step / scale)}f}{suffix}"
    if axis == "usd" and step < 1:
        return f"${v:.{max(2, _decimals(step))}f}"
    return f"{prefix}{v:.{_decimals(step)}f}"


def left_margin(labels: Sequence[str], unit: str) -> int:
    """Room for the longest tick label, the gap to the axis and, with a unit, the rotated unit label left of it."""
    longest = max((len(x) for x in labels), default=1)
    return math.ceil(longest * CHAR_W) + 8 + (20 if unit else 4)


def _frame(chart_id: str, title: str, points: int, body: str, height: int = H, width: int = W) -> str:
    return (
        f'<svg class="chart" data-chart="{escape(chart_id)}" data-points="{points}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def empty(chart_id: str, title: str, reason: str, width: int = W) -> str:
    body = (
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{H - 1}" fill="#f8fafc" stroke="#cbd5e1"/>'
        f'<text x="{width / 2}" y="{H / 2}" text-anchor="middle" fill="#64748b" font-size="13">'
        f"{escape(reason)}</text>"
    )
    return _frame(chart_id, title, 0, body, width=width)


def _axes(
    ticks: Sequence[float],
    labels: Sequence[str],
    ml: int,
    pw: float,
    t0: float,
    t1: float,
    unit: str,
    x: Callable[[float], float],
    y: Callable[[float], float],
) -> list[str]:
    """Plot area, y grid with tick labels, five x labels and the rotated unit label."""
    ph = H - MT - MB
    parts = [f'<rect x="{ml}" y="{MT}" width="{pw}" height="{ph}" fill="#fff" stroke="#e2e8f0"/>']
    for v, label in zip(ticks, labels):  # y grid and labels
        parts.append(
            f'<line x1="{ml}" x2="{ml + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e2e8f0"/>'
            f'<text class="tick" x="{ml - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#475569">{escape(label)}</text>'
        )
    span = (t1 - t0) or 1.0
    with_date = t1 - t0 > 86400
    for i in range(5 if t1 > t0 else 1):  # x labels
        t = t0 + span * i / 4 if t1 > t0 else t0
        anchor = "start" if i == 0 and t1 > t0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text x="{x(t):.1f}" y="{MT + ph + 16}" text-anchor="{anchor}" font-size="11" '
            f'fill="#475569">{fmt_time(t, with_date)}</text>'
        )
    if unit:
        parts.append(
            f'<text class="unit" x="12" y="{MT + ph / 2}" font-size="11" fill="#475569" '
            f'transform="rotate(-90 12 {MT + ph / 2})" text-anchor="middle">{escape(unit)}</text>'
        )
    return parts


def _legend(items: Sequence[tuple[str, str]], ml: float, width: int) -> tuple[list[str], int]:
    """(name, colour) swatches under the plot, wrapped onto more rows when needed; returns (parts, extra rows)."""
    parts = []
    legend_x, legend_row = float(ml), 0
    for name, color in items:
        label = legend_label(name)
        item_w = 24 + CHAR_W * len(label)
        if legend_x > ml and legend_x + item_w > width - MR:  # wrap the legend onto another row
            legend_x, legend_row = ml, legend_row + 1
        ly = H - 16 + 14 * legend_row
        parts.append(
            f'<rect class="legend" data-series="{escape(name)}" x="{legend_x:.1f}" y="{ly}" width="10" '
            f'height="10" fill="{color}"/><text x="{legend_x + 14:.1f}" y="{ly + 9}" font-size="11" '
            f'fill="#1e293b"><title>{escape(name)}</title>{escape(label)}</text>'
        )
        legend_x += item_w
    return parts, legend_row


def series_color(name: str, index: int, colors: Mapping[str, str] | None) -> str:
    """A series' colour: its own (``colors``, e.g. :data:`SEVERITY_COLORS`) or else the palette by position."""
    return colors[name] if colors and name in colors else PALETTE[index % len(PALETTE)]


def line_chart(
    chart_id: str,
    title: str,
    times: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    unit: str = "",
    fmt: Callable[[float], str] = fmt_num,
    axis: str = "num",
    width: int = W,
    colors: Mapping[str, str] | None = None,
    empty_reason: str = "no data",
) -> str:
    """Lines over time; y ticks are nice numbers labelled per ``axis`` (:func:`tick_label`), ``fmt`` formats the
    point tooltips; the left margin fits the longest tick label. ``colors`` fixes a series' colour by name (the
    severities); other series take the palette by position. Without data the chart says ``empty_reason``."""
    pts = sum(1 for vals in series.values() for v in vals if v is not None)
    if not times or not pts:
        return empty(chart_id, title, empty_reason, width)
    t0, t1 = min(times), max(times)
    span = (t1 - t0) or 1.0
    ticks, step = nice_ticks(max(v for vals in series.values() for v in vals if v is not None))
    labels = [tick_label(v, step, axis) for v in ticks]
    ymax, ml = ticks[-1], left_margin(labels, unit)
    pw, ph = width - ml - MR, H - MT - MB
    x: Callable[[float], float] = lambda t: ml + (t - t0) / span * pw if t1 > t0 else ml + pw / 2  # noqa: E731
    y: Callable[[float], float] = lambda v: MT + ph - v / ymax * ph  # noqa: E731
    parts = _axes(ticks, labels, ml, pw, t0, t1, unit, x, y)
    with_date = t1 - t0 > 86400
    swatches = []
    for n, (name, vals) in enumerate(series.items()):
        color = series_color(name, n, colors)
        swatches.append((name, color))
        segs: list[list[str]] = [[]]
        dots = []
        for t, v in zip(times, vals):
            if v is None:
                segs.append([])
                continue
            segs[-1].append(f"{x(t):.1f},{y(v):.1f}")
            dots.append(
                f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"><title>{escape(name)} '
                f"{fmt_time(t, with_date)}: {escape(fmt(v))}{escape(unit and ' ' + unit)}</title></circle>"
            )
        for seg in segs:
            if len(seg) > 1:
                parts.append(
                    f'<polyline class="series" data-series="{escape(name)}" fill="none" stroke="{color}" '
                    f'stroke-width="2" points="{" ".join(seg)}"/>'
                )
        parts.extend(dots)
    legend, rows = _legend(swatches, ml, width)
    return _frame(chart_id, title, pts, "".join(parts + legend), H + 14 * rows, width)


def stacked_bars(
    chart_id: str,
    title: str,
    times: Sequence[float],
    seconds: Sequence[float],
    series: Mapping[str, Sequence[float]],
    unit: str = "",
    colors: Mapping[str, str] | None = None,
    width: int = W,
    empty_reason: str = "no data",
) -> str:
    """Counts per interval as stacked bars: one bar per interval (``times`` = interval ends, ``seconds`` = their
    lengths), one segment per series in ``series`` order from the bottom. Every segment is a
    ``<rect class="bar" data-series=... data-time=<interval end> data-value=<count>>`` with a tooltip; zero
    segments are not drawn. ``data-points`` counts the segments."""
    segs = sum(1 for vals in series.values() for v in vals if v)
    if not times or not segs:
        return empty(chart_id, title, empty_reason, width)
    starts = [t - (s if s > 0 else 0.0) for t, s in zip(times, seconds)]
    t0, t1 = min(starts), max(times)
    span = (t1 - t0) or 1.0
    stack = [sum(vals[i] or 0.0 for vals in series.values()) for i in range(len(times))]
    ticks, step = nice_ticks(max(stack))
    labels = [tick_label(v, step, "num") for v in ticks]
    ymax, ml = ticks[-1], left_margin(labels, unit)
    pw, ph = width - ml - MR, H - MT - MB
    x: Callable[[float], float] = lambda t: ml + (t - t0) / span * pw  # noqa: E731
    y: Callable[[float], float] = lambda v: MT + ph - v / ymax * ph  # noqa: E731
    parts = _axes(ticks, labels, ml, pw, t0, t1, unit, x, y)
    with_date = t1 - t0 > 86400
    base = [0.0] * len(times)
    swatches = []
    for n, (name, vals) in enumerate(series.items()):
        color = series_color(name, n, colors)
        swatches.append((name, color))
        for i, (start, end, v) in enumerate(zip(starts, times, vals)):
            if not v:
                continue
            left, right = x(start), x(end)
            gap = min(1.0, (right - left) / 4)
            top, bottom = y(base[i] + v), y(base[i])
            base[i] += v
            parts.append(
                f'<rect class="bar" data-series="{escape(name)}" data-time="{end:.3f}" data-value="{v:.15g}" '
                f'x="{left + gap:.1f}" y="{top:.1f}" width="{max(1.0, right - left - 2 * gap):.1f}" '
                f'height="{max(0.5, bottom - top):.1f}" fill="{color}"><title>{escape(name)} '
                f"{fmt_time(start, with_date)}–{fmt_time(end, with_date)}: {escape(fmt_num(v))}"
                f"{escape(unit and ' ' + unit)}</title></rect>"
            )
    legend, rows = _legend(swatches, ml, width)
    return _frame(chart_id, title, segs, "".join(parts + legend), H + 14 * rows, width)


def legend_label(name: str, limit: int = 40) -> str:
    """Short enough for a legend; long names lose their middle (routes differ at the end)."""
    if len(name) <= limit:
        return name
    head = (limit - 1) // 2
    return name[:head] + "…" + name[len(name) - (limit - 1 - head) :]


def bar_chart(
    chart_id: str,
    title: str,
    items: Sequence[tuple[str, float]],
    fmt: Callable[[float], str] = fmt_num,
    color: str = PALETTE[1],
    empty_reason: str = "none",
) -> str:
    if not items:
        return empty(chart_id, title, empty_reason)
    row_h, label_w = 22, 300
    height = MT + row_h * len(items) + 10
    vmax = max(v for _, v in items) or 1.0
    bw = W - label_w - 70
    parts = []
    for i, (label, v) in enumerate(items):
        yy = MT + i * row_h
        w = max(1.0, v / vmax * bw)
        short = label if len(label) <= 46 else label[:45] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{yy + 14}" text-anchor="end" font-size="11" fill="#1e293b">'
            f"<title>{escape(label)}</title>{escape(short)}</text>"
            f'<rect class="bar" data-label="{escape(label)}" data-value="{v:.15g}" x="{label_w}" '
            f'y="{yy + 3}" width="{w:.1f}" height="{row_h - 7}" fill="{color}">'
            f"<title>{escape(label)}: {escape(fmt(v))}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{yy + 14}" font-size="11" fill="#475569">'
            f"{escape(fmt(v))}</text>"
        )
    return _frame(chart_id, title, len(items), "".join(parts), height)


def _short(title: str, limit: int = 30) -> str:
    """A timeline label: the title without its [FIRING]/[RESOLVED] prefix (resolved: a leading check mark)."""
    resolved = title.startswith("[RESOLVED]")
    text = title.split("] ", 1)[1] if title.startswith("[") and "] " in title else title
    text = ("✓ " if resolved else "") + text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time_of(event: Mapping[str, object]) -> float:
    """An event's ``time`` (events without a numeric one are filtered out before)."""
    t = event.get("time")
    return float(t) if isinstance(t, (int, float)) else 0.0


def timeline(
    chart_id: str,
    title: str,
    events: Sequence[Mapping[str, object]],
    t0: float | None,
    t1: float | None,
    width: int = W,
) -> str:
    """Events (``time``, ``title``, ``level``) as labelled markers on a time axis, one lane per level. Labels that
    would overlap alternate above and below the lane, else are left out (every marker keeps its ``<title>``)."""
    timed = [e for e in events if isinstance(e.get("time"), (int, float))]
    if not timed:
        return empty(chart_id, title, "no alerts" if not events else "alerts without time", width)
    times = [_time_of(e) for e in timed]
    lo = min(times + ([t0] if t0 is not None else []))
    hi = max(times + ([t1] if t1 is not None else []))
    span = (hi - lo) or 1.0
    lanes = [lv for lv in ("ERROR", "WARN", "INFO") if any(str(e.get("level")).upper() == lv for e in timed)] or [
        "INFO"
    ]
    lane_h = 52
    pw = width - ML - MR - 80  # room on the right for the last label
    x: Callable[[float], float] = lambda t: ML + 10 + (t - lo) / span * pw  # noqa: E731
    parts = []
    for i, lv in enumerate(lanes):
        yy = MT + i * lane_h + lane_h / 2
        parts.append(
            f'<line x1="{ML}" x2="{width - MR}" y1="{yy}" y2="{yy}" stroke="#e2e8f0"/>'
            f'<text x="{ML - 6}" y="{yy + 4}" text-anchor="end" font-size="11" fill="#475569">{lv}</text>'
        )
    ends: dict[tuple[int, int], float] = {}  # (lane, row above/below) -> x where its last label ends
    for e in sorted(timed, key=_time_of):
        lv = str(e.get("level")).upper()
        lane = lanes.index(lv) if lv in lanes else 0
        yy = MT + lane * lane_h + lane_h / 2
        name = str(e.get("title", ""))
        color = "#16a34a" if name.startswith("[RESOLVED]") else severity_color(lv)
        cx = x(_time_of(e))
        tip = f"{fmt_time(_time_of(e))} {escape(name)}"
        parts.append(
            f'<circle class="event" cx="{cx:.1f}" cy="{yy}" r="6" fill="{color}" fill-opacity="0.85">'
            f"<title>{tip}</title></circle>"
        )
        label = _short(name)
        start, end = cx - 4, cx - 4 + len(label) * CHAR_W * 10 / 11
        if end > width - MR:  # near the right edge: the label ends at the marker instead
            start, end = cx + 4 - (end - start), cx + 4
        for row, dy in ((0, -11), (1, 20)):
            if ends.get((lane, row), -1.0) < start:
                ends[(lane, row)] = end + 6
                parts.append(
                    f'<text class="event-label" x="{start:.1f}" y="{yy + dy}" font-size="10" '
                    f'fill="#334155"><title>{tip}</title>{escape(label)}</text>'
                )
                break
    axis_y = MT + lane_h * len(lanes) + 14
    for i in range(5):
        t = lo + span * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text x="{x(t):.1f}" y="{axis_y}" text-anchor="{anchor}" font-size="11" fill="#475569">'
            f"{fmt_time(t)}</text>"
        )
    return _frame(chart_id, title, len(timed), "".join(parts), axis_y + 10, width)
