"""Spans and logs -> interval rows, tables, error groups and alert signals (pure core, synthetic records)."""

from __future__ import annotations

import logging
import random

import pytest

from otel_wandb import records as r
from otel_wandb.core import Aggregator, CoreConfig, log_warnings
from otel_wandb.core._errors import ErrorGroups, fingerprint, normalize_message, top_app_frame
from otel_wandb.core._stats import LogSketch
from otel_wandb.pricing import Price, PriceList
from tests.support import exact

S = 1_000_000_000
STACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/venv/lib/python3.11/site-packages/flask/app.py", line 880, in full_dispatch_request\n'
    '  File "/srv/app/api/entries.py", line 42, in get_entry\n'
    '  File "/usr/lib/python3.11/json/decoder.py", line 337, in decode\n'
)


def server(i, ms, route="/api/entries/<id>", code=200, method="GET", error=False, trace=None, exc=()):
    return r.SpanRecord(
        f"{method} {route}",
        r.SERVER,
        0,
        int(ms * 1e6),
        trace or f"{i:032x}",
        f"{i:016x}",
        is_error=error,
        attributes={"http.route": route, "http.request.method": method, "http.response.status_code": code},
        exceptions=exc,
    )


def genai(i, model="gpt-4o-mini-2024-07-18", feature="summarize", inp=100, out=20, cached=0, ms=300.0):
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": inp,
        "gen_ai.usage.output_tokens": out,
        "app.feature": feature,
    }
    if cached:
        attrs["gen_ai.usage.cache_read.input_tokens"] = cached
    return r.SpanRecord("chat", r.CLIENT, 0, int(ms * 1e6), f"{i:032x}", f"{i + 1:016x}", attributes=attrs)


def test_server_spans_counts_errors_percentiles_and_breakdowns():
    rng = random.Random(1)
    durs = [rng.lognormvariate(3, 0.8) for _ in range(5000)]
    spans = [server(i, d, code=500 if i % 50 == 0 else 200) for i, d in enumerate(durs)]
    spans += [server(9000 + i, 5.0, route="/healthz", method="POST", error=True, code=200) for i in range(10)]
    agg = Aggregator(CoreConfig(latency_sample=100), start_ns=0)
    agg.add_spans(spans)
    res = agg.flush(60 * S)
    row = res.row
    assert row["http/requests"] == 5010 and row["http/errors"] == 110
    assert row["http/requests@http.route=/api/entries/<id>"] == 5000
    assert row["http/errors@http.route=/api/entries/<id>"] == 100
    assert row["http/error_rate@http.route=/healthz"] == 1.0
    assert row["http/requests@http.request.method=POST"] == 10
    assert row["http/requests@status_class=5xx"] == 100 and row["http/requests@status_class=2xx"] == 4910
    route_p95 = row["http/p95_ms@http.route=/api/entries/<id>"]
    assert route_p95 == pytest.approx(exact(durs, 0.95), rel=0.011)
    assert row["http/p99_ms"] == pytest.approx(exact(durs + [5.0] * 10, 0.99), rel=0.011)
    sig = res.signals
    assert (sig.requests, sig.errors) == (5010, 110)
    assert len(sig.latency_ms) == 100 and sig.p95_ms == row["http/p95_ms"]
    assert sig.interval_start_ns == 0 and sig.interval_end_ns == 60 * S
    slow = res.tables["slowest_traces"]
    assert len(slow.rows) == 10 and slow.rows[0][5] == pytest.approx(max(durs))
    assert [x[5] for x in slow.rows] == sorted((x[5] for x in slow.rows), reverse=True)
    # the next interval starts empty but totals run on
    row2 = agg.flush(120 * S).row
    assert row2["http/requests"] == 0 and row2["http/requests_total"] == 5010 and "http/p95_ms" not in row2


def test_genai_spans_tokens_cost_from_pricing_with_snapshot_names():
    pricing = PriceList({"gpt-4o-mini": Price(input=0.15e-6, cached_input=0.075e-6, output=0.60e-6)})
    agg = Aggregator(CoreConfig(pricing=pricing), start_ns=0)
    agg.add_spans(
        [
            genai(1, inp=1000, out=200, cached=400),
            genai(2, feature="reflect", inp=500, out=100),
            genai(3, model="mystery", inp=10, out=10),
        ]
    )
    res = agg.flush(S)
    row = res.row
    c1 = 600 * 0.15e-6 + 400 * 0.075e-6 + 200 * 0.60e-6
    c2 = 500 * 0.15e-6 + 100 * 0.60e-6
    assert row["ai/calls"] == 3 and row["ai/input_tokens"] == 1510 and row["ai/output_tokens"] == 310
    assert row["ai/cached_tokens"] == 400
    assert row["ai/cost_usd"] == pytest.approx(c1 + c2)
    assert row["ai/cost_usd@app.feature=summarize"] == pytest.approx(c1)
    assert row["ai/cost_usd@gen_ai.request.model=mystery"] == 0
    assert row["ai/calls@gen_ai.request.model=gpt-4o-mini-2024-07-18"] == 2
    assert row["ai/p95_ms"] == pytest.approx(300, rel=0.01)
    assert res.signals.ai_cost_usd == pytest.approx(c1 + c2), "no app.ai.cost metric: spans are priced"


def test_cost_metric_wins_over_span_pricing_once_seen():
    agg = Aggregator(CoreConfig(pricing=PriceList({"gpt-4o-mini": Price(1.0, 1.0, 1.0)})), start_ns=0)
    agg.add_spans([genai(1)])
    agg.add_metrics(
        [
            r.MetricPoint(
                "app.ai.cost",
                r.SUM,
                value=0.25,
                temporality=r.DELTA,
                monotonic=True,
                attributes={"gen_ai.request.model": "gpt-4o-mini", "app.feature": "mood"},
            )
        ]
    )
    res = agg.flush(S)
    assert res.signals.ai_cost_usd == pytest.approx(0.25)
    assert res.row["app.ai.cost/delta@app.feature=mood"] == pytest.approx(0.25)
    agg.add_spans([genai(2)])
    assert agg.flush(2 * S).signals.ai_cost_usd == 0.0  # metric stream known, no new cost reported


def test_error_fingerprint_normalizes_and_picks_top_in_app_frame():
    a = fingerprint("KeyError", "entry 1234 of user 'bob' at 0xdeadbeef id 3f2a1b4c-1d2e-4f50-8a9b-0c1d2e3f4a5b", STACK)
    b = fingerprint("KeyError", 'entry 99 of user "alice" at 0x1 id 00000000-0000-4000-8000-000000000000', STACK)
    assert a[0] == b[0]
    assert a[1] == "entry <num> of user <str> at <hex> id <uuid>"
    assert a[2] == top_app_frame(STACK) == "entries.py:get_entry"
    assert fingerprint("ValueError", "entry 1", STACK)[0] != a[0]
    assert normalize_message("x" * 1000).__len__() == 200


def test_error_groups_are_bounded_and_sample_at_most_five_traces():
    groups = ErrorGroups(max_groups=3)
    for i in range(10):
        g, _new = groups.record("E", "same", "", f"t{i}", i)
    assert g.count == 10 and g.sample_trace_ids == ["t0", "t1", "t2", "t3", "t4"]
    assert (g.first_seen_ns, g.last_seen_ns) == (0, 9)
    for t in ("A", "B", "C", "D"):
        groups.record(t, "m", "", None, 100)
    assert len(groups.groups) == 3 and groups.evicted == 2


def test_errors_tables_groups_and_new_group_signals():
    agg = Aggregator(CoreConfig(max_error_rows=5), start_ns=0)
    exc = (r.ExceptionInfo("KeyError", "entry 7 missing", STACK),)
    spans = [server(i, 10, code=500, error=True, exc=exc) for i in range(20)]
    # the same exception recorded on a child span of trace 0 is one occurrence, not two
    spans.append(r.SpanRecord("db", r.INTERNAL, 0, 1, f"{0:032x}", "ab" * 8, exceptions=exc))
    agg.add_spans(spans)
    agg.add_logs(
        [
            r.LogRecord(
                5,
                17,
                "ERROR",
                body="payment 42 failed",
                scope="app.billing",
                trace_id="f" * 32,
                attributes={"diary.text": "secret"},
            ),
            r.LogRecord(6, 9, "INFO", body="ok"),
            r.LogRecord(7, 13, "WARN", body="hm"),
        ]
    )
    res = agg.flush(S)
    assert res.row["errors/occurrences"] == 21 and res.row["errors/new_groups"] == 2
    assert res.row["logs/count@severity=ERROR"] == 1 and res.row["logs/count@severity=INFO"] == 1
    assert res.row["logs/count@severity=WARN"] == 1
    errors = res.tables["recent_errors"]
    assert len(errors.rows) == 5 and errors.rows[0][2:4] == ["/api/entries/<id>", "KeyError"]
    groups = {row[1]: row for row in res.tables["error_groups"].rows}
    assert groups["KeyError"][4] == 20 and len(groups["KeyError"][7].split(",")) == 5
    assert groups["log:app.billing"][2] == "payment <num> failed"
    assert "secret" not in repr(res.tables) and "secret" not in repr(res.row)
    assert {g["type"] for g in res.signals.new_error_groups} == {"KeyError", "log:app.billing"}
    agg.add_spans([server(99, 10, code=500, error=True, exc=exc)])
    res2 = agg.flush(2 * S)
    assert res2.signals.new_error_groups == () and res2.row["errors/groups"] == 2


def test_logs_without_a_severity_number_count_and_group_by_their_text():
    """As otel-collector.yaml routes them to error.log: number 0 + text ERROR/FATAL/CRITICAL (any case, a prefix) is
    an error; a number, when set, wins over the text."""
    agg = Aggregator(CoreConfig(), start_ns=0)
    cases = [
        (0, "ERROR", "db down"),
        (0, "critical", "disk full"),
        (0, "Fatal", "gone"),
        (0, "WARNING", "slow"),
        (0, "", "plain"),
        (0, "notice", "hi"),
        (0, "debug", "x"),
        (9, "ERROR", "number wins"),
        (17, "", "by number"),
    ]
    agg.add_logs([r.LogRecord(i, n, text, body=body, scope="app") for i, (n, text, body) in enumerate(cases)])
    res = agg.flush(S)
    counts = {k.split("=", 1)[1]: v for k, v in res.row.items() if k.startswith("logs/count@severity=")}
    assert counts == {"ERROR": 2, "FATAL": 2, "WARN": 1, "INFO": 3, "DEBUG": 1}
    assert sorted(g["message"] for g in res.signals.new_error_groups) == ["by number", "db down", "disk full", "gone"]


def test_error_on_child_span_gets_route_from_server_span_of_same_trace():
    agg = Aggregator(CoreConfig(), start_ns=0)
    child = r.SpanRecord(
        "llm", r.CLIENT, 0, 1, "c" * 32, "1" * 16, exceptions=(r.ExceptionInfo("TimeoutError", "read timed out"),)
    )
    agg.add_spans([child, server(1, 20, route="/api/summary", code=200, trace="c" * 32)])
    row = agg.flush(S).tables["recent_errors"].rows[0]
    assert row[2:4] == ["/api/summary", "TimeoutError"]


def test_route_cardinality_cap_for_spans(caplog):
    agg = Aggregator(CoreConfig(max_series=4), start_ns=0)
    agg.add_spans([server(i, 1, route=f"/r{i}") for i in range(10)])
    assert not caplog.messages, "nothing is logged inside the core (the caller may hold a lock)"
    warnings = agg.take_warnings()
    assert len(warnings) == 1 and agg.take_warnings() == []
    with caplog.at_level(logging.WARNING, logger="otel_wandb.core"):
        log_warnings(warnings)
    assert len([m for m in caplog.messages if "http/*" in m]) == 1
    row = agg.flush(S).row
    assert row["http/requests@http.route=__overflow__"] == 7  # 3 routes + method=GET fill the 4 series
    assert row["http/requests"] == 10


def test_route_index_stays_bounded_and_raw_paths_never_become_routes():
    """A scan of distinct unmatched paths (no http.route; the span name holds the raw path) must not grow memory
    per path, and with http.route the lookup cache stops at twice the series cap."""
    agg = Aggregator(CoreConfig(max_series=10), start_ns=0)
    scan = [
        r.SpanRecord(
            f"GET /scan/{i}",
            r.SERVER,
            0,
            10**6,
            f"{i:032x}",
            f"{i:016x}",
            attributes={"http.request.method": "GET", "http.response.status_code": 404},
        )
        for i in range(3000)
    ]
    agg.add_spans(scan)
    agg.add_spans([server(i, 1, route=f"/r{i}") for i in range(3000)])
    assert len(agg._by_route) <= 20 and len(agg._http) <= 12
    row = agg.flush(S).row
    assert row["http/requests"] == 6000
    assert row["http/requests@http.route=GET"] == 3000, "no route: the method only"
    assert not any("/scan/" in k for k in row)
    assert row["http/requests@http.route=__overflow__"] == 3000 - 8  # GET route + GET method + 8 routes
    assert len(agg._by_route) == 0, "reset every interval"


def test_per_worker_series_from_the_resource_sum_to_the_total():
    agg = Aggregator(CoreConfig(), start_ns=0)
    spans = []
    for i in range(30):
        s = server(i, 10 + i, code=500 if i % 10 == 0 else 200)
        s.resource = {"service.instance.id": f"h-w{i % 3}-{100 + i % 3}", "app.worker.id": i % 3}
        spans.append(s)
    spans.append(server(99, 1))  # no worker in the resource (in-process exporter): counted overall only
    agg.add_spans(spans)
    row = agg.flush(S).row
    per_worker = {k: v for k, v in row.items() if k.startswith("http/requests@worker=")}
    assert per_worker == {"http/requests@worker=0": 10, "http/requests@worker=1": 10, "http/requests@worker=2": 10}
    assert sum(per_worker.values()) == row["http/requests"] - 1
    assert [row[f"http/errors@worker={w}"] for w in range(3)] == [1, 1, 1]  # spans 0, 10, 20
    assert row["http/error_rate@worker=0"] == pytest.approx(0.1)
    assert row["http/p50_ms@worker=2"] == pytest.approx(exact([10 + i for i in range(2, 30, 3)], 0.5), rel=0.011)


def test_worker_series_respect_the_cardinality_cap():
    agg = Aggregator(CoreConfig(max_series=3), start_ns=0)
    spans = []
    for i in range(6):
        s = server(i, 1)
        s.resource = {"app.worker.id": i}
        spans.append(s)
    agg.add_spans(spans)
    row = agg.flush(S).row
    assert row["http/requests@worker=0"] == 1 and row["http/requests@worker=__overflow__"] == 5
    assert "http/requests@worker=1" not in row


def test_log_sketch_relative_error_and_flat_memory():
    rng = random.Random(5)
    sk = LogSketch()
    values = [rng.expovariate(1 / 50) + 0.01 for _ in range(100_000)]
    for v in values:
        sk.add(v)
    for q in (0.5, 0.95, 0.99):
        assert sk.quantile(q) == pytest.approx(exact(values, q), rel=0.011)
    assert len(sk.buckets) < 1200


def test_malformed_records_are_skipped_not_raised():
    agg = Aggregator(CoreConfig(), start_ns=0)
    bad = r.SpanRecord("x", r.SERVER, 0, "late", "t" * 32, "s" * 16)  # type: ignore[arg-type]
    odd = r.SpanRecord(
        "GET", r.SERVER, 0, 10**6, "a" * 32, "b" * 16, attributes={"http.route": 42, "http.response.status_code": "x"}
    )
    agg.add_spans([bad, odd, server(1, 2)])
    agg.add_logs([r.LogRecord(1, None, body=None)])  # type: ignore[arg-type]
    row = agg.flush(S).row
    assert agg.dropped == 1 and row["http/requests"] == 2 and row["http/requests@http.route=42"] == 1
    assert row["logs/count@severity=INFO"] == 1


def test_run_wide_key_budget_keeps_known_keys_and_drops_new_ones_once_warned(caplog):
    agg = Aggregator(CoreConfig(max_keys=40, max_series=50))
    agg.add_spans([server(i, 5, route=f"/r{i % 3}") for i in range(30)])
    first = agg.flush(10 * S).row
    assert first["keys/dropped"] == 0 and len(first) <= 41
    agg.add_spans([server(i, 5, route=f"/new{i}") for i in range(30)])  # 30 new routes, ~6 keys each
    agg.add_spans([server(100 + i, 5, route="/r0") for i in range(5)])  # and a route the run already has
    res = agg.flush(20 * S)
    second = res.row
    assert second["keys/dropped"] > 0
    assert 40 <= len(agg.keys) <= 41  # the budget (plus keys/dropped itself, when it came last)
    assert set(second) <= agg.keys
    assert {k for k in first if k in ("http/requests", "http/p95_ms@http.route=/r0")} <= set(second)
    assert second["http/requests"] == 35  # the overall series is never the one dropped
    with caplog.at_level(logging.WARNING):
        log_warnings(agg.take_warnings())
        agg.add_spans([server(i, 5, route=f"/more{i}") for i in range(30)])
        agg.flush(30 * S)
        log_warnings(agg.take_warnings())
    assert len([m for m in caplog.messages if "distinct keys" in m]) == 1
