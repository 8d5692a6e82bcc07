"""What the HTML report shows, as plain data, built from an offline W&B run or from the collector's log files.

Run source (exporters/src/otel_wandb/runfile.py): one point per logged interval, read with the core's key grammar
(``http/requests``, ``http/p95_ms``, ``ai/input_tokens@gen_ai.request.model=<m>``, ... see otel_wandb.core);
error groups from the last ``tables/error_groups`` snapshot; alerts placed at the interval logged before them.
Log source (collector files): log volume per severity, errors per logger and per route, top messages (content-free),
error groups from ERROR records, audit actions and failed authentications over time; HTTP / GenAI figures only where
log records carry those attributes.

A figure is either measured (a number, 0 included) or not known from this source: then ``totals[name]`` is None
and ``unavailable[name]`` says why, and the page shows "—" with that reason, never 0. ``empty[name]`` says what a
measured nothing means for a chart ("no AI calls in this run").
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_wandb.core import normalize_message
from otel_wandb.logfiles import Entry, entries, severity_name
from otel_wandb.report._svg import by_severity, severity_key
from otel_wandb.runfile import iter_payloads, read_run

logger = logging.getLogger(__name__)

MODEL_ATTR, FEATURE_ATTR = "gen_ai.request.model", "app.feature"
APP_COST = "app.ai.cost/delta"
# the headline figures (cards), in page order
TOTALS = (
    "requests",
    "errors",
    "error_rate",
    "ai_calls",
    "tokens",
    "cost_usd",
    "alerts",
    "log_records",
    "error_records",
    "audit_events",
    "auth_failures",
)
# The service audits a failed authentication as action "auth.failed", outcome "failure" (app/auth.py, app/audit);
# any other auth.* action with outcome "failure" counts too.
AUTH_FAILED, AUDIT_SCOPE, FAILURE = "auth.failed", "audit", "failure"
TOP_MESSAGES = 50


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
    audit_by_action: dict[str, list[float]] = field(default_factory=dict)  # per interval
    auth_failures: list[float] = field(default_factory=list)  # per interval
    errors_by_logger: dict[str, int] = field(default_factory=dict)  # ERROR/FATAL records
    errors_by_route: dict[str, int] = field(default_factory=dict)
    top_messages: list[dict[str, Any]] = field(default_factory=list)  # severity, logger, message, count, first/last
    totals: dict[str, float | None] = field(default_factory=dict)  # None: not known from this source
    unavailable: dict[str, str] = field(default_factory=dict)  # figure or panel -> why this source cannot tell
    empty: dict[str, str] = field(default_factory=dict)  # panel -> what its measured nothing means
    notes: list[str] = field(default_factory=list)

    def unknown(self, name: str, reason: str) -> None:
        """Figure ``name`` is not known from this source (not 0): the page shows "—" and ``reason``."""
        self.unavailable[name] = reason
        if name in TOTALS:
            self.totals[name] = None

    def known(self, name: str) -> bool:
        return name not in self.unavailable

    @property
    def request_rate(self) -> list[float | None]:
        return [r / s if s > 0 else None for r, s in zip(self.requests, self.seconds)]

    @property
    def error_rate(self) -> list[float | None]:
        return [e / r if r else None for r, e in zip(self.requests, self.errors)]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _breakdowns(rows: list[dict[str, Any]], stat: str, attr: str) -> dict[str, list[float]]:
    prefix = f"{stat}@{attr}="
    names = sorted({k[len(prefix) :] for row in rows for k in row if k.startswith(prefix)})
    return {n: [_num(row.get(prefix + n)) or 0.0 for row in rows] for n in names}


ROUTE_P95, ROUTE_REQUESTS, MAX_ROUTES = "http/p95_ms@http.route=", "http/requests@http.route=", 6


def _latency_by_route(rows: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """p95 per route for the ``MAX_ROUTES`` routes with the most requests (None where a route had none)."""
    routes = {k[len(ROUTE_P95) :] for row in rows for k in row if k.startswith(ROUTE_P95)}
    busiest = sorted(routes, key=lambda rt: (-sum(_num(row.get(ROUTE_REQUESTS + rt)) or 0.0 for row in rows), rt))
    return {rt: [_num(row.get(ROUTE_P95 + rt)) for row in rows] for rt in sorted(busiest[:MAX_ROUTES])}


def _alert_positions(run_dir: Path) -> list[float | None]:
    """``interval/time`` of the history row logged right before each alert record (alerts carry no time)."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(run_dir.glob("run-*.wandb"))
    last: float | None = None
    out: list[float | None] = []
    for payload in iter_payloads(files[0]):
        rec = pb.Record()  # type: ignore[attr-defined]  # wandb's pb2 star-imports per protobuf version: unseen
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
    """The report of an offline W&B run read back from disk."""
    run = read_run(run_dir)
    times = _alert_positions(Path(run_dir)) if run.alerts else []
    alerts = [
        {
            "time": times[i] if i < len(times) else None,
            "title": a.get("title", ""),
            "level": str(a.get("level", "")),
            "text": a.get("text", ""),
        }
        for i, a in enumerate(run.alerts)
    ]
    return from_rows(
        run.history,
        run.tables,
        alerts,
        title=f"ai-diary - W&B run {run.run_id or Path(run_dir).name}",
        source=str(run_dir),
    )


def from_rows(
    history: list[dict[str, Any]],
    tables: dict[str, list[dict[str, Any]]],
    alerts: list[dict[str, Any]],
    *,
    title: str,
    source: str,
) -> ReportData:
    """The report of the rows a run holds (``interval/time`` ordered), its tables' rows (the last snapshot of
    ``tables/error_groups`` is used) and its alerts (time, title, level, text): the offline run read back from disk,
    or the live one the sink keeps (``otel_wandb.sink.RunHistory``)."""
    rows = sorted((r for r in history if _num(r.get("interval/time")) is not None), key=lambda r: r["interval/time"])
    d = ReportData(title=title, source=source, kind="run")
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
        d.tokens[dim] = {
            n: [a + b for a, b in zip(inp.get(n, [0.0] * len(rows)), out.get(n, [0.0] * len(rows)))]
            for n in sorted(set(inp) | set(out))
        }
        d.cost[dim] = _breakdowns(rows, cost_key, attr)
    for key in sorted({k for r in rows for k in r if k.startswith("logs/count@severity=")}):
        values = [_num(r.get(key)) or 0.0 for r in rows]
        sev = severity_key(key.split("=", 1)[1])
        d.logs_by_severity[sev] = [a + b for a, b in zip(d.logs_by_severity.get(sev, [0.0] * len(rows)), values)]
    d.logs_by_severity = {s: d.logs_by_severity[s] for s in by_severity(list(d.logs_by_severity))}
    groups: dict[str, dict[str, Any]] = {}
    for row in tables.get("tables/error_groups", []):  # snapshots in logging order: the last one wins
        groups[str(row.get("fingerprint"))] = row
    d.error_groups = sorted(
        (
            {
                "type": g.get("type", ""),
                "message": g.get("message", ""),
                "count": int(g.get("count") or 0),
                "first_seen": _num(g.get("first_seen")),
                "last_seen": _num(g.get("last_seen")),
                "where": g.get("frame", ""),
            }
            for g in groups.values()
        ),
        key=lambda g: (-g["count"], g["type"]),
    )
    d.alerts = [dict(a) for a in alerts]
    col: Callable[[str], float] = lambda key: sum(_num(r.get(key)) or 0.0 for r in rows)  # noqa: E731
    requests, errors = col("http/requests"), col("http/errors")
    tok_in, tok_out = col("ai/input_tokens"), col("ai/output_tokens")
    d.totals = {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "ai_calls": col("ai/calls"),
        "input_tokens": tok_in,
        "output_tokens": tok_out,
        "tokens": tok_in + tok_out,
        "cost_usd": col(cost_key),
        "alerts": float(len(d.alerts)),
    }
    d.totals["log_records"] = float(sum(sum(v) for v in d.logs_by_severity.values()))
    d.totals["error_records"] = float(
        sum(sum(v) for s, v in d.logs_by_severity.items() if severity_key(s) in ("ERROR", "FATAL"))
    )
    if cost_key == APP_COST:
        d.notes.append(
            f"cost from the app's {APP_COST.split('/')[0]} counter (priced from exporters/src/otel_wandb/pricing.json)"
        )
    # what the run measured as nothing (the exporter sees every span: no AI span is no AI call) ...
    d.empty.update(
        latency="no requests in this run",
        latency_by_route="no requests in this run",
        request_rate="no requests in this run",
        requests="no requests in this run",
        ai="no AI calls in this run",
        alerts="no alerts in this run",
        logs_by_severity="no log records in this run",
        error_groups="no errors in this run",
    )
    # ... and what it cannot tell
    if not d.totals["requests"]:
        d.unknown("error_rate", "no requests in this run: a rate needs at least one")
    if not d.logs_by_severity:
        for name in ("log_records", "error_records"):
            d.unknown(
                name, "the run holds no log counts: no log record reached the exporter (logs may not be routed to it)"
            )
    for name in ("errors_by_logger", "errors_by_route", "top_messages"):
        d.unknown(
            name,
            "the W&B run counts log records per severity only: per logger, route and message need "
            "the collector's logs (ai-diary-report $LOG_DIR)",
        )
    for name in ("audit_events", "auth_failures", "audit"):
        d.unknown(name, "audit records are in the collector's audit log, not in the W&B run (ai-diary-report $LOG_DIR)")
    if not rows:
        d.notes.append("the run has no logged intervals")
        for name in TOTALS:
            if name not in d.unavailable:
                d.unknown(name, "the run has no logged intervals")
    return d


BUCKETS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
_COUNTERS = ("sev", "tok", "cost", "audit")  # per-name counts in a bucket


def _new_bucket() -> dict[str, Any]:
    return {
        "sev": defaultdict(float),
        "req": 0.0,
        "err": 0.0,
        "lat": [],
        "tok": defaultdict(float),
        "cost": defaultdict(float),
        "audit": defaultdict(float),
        "auth": 0.0,
    }


def _rebucket(per_second: dict[int, dict[str, Any]], target_points: int) -> tuple[float, dict[int, dict[str, Any]]]:
    """Merge one-second buckets into the smallest 'nice' width giving at most ``target_points`` points."""
    if not per_second:
        return 1.0, {}
    span = max(per_second) - min(per_second) + 1
    width = next((w for w in BUCKETS_S if span / w <= target_points), BUCKETS_S[-1])
    merged: dict[int, dict[str, Any]] = defaultdict(_new_bucket)
    for sec, b in per_second.items():
        m = merged[sec // width]
        for k in ("req", "err", "auth"):
            m[k] += b[k]
        m["lat"].extend(b["lat"])
        for k in _COUNTERS:
            for name, v in b[k].items():
                m[k][name] += v
    return float(width), merged


def message_key(e: Entry) -> str:
    """The record's message, content-free: the core's error-message policy (``otel_wandb.core.normalize_message``:
    quoted, bracketed and parenthesized literals, numbers, ids and every line after the first removed), prefixed
    with the exception type when there is one."""
    message = normalize_message(str(e.attributes.get("exception.message") or e.body or ""))
    etype = e.attributes.get("exception.type")
    return f"{etype}: {message}" if etype else message


def severity_of(e: Entry) -> str:
    """FATAL / ERROR / WARN / INFO / DEBUG / TRACE from the number (the text when there is none: WARNING ->
    WARN), else UNSET."""
    return severity_name(e.severity_number) if e.severity_number > 0 else severity_key(e.severity_text)


def logger_of(e: Entry) -> str:
    """The Python logger name: OpenTelemetry's logging handler makes it the instrumentation scope."""
    return str(e.scope or e.attributes.get("logger.name") or e.attributes.get("log.logger") or "(no logger)")


NO_ROUTE = "(outside a request)"
NO_HTTP = (
    "no log record carries http.response.status_code: the collector's logs hold log records, not requests "
    "(the W&B run counts them)"
)
NO_AI = "no log record carries gen_ai.request.model: the W&B run counts AI calls"
NO_TOKENS = "no log record carries gen_ai.usage.*_tokens: the W&B run counts tokens"
NO_COST = "no log record carries app.ai.cost_usd: the W&B run prices AI calls"
NO_ALERTS = "alerts are recorded in the W&B run, not in the log files"


def _audit(e: Entry, b: dict[str, Any]) -> str:
    action = str(e.attributes.get("audit.action", "?"))
    b["audit"][action] += 1
    if action == AUTH_FAILED or (action.startswith("auth.") and e.attributes.get("audit.outcome") == FAILURE):
        b["auth"] += 1
    return action


def from_logs(log_dir: str | Path, target_points: int = 60) -> ReportData:

    d = ReportData(title="ai-diary - collector logs", source=str(log_dir), kind="logs")
    per_second: dict[int, dict[str, Any]] = defaultdict(_new_bucket)
    groups: dict[str, dict[str, Any]] = {}
    messages: dict[tuple[str, str, str], dict[str, Any]] = {}
    has_http = has_ai = has_tokens = has_cost = False
    ai_records = 0
    for e in entries(log_dir, ["combined"]):
        b = per_second[e.time_ns // 10**9]
        t = e.time_ns / 1e9
        sev = severity_of(e)
        b["sev"][sev] += 1
        is_audit = e.scope == AUDIT_SCOPE or "audit.action" in e.attributes
        if is_audit:
            action = _audit(e, b)
            d.audit_actions[action] = d.audit_actions.get(action, 0) + 1
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
            ai_records += 1
            usage = [_num(e.attributes.get(k)) for k in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")]
            has_tokens = has_tokens or any(u is not None for u in usage)
            cost = _num(e.attributes.get("app.ai.cost_usd"))
            has_cost = has_cost or cost is not None
            feature = str(e.attributes.get(FEATURE_ATTR, "unknown"))
            for dim, name in (("model", str(model)), ("feature", feature)):
                b["tok"][(dim, name)] += sum(u or 0.0 for u in usage)
                b["cost"][(dim, name)] += cost or 0.0
        key = message_key(e)
        if not is_audit:  # audit records have their own panels
            m = messages.setdefault(
                (sev, logger_of(e), key),
                {"severity": sev, "logger": logger_of(e), "message": key, "count": 0, "first_seen": t, "last_seen": t},
            )
            m["count"] += 1
            m["first_seen"], m["last_seen"] = min(m["first_seen"], t), max(m["last_seen"], t)
        if sev in ("ERROR", "FATAL"):
            logger_name = logger_of(e)
            route = str(e.attributes.get("http.route") or NO_ROUTE)
            d.errors_by_logger[logger_name] = d.errors_by_logger.get(logger_name, 0) + 1
            d.errors_by_route[route] = d.errors_by_route.get(route, 0) + 1
            g = groups.setdefault(
                key,
                {
                    "type": str(e.attributes.get("exception.type") or f"log:{e.scope or 'root'}"),
                    "message": key,
                    "count": 0,
                    "first_seen": t,
                    "last_seen": t,
                    "where": "",
                },
            )
            g["count"] += 1
            g["first_seen"], g["last_seen"] = min(g["first_seen"], t), max(g["last_seen"], t)
            g["where"] = str(e.attributes.get("http.route") or g["where"])
    if not d.audit_actions:  # combined.log holds audit records too, but keeps them for less long than audit.log
        for e in entries(log_dir, ["audit"]):
            action = _audit(e, per_second[e.time_ns // 10**9])
            d.audit_actions[action] = d.audit_actions.get(action, 0) + 1
    bucket_s, buckets = _rebucket(per_second, target_points)
    keys = list(range(min(buckets), max(buckets) + 1)) if buckets else []
    d.times = [(k + 1) * bucket_s for k in keys]
    d.seconds = [bucket_s] * len(keys)
    get: Callable[[int], dict[str, Any]] = lambda k: buckets.get(k) or _new_bucket()  # noqa: E731
    d.requests = [get(k)["req"] for k in keys]
    d.errors = [get(k)["err"] for k in keys]
    for q, target in ((0.5, d.p50), (0.95, d.p95), (0.99, d.p99)):
        target.extend(_quantile(get(k)["lat"], q) for k in keys)
    for sev in by_severity(list({s for b in buckets.values() for s in b["sev"]})):
        d.logs_by_severity[sev] = [float(get(k)["sev"].get(sev, 0.0)) for k in keys]
    for field_name, dims in (("tok", d.tokens), ("cost", d.cost)):
        for dim, name in sorted({dn for b in buckets.values() for dn in b[field_name]}):
            dims[dim][name] = [float(get(k)[field_name].get((dim, name), 0.0)) for k in keys]
    for action in sorted(d.audit_actions):
        d.audit_by_action[action] = [float(get(k)["audit"].get(action, 0.0)) for k in keys]
    d.auth_failures = [get(k)["auth"] for k in keys]
    d.error_groups = sorted(groups.values(), key=lambda g: (-g["count"], g["message"]))
    d.top_messages = sorted(messages.values(), key=lambda m: (-m["count"], m["first_seen"], m["message"]))
    d.top_messages = d.top_messages[:TOP_MESSAGES]
    requests, errors = float(sum(d.requests)), float(sum(d.errors))
    d.totals = {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "ai_calls": float(ai_records),
        "tokens": float(sum(sum(v) for v in d.tokens["model"].values())),
        "cost_usd": float(sum(sum(v) for v in d.cost["model"].values())),
        "log_records": float(sum(sum(v) for v in d.logs_by_severity.values())),
        "error_records": float(sum(d.errors_by_logger.values())),
        "audit_events": float(sum(d.audit_actions.values())),
        "auth_failures": float(sum(d.auth_failures)),
    }
    d.empty.update(
        logs_by_severity="no log records in these files",
        errors_by_logger="no ERROR or FATAL records",
        errors_by_route="no ERROR or FATAL records",
        error_groups="no ERROR or FATAL records",
        top_messages="no log records besides audit records",
        audit="no audit records",
        auth_failures="no failed authentication",
    )
    if not has_http:
        for name in ("requests", "errors", "error_rate", "latency"):
            d.unknown(name, NO_HTTP)
    elif not requests:
        d.unknown("error_rate", "no requests: a rate needs at least one")
    if not any(v is not None for v in d.p50) and has_http:
        d.unknown("latency", "no log record carries http.server.request.duration")
    if not has_ai:
        for name in ("ai_calls", "tokens", "cost_usd", "ai"):
            d.unknown(name, NO_AI)
    else:
        if not has_tokens:
            d.unknown("tokens", NO_TOKENS)
        if not has_cost:
            d.unknown("cost_usd", NO_COST)
    d.unknown("alerts", NO_ALERTS)  # (each card and section says why it is blank: no note repeats it)
    return d


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
