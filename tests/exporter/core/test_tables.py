"""The W&B tables at most every ``tables_interval_s`` (each logged table is an artifact version): between two, the
rows add up and the intervals are written without tables; ``flush(tables=True)`` forces them."""

from __future__ import annotations

from otel_wandb import records as r
from otel_wandb.core import Aggregator, CoreConfig
from tests.support import server_span

S = 10**9


def error_span(i: int, end_s: int, duration_ms: int = 5) -> r.SpanRecord:
    s = server_span(i, code=500, route=f"/r{i}", duration_ns=duration_ms * 10**6)
    s.start_ns, s.end_ns = end_s * S - duration_ms * 10**6, end_s * S
    s.is_error, s.status_message = True, f"failed {i}"
    return s


def test_tables_every_interval_by_default_in_the_core():
    agg = Aggregator(start_ns=0)
    agg.add_spans([error_span(1, 5)])
    assert set(agg.flush(15 * S).tables) == {"recent_errors", "slowest_traces", "error_groups"}
    agg.add_spans([error_span(2, 20)])
    assert set(agg.flush(30 * S).tables) == {"recent_errors", "slowest_traces", "error_groups"}


def test_rows_add_up_until_the_tables_are_due():
    agg = Aggregator(CoreConfig(tables_interval_s=60, slowest_n=3), start_ns=0)
    results = []
    for k in range(4):  # intervals of 15 s: tables due at the 4th (60 s)
        agg.add_spans([error_span(10 * k + j, 15 * k + 5, duration_ms=10 * k + j + 1) for j in range(2)])
        results.append(agg.flush(15 * (k + 1) * S))
    assert [res.tables for res in results[:3]] == [{}, {}, {}]
    # every interval's row is its own
    assert [res.row["http/requests"] for res in results] == [2, 2, 2, 2]
    assert [res.row["errors/occurrences"] for res in results] == [2, 2, 2, 2]
    tables = results[3].tables
    errors = tables["recent_errors"].rows
    assert [row[1] for row in errors] == [f"{10 * k + j:032x}" for k in range(4) for j in range(2)]
    slow = tables["slowest_traces"].rows  # the slowest of the whole minute, not of the last interval
    assert [row[-1] for row in slow] == [32.0, 31.0, 22.0]
    groups = tables["error_groups"].rows
    assert sum(g[4] for g in groups) == 8
    # then they start again
    agg.add_spans([error_span(99, 65)])
    res = agg.flush(75 * S)
    assert res.tables == {} and res.row["errors/occurrences"] == 1


def test_due_within_half_an_interval_of_timer_jitter():
    agg = Aggregator(CoreConfig(tables_interval_s=60), start_ns=0)
    ends = (15 * S, 30 * S, 45 * S, 60 * S - S // 10)  # the 4th tick 0.1 s early
    for i, end in enumerate(ends):
        agg.add_spans([error_span(i, end // S - 1)])
        res = agg.flush(end)
    assert "recent_errors" in res.tables


def test_forced_tables_and_a_cap_on_error_rows():
    agg = Aggregator(CoreConfig(tables_interval_s=3600, max_error_rows=3), start_ns=0)
    agg.add_spans([error_span(i, 5) for i in range(5)])
    assert agg.flush(10 * S).tables == {}
    agg.add_spans([error_span(10 + i, 15) for i in range(5)])
    res = agg.flush(20 * S, tables=True)  # what force_flush and shutdown ask for
    assert [row[1] for row in res.tables["recent_errors"].rows] == [f"{i:032x}" for i in range(3)]
    assert res.row["errors/occurrences"] == 5
    assert agg.flush(30 * S, tables=False).tables == {}
