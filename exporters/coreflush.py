"""Builds one ``IntervalResult`` from an ``Aggregator``'s interval state (pure; see ``core`` for the key grammar)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import records as r
from .stats import QUANTILES

logger = logging.getLogger("exporters.core")

if TYPE_CHECKING:  # pragma: no cover
    from .core import Aggregator, IntervalResult


def _suffix(key: str) -> str:
    return f"@{key}" if key else ""


def _apply_key_budget(agg: "Aggregator", row: dict) -> None:
    """Keys the run already has always pass; a new one passes while the run has fewer than ``max_keys``."""
    known, cap = agg.keys, agg.cfg.max_keys
    new = [k for k in row if k not in known]
    room = max(0, cap - len(known))
    known.update(new[:room])
    dropped = new[room:]
    for k in dropped:
        del row[k]
    row["keys/dropped"] = len(dropped)
    known.add("keys/dropped")
    if dropped and "keys" not in agg._warned:
        agg._warned.add("keys")
        agg._warn(logger, "the run has %d distinct keys (W&B allows < 10,000 per project): %d new keys left out, "
                  "e.g. %s; raise WANDB_EXPORT_MAX_KEYS or lower WANDB_EXPORT_MAX_SERIES", cap, len(dropped), dropped[0])


def build_result(agg: "Aggregator", start_ns: int, now_ns: int) -> "IntervalResult":
    from .core import ERROR_COLUMNS, GROUP_COLUMNS, SLOW_COLUMNS, IntervalResult, Table

    seconds = max(0.0, (now_ns - start_ns) / 1e9)
    row: dict = {"interval/time": now_ns / 1e9, "interval/seconds": seconds}
    tot = agg._totals

    overall = agg._http.get("")
    requests = overall.count if overall else 0
    errors = overall.errors if overall else 0
    tot["http/requests_total"] = tot.get("http/requests_total", 0) + requests
    tot["http/errors_total"] = tot.get("http/errors_total", 0) + errors
    row["http/requests"] = requests
    row["http/errors"] = errors
    row["http/requests_total"] = tot["http/requests_total"]
    row["http/errors_total"] = tot["http/errors_total"]
    p95 = None
    for key, x in agg._http.items():
        sfx = _suffix(key)
        if key:
            row[f"http/requests{sfx}"] = x.count
            row[f"http/errors{sfx}"] = x.errors
        row[f"http/error_rate{sfx}"] = x.errors / x.count if x.count else 0.0
        for label, q in QUANTILES:
            v = x.sketch.quantile(q)
            if v is not None:
                row[f"http/{label}_ms{sfx}"] = v
                if not key and label == "p95":
                    p95 = v
    for cls, n in agg._status.items():
        row[f"http/requests@status_class={cls}"] = n

    span_cost = agg.ai.flush(row, tot)

    for sev, n in agg._logs.items():
        row[f"logs/count@severity={sev}"] = n

    cost_metric = agg.cfg.cost_metric
    metric_cost = agg.metrics.sum_deltas.get(cost_metric)
    if cost_metric in agg.metrics.seen_names:
        agg._cost_metric_seen = True
    agg.metrics.flush(seconds, row)
    ai_cost = (metric_cost or 0.0) if agg._cost_metric_seen else span_cost

    errs = agg.errors
    row["errors/occurrences"] = errs.occurrences
    row["errors/new_groups"] = len(errs.new_groups)
    row["errors/groups"] = len(agg.groups.groups)

    _apply_key_budget(agg, row)
    tables: dict[str, Table] = {}
    if errs.rows:
        tables["recent_errors"] = Table(list(ERROR_COLUMNS), errs.rows)
    if agg._slow:
        slow = sorted(agg._slow, reverse=True)
        tables["slowest_traces"] = Table(
            list(SLOW_COLUMNS), [[t / 1e9, tid, route, m, code, ms] for ms, _, t, tid, route, m, code in slow])
    if errs.dirty and agg.groups.groups:
        groups = sorted(agg.groups.groups.values(), key=lambda g: g.count, reverse=True)[: agg.cfg.max_group_rows]
        tables["error_groups"] = Table(list(GROUP_COLUMNS), [
            [g.fingerprint, g.type, g.message, g.frame, g.count, g.first_seen_ns / 1e9, g.last_seen_ns / 1e9,
             ",".join(g.sample_trace_ids)] for g in groups])

    signals = r.Signals(
        interval_start_ns=start_ns,
        interval_end_ns=now_ns,
        requests=requests,
        errors=errors,
        latency_ms=tuple(agg._sample),
        p95_ms=p95,
        ai_cost_usd=ai_cost,
        new_error_groups=tuple(errs.new_groups),
    )
    return IntervalResult(row, tables, signals)
