"""Merge several runs' :class:`ReportData` (one W&B run per worker process) onto one time grid.

Counts, tokens and cost add up per grid cell; latency percentiles cannot be added, so a cell shows the highest
value any run reported there (an upper bound, said in the notes). Error groups merge by type + message.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from otel_wandb.report._model import ReportData
from otel_wandb.report._svg import by_severity


def _add(target: list[float], idx: int, value: float | None) -> None:
    if value:
        target[idx] += value


def _max(target: list[float | None], idx: int, value: float | None) -> None:
    if value is not None:
        current = target[idx]
        target[idx] = value if current is None else max(current, value)


def merge(parts: Sequence[ReportData]) -> ReportData:
    if len(parts) == 1:
        return parts[0]
    widths = [s for p in parts for s in p.seconds if s > 0]
    width = statistics.median(widths) if widths else 1.0
    all_t = [t for p in parts for t in p.times]
    what = "W&B runs" if parts[0].kind == "run" else "log directories"
    d = ReportData(
        title=f"ai-diary - {len(parts)} {what} merged", source=", ".join(p.source for p in parts), kind=parts[0].kind
    )
    if all_t:
        lo = min(all_t)
        cells = int((max(all_t) - lo) // width) + 1
        d.times = [lo + i * width for i in range(cells)]
        d.seconds = [width] * cells
        zeros: Callable[[], list[float]] = lambda: [0.0] * cells  # noqa: E731
        nones: Callable[[], list[float | None]] = lambda: [None] * cells  # noqa: E731
        d.requests, d.errors = zeros(), zeros()
        d.auth_failures = zeros() if any(p.auth_failures for p in parts) else []
        d.p50, d.p95, d.p99 = nones(), nones(), nones()
        for p in parts:
            for i, t in enumerate(p.times):
                c = int((t - lo) // width)
                _add(d.requests, c, p.requests[i])
                _add(d.errors, c, p.errors[i])
                for src, dst in ((p.p50, d.p50), (p.p95, d.p95), (p.p99, d.p99)):
                    _max(dst, c, src[i])
                for route, p95s in p.p95_by_route.items():
                    _max(d.p95_by_route.setdefault(route, [None] * cells), c, p95s[i])
                for field in ("tokens", "cost"):
                    for dim, series in getattr(p, field).items():
                        for name, values in series.items():
                            _add(getattr(d, field)[dim].setdefault(name, zeros()), c, values[i])
                for sev, values in p.logs_by_severity.items():
                    _add(d.logs_by_severity.setdefault(sev, zeros()), c, values[i])
                for action, counts in p.audit_by_action.items():
                    _add(d.audit_by_action.setdefault(action, zeros()), c, counts[i])
                if p.auth_failures:
                    _add(d.auth_failures, c, p.auth_failures[i])
        d.logs_by_severity = {s: d.logs_by_severity[s] for s in by_severity(list(d.logs_by_severity))}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for p in parts:
        for g in p.error_groups:
            key = (str(g["type"]), str(g["message"]))
            m = groups.setdefault(key, {**g, "count": 0})
            m["count"] += g["count"]
            for k, fn in (("first_seen", min), ("last_seen", max)):
                vals = [v for v in (m.get(k), g.get(k)) if v is not None]
                m[k] = fn(vals) if vals else None
    d.error_groups = sorted(groups.values(), key=lambda g: (-g["count"], g["type"]))
    d.alerts = sorted((a for p in parts for a in p.alerts), key=lambda a: (a.get("time") is None, a.get("time") or 0))
    messages: dict[tuple[str, str, str], dict[str, Any]] = {}
    for p in parts:
        for m in p.top_messages:
            got = messages.setdefault((str(m["severity"]), str(m["logger"]), str(m["message"])), {**m, "count": 0})
            got["count"] += m["count"]
            got["first_seen"], got["last_seen"] = (
                min(got["first_seen"], m["first_seen"]),
                max(got["last_seen"], m["last_seen"]),
            )
    d.top_messages = sorted(messages.values(), key=lambda m: (-m["count"], m["first_seen"], m["message"]))
    for p in parts:
        for k, v in p.totals.items():
            if v is not None:
                d.totals[k] = (d.totals.get(k) or 0.0) + v
        for target, source in (
            (d.audit_actions, p.audit_actions),
            (d.errors_by_logger, p.errors_by_logger),
            (d.errors_by_route, p.errors_by_route),
        ):
            for a, n in source.items():
                target[a] = target.get(a, 0) + n
        for k, why in p.empty.items():
            d.empty.setdefault(k, why)
        d.notes.extend(n for n in p.notes if n not in d.notes)
    # a figure no part could tell stays unknown; one that some parts measured is their sum (said in the notes)
    for k in sorted({k for p in parts for k in p.unavailable} - {"error_rate"}):
        missing = [p for p in parts if k in p.unavailable]
        if len(missing) == len(parts):
            d.unknown(k, missing[0].unavailable[k])
        else:
            d.notes.append(
                f"{k}: measured in {len(parts) - len(missing)} of {len(parts)} sources only "
                f"({missing[0].unavailable[k]})"
            )
    requests = d.totals.get("requests")
    if d.known("requests") and requests:  # a rate of the sums, not a sum of rates
        d.totals["error_rate"] = (d.totals.get("errors") or 0.0) / requests
    elif d.known("requests"):
        d.unknown("error_rate", "no requests: a rate needs at least one")
    else:
        d.unknown("error_rate", d.unavailable["requests"])
    d.notes.append(
        f"{len(parts)} runs on a {width:g} s grid: counts, tokens and cost are summed; latency "
        "percentiles show the highest run's value in each cell"
    )
    return d
