"""What the HTML report shows, as plain data, built from an offline W&B run or from the collector's log files.

Run source (exporters/src/otel_wandb/runfile.py): one point per logged interval, read with the core's key grammar
(``http/requests``, ``http/p95_ms``, ``ai/input_tokens@gen_ai.request.model=<m>``, ... see exporters/src/otel_wandb/core/);
error groups from the last ``tables/error_groups`` snapshot; alerts placed at the interval logged before them.
Log source (collector files): per-minute log volume and error records, error groups from ERROR records, audit
actions, and HTTP / GenAI figures only where log records carry those attributes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_wandb.logfiles import entries, error_group_key
from otel_wandb.runfile import iter_payloads, read_run

logger = logging.getLogger(__name__)

MODEL_ATTR, FEATURE_ATTR = "gen_ai.request.model", "app.feature"
APP_COST = "app.ai.cost/delta"


@dataclass
class ReportData:
    title: str
    source: str
    kind: str  # "run" or "logs"
    times: list[float] = field(default_factory=list)  # interval end, unix seconds
    seconds: list[float] = field(default_factory=list)  # interval length
    requests: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    p50: list[float | None] = field(default_factory=list)
    p95: list[float | None] = field(default_factory=list)
    p99: list[float | None] = field(default_factory=list)
    p95_by_route: dict[str, list[float | None]] = field(default_factory=dict)  # the busiest routes (run source)
    # {"model": {name: [per interval]}, "feature": {...}}
    tokens: dict[str, dict[str, list[float]]] = field(default_factory=lambda: {"model": {}, "feature": {}})
    cost: dict[str, dict[str, list[float]]] = field(default_factory=lambda: {"model": {}, "feature": {}})
    logs_by_severity: dict[str, list[float]] = field(default_factory=dict)
    error_groups: list[dict[str, Any]] = field(default_factory=list)  # type, message, count, first_seen, last_seen
    alerts: list[dict[str, Any]] = field(default_factory=list)  # time, title, level, text
    audit_actions: dict[str, int] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def request_rate(self) -> list[float | None]:
        return [r / s if s > 0 else None for r, s in zip(self.requests, self.seconds)]

    @property
    def error_rate(self) -> list[float | None]:
        return [e / r if r else None for r, e in zip(self.requests, self.errors)]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _breakdowns(rows: list[dict], stat: str, attr: str) -> dict[str, list[float]]:
    prefix = f"{stat}@{attr}="
    names = sorted({k[len(prefix):] for row in rows for k in row if k.startswith(prefix)})
    return {n: [_num(row.get(prefix + n)) or 0.0 for row in rows] for n in names}


ROUTE_P95, ROUTE_REQUESTS, MAX_ROUTES = "http/p95_ms@http.route=", "http/requests@http.route=", 6


def _latency_by_route(rows: list[dict]) -> dict[str, list[float | None]]:
    """p95 per route for the ``MAX_ROUTES`` routes with the most requests (None where a route had none)."""
    routes = {k[len(ROUTE_P95):] for row in rows for k in row if k.startswith(ROUTE_P95)}
    busiest = sorted(routes, key=lambda rt: (-sum(_num(row.get(ROUTE_REQUESTS + rt)) or 0.0 for row in rows), rt))
    return {rt: [_num(row.get(ROUTE_P95 + rt)) for row in rows] for rt in sorted(busiest[:MAX_ROUTES])}


def _alert_positions(run_dir: Path) -> list[float | None]:
    """``interval/time`` of the history row logged right before each alert record (alerts carry no time)."""
    from wandb.proto import wandb_internal_pb2 as pb


    files = sorted(run_dir.glob("run-*.wandb"))
    last: float | None = None
    out: list[float | None] = []
    for payload in iter_payloads(files[0]):
        rec = pb.Record()
        try:
            rec.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - same tolerance as runfile.read_run
            continue
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            for item in rec.history.item:
                if (item.key or ".".join(item.nested_key)) == "interval/time":
                    try:
                        last = float(item.value_json)
                    except ValueError:
                        pass
        elif kind == "alert":
            out.append(last)
    return out


def from_run(run_dir: str | Path) -> ReportData:

    run = read_run(run_dir)
    rows = sorted((r for r in run.history if _num(r.get("interval/time")) is not None),
                  key=lambda r: r["interval/time"])
    d = ReportData(title=f"ai-diary - W&B run {run.run_id or Path(run_dir).name}", source=str(run_dir), kind="run")
    d.times = [float(r["interval/time"]) for r in rows]
    d.seconds = [_num(r.get("interval/seconds")) or 0.0 for r in rows]
    d.requests = [_num(r.get("http/requests")) or 0.0 for r in rows]
    d.errors = [_num(r.get("http/errors")) or 0.0 for r in rows]
    d.p50, d.p95, d.p99 = ([_num(r.get(f"http/{q}_ms")) for r in rows] for q in ("p50", "p95", "p99"))
    d.p95_by_route = _latency_by_route(rows)
    # The app's own cost counter wins over span-based pricing when present (as in the core's alert signals).
    cost_key = APP_COST if any(APP_COST in r for r in rows) else "ai/cost_usd"
    for dim, attr in (("model", MODEL_ATTR), ("feature", FEATURE_ATTR)):
        inp = _breakdowns(rows, "ai/input_tokens", attr)
        out = _breakdowns(rows, "ai/output_tokens", attr)
        d.tokens[dim] = {n: [a + b for a, b in zip(inp.get(n, [0.0] * len(rows)), out.get(n, [0.0] * len(rows)))]
                         for n in sorted(set(inp) | set(out))}
        d.cost[dim] = _breakdowns(rows, cost_key, attr)
    for key in sorted({k for r in rows for k in r if k.startswith("logs/count@severity=")}):
        d.logs_by_severity[key.split("=", 1)[1]] = [_num(r.get(key)) or 0.0 for r in rows]
    groups: dict[str, dict] = {}
    for row in run.tables.get("tables/error_groups", []):  # snapshots in logging order: the last one wins
        groups[str(row.get("fingerprint"))] = row
    d.error_groups = sorted(({"type": g.get("type", ""), "message": g.get("message", ""),
                              "count": int(g.get("count") or 0), "first_seen": _num(g.get("first_seen")),
                              "last_seen": _num(g.get("last_seen")), "where": g.get("frame", "")}
                             for g in groups.values()), key=lambda g: (-g["count"], g["type"]))
    times = _alert_positions(Path(run_dir)) if run.alerts else []
    d.alerts = [{"time": times[i] if i < len(times) else None, "title": a.get("title", ""),
                 "level": str(a.get("level", "")), "text": a.get("text", "")} for i, a in enumerate(run.alerts)]
    col = lambda key: sum(_num(r.get(key)) or 0.0 for r in rows)  # noqa: E731
    d.totals = {"requests": col("http/requests"), "errors": col("http/errors"),
                "input_tokens": col("ai/input_tokens"), "output_tokens": col("ai/output_tokens"),
                "cost_usd": col(cost_key), "ai_calls": col("ai/calls"), "alerts": float(len(d.alerts))}
    d.totals["tokens"] = d.totals["input_tokens"] + d.totals["output_tokens"]
    if cost_key == APP_COST:
        d.notes.append(f"cost from the app's {APP_COST.split('/')[0]} counter (priced from exporters/src/otel_wandb/pricing.json)")
    if not rows:
        d.notes.append("the run has no logged intervals")
    return d


BUCKETS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def _new_bucket() -> dict[str, Any]:
    return {"sev": defaultdict(float), "req": 0.0, "err": 0.0, "lat": [], "tok": defaultdict(float),
            "cost": defaultdict(float)}


def _rebucket(per_second: dict[int, dict[str, Any]], target_points: int) -> tuple[float, dict[int, dict[str, Any]]]:
    """Merge one-second buckets into the smallest 'nice' width giving at most ``target_points`` points."""
    if not per_second:
        return 1.0, {}
    span = max(per_second) - min(per_second) + 1
    width = next((w for w in BUCKETS_S if span / w <= target_points), BUCKETS_S[-1])
    merged: dict[int, dict[str, Any]] = defaultdict(_new_bucket)
    for sec, b in per_second.items():
        m = merged[sec // width]
        m["req"] += b["req"]
        m["err"] += b["err"]
        m["lat"].extend(b["lat"])
        for k in ("sev", "tok", "cost"):
            for name, v in b[k].items():
                m[k][name] += v
    return float(width), merged


def from_logs(log_dir: str | Path, target_points: int = 60) -> ReportData:

    d = ReportData(title="ai-diary - collector logs", source=str(log_dir), kind="logs")
    per_second: dict[int, dict[str, Any]] = defaultdict(_new_bucket)
    groups: dict[str, dict[str, Any]] = {}
    has_http = has_ai = False
    for e in entries(log_dir, ["combined"]):
        if e.scope == "audit" or "audit.action" in e.attributes:
            action = str(e.attributes.get("audit.action", "?"))
            d.audit_actions[action] = d.audit_actions.get(action, 0) + 1
        b = per_second[e.time_ns // 10**9]
        b["sev"][e.severity] += 1
        status = e.attributes.get("http.response.status_code")
        if status is not None:
            has_http = True
            b["req"] += 1
            b["err"] += int(str(status).startswith("5"))
            dur = _num(e.attributes.get("http.server.request.duration"))
            if dur is not None:
                b["lat"].append(dur * 1000)
        model = e.attributes.get(MODEL_ATTR)
        if model is not None:
            has_ai = True
            tokens = sum(_num(e.attributes.get(k)) or 0.0
                         for k in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"))
            cost = _num(e.attributes.get("app.ai.cost_usd")) or 0.0
            feature = str(e.attributes.get(FEATURE_ATTR, "unknown"))
            for dim, name in (("model", str(model)), ("feature", feature)):
                b["tok"][(dim, name)] += tokens
                b["cost"][(dim, name)] += cost
        if e.severity_number >= 17:
            key = error_group_key(e)
            t = e.time_ns / 1e9
            g = groups.setdefault(key, {"type": str(e.attributes.get("exception.type") or f"log:{e.scope or 'root'}"),
                                        "message": key, "count": 0, "first_seen": t, "last_seen": t, "where": ""})
            g["count"] += 1
            g["first_seen"], g["last_seen"] = min(g["first_seen"], t), max(g["last_seen"], t)
            g["where"] = str(e.attributes.get("http.route") or g["where"])
    if not d.audit_actions:  # combined.log may leave audit records to audit.log only
        for e in entries(log_dir, ["audit"]):
            action = str(e.attributes.get("audit.action", "?"))
            d.audit_actions[action] = d.audit_actions.get(action, 0) + 1
    bucket_s, buckets = _rebucket(per_second, target_points)
    keys = list(range(min(buckets), max(buckets) + 1)) if buckets else []
    d.times = [(k + 1) * bucket_s for k in keys]
    d.seconds = [bucket_s] * len(keys)
    get = lambda k: buckets.get(k) or {"sev": {}, "req": 0.0, "err": 0.0, "lat": [], "tok": {}, "cost": {}}  # noqa
    d.requests = [get(k)["req"] for k in keys]
    d.errors = [get(k)["err"] for k in keys]
    for q, target in ((0.5, d.p50), (0.95, d.p95), (0.99, d.p99)):
        target.extend(_quantile(get(k)["lat"], q) for k in keys)
    for sev in sorted({s for b in buckets.values() for s in b["sev"]}):
        d.logs_by_severity[sev] = [float(get(k)["sev"].get(sev, 0.0)) for k in keys]
    for field_name, target in (("tok", d.tokens), ("cost", d.cost)):
        for dim, name in sorted({dn for b in buckets.values() for dn in b[field_name]}):
            target[dim][name] = [float(get(k)[field_name].get((dim, name), 0.0)) for k in keys]
    d.error_groups = sorted(groups.values(), key=lambda g: (-g["count"], g["message"]))
    d.totals = {"requests": sum(d.requests), "errors": sum(d.errors),
                "tokens": sum(sum(v) for v in d.tokens["model"].values()),
                "cost_usd": sum(sum(v) for v in d.cost["model"].values()),
                "log_records": sum(sum(v) for v in d.logs_by_severity.values()),
                "error_records": sum(g["count"] for g in groups.values())}
    if not has_http:
        d.notes.append("no log record carries http.response.status_code: request rate and latency need the W&B run "
                       "(ai-diary-report <run dir>)")
    if not has_ai:
        d.notes.append("no log record carries gen_ai.request.model: tokens and cost need the W&B run")
    d.notes.append("alerts are recorded in the W&B run, not in the log files")
    return d


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
