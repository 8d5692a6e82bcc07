"""bench/bench_scale.py's pure parts: the app-shaped load, the arithmetic and the section (no process, no timing)."""

from __future__ import annotations

import random

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench import bench_scale as bs


def test_requests_body_is_one_trace_per_request_with_the_apps_attributes() -> None:
    batch = bs.requests_body(500, random.Random(3), instance="host-w2", now_ns=1_800_000_000_000_000_000)
    req = ExportTraceServiceRequest.FromString(batch.body)
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert (batch.requests, batch.spans) == (500, len(spans))
    servers = [s for s in spans if s.kind == bs.SERVER]
    assert len(servers) == 500 == len({s.trace_id for s in spans})
    assert batch.spans == 2 * 500 + 2 * batch.ai and 0 < batch.ai < 500
    attrs = [{kv.key: kv.value for kv in s.attributes} for s in servers]
    assert all({"http.route", "http.request.method", "http.response.status_code"} <= a.keys() for a in attrs)
    failed = [s for s in servers if s.status.code == bs.STATUS_ERROR]
    assert len(failed) == batch.errors and all(e.name == "exception" for s in failed for e in s.events)
    genai = [s for s in spans if any(kv.key == "gen_ai.operation.name" for kv in s.attributes)]
    assert len(genai) == batch.ai
    resource = {kv.key: kv.value.string_value for kv in req.resource_spans[0].resource.attributes}
    assert resource["service.instance.id"] == "host-w2"


def test_arithmetic() -> None:
    assert bs.per_thousand(0.5, 10_000) == pytest.approx(50.0)  # 0.5 CPU-s for 10k requests = 50 ms per 1,000
    assert bs.marginal(1.0, 0.01, 20.0, 1000) == pytest.approx(0.8 / 1000)
    assert bs.marginal(0.1, 0.01, 20.0, 1000) == 0.0  # never below zero (tick noise)
    assert bs.rate_under(1.0, 0.1, 1e-4) == pytest.approx(9000)
    assert bs.rate_under(1.0, 0.1, 0.0) == float("inf")
    # RAW: 0.001 cores + 30 µs/request; AGG: 0.02 cores + 1 µs/request -> 10x where 0.001 + 30e-6 r = 0.2 + 10e-6 r
    assert bs.rate_for_ratio((0.001, 30e-6), (0.02, 1e-6)) == pytest.approx(0.199 / 20e-6)
    assert bs.rate_for_ratio((0.001, 30e-6), (0.02, 3e-6)) == float("inf")  # per request only 10x: never above


def _window(chain: str, rate: int, bridge: float, spans_in: int, points: int) -> bs.Window:
    requests = rate * 10
    cpu = {"bridge": bridge, "collector": 0.5} if chain == "raw" else {"bridge": bridge, "agent": 0.4, "gateway": 0.3}
    return bs.Window(
        chain, 20.0, requests, int(requests * 2.4), cpu, {"spans": spans_in, "metric_points": points}, 0, rate
    )


def test_section_renders_ratios_and_the_model() -> None:
    windows = []
    for rate in (1000, 4000):
        windows += [
            _window("raw", rate, 0.00008 * rate * 10, int(rate * 24), 0),
            _window("agg", rate, 0.02 + 0.000006 * rate * 10, int(rate * 1.8), 600),
            _window("aggb", rate, 0.1 + 0.000003 * rate * 10, int(rate * 0.8), 600),
        ]
    idle = {
        "raw": {"bridge": 0.002, "collector": 0.001},
        "agg": {"bridge": 0.004, "agent": 0.002, "gateway": 0.001},
        "aggb": {"bridge": 0.004, "agent": 0.002, "gateway": 0.001},
    }
    fast = {k: 1.0 for k in ("agent_cores", "gateway_cores", "requests", "spans", "gateway_spans", "send_s", "total_s")}
    fast |= {"bridge_cores": 0.01, "agent_cores": 1.0, "gateway_cores": 0.7, "rate": 5000.0}
    res = bs.Results(windows, idle, fast, 20.0, (1000, 4000))
    ratio = 3.2 / (0.02 + 0.24)  # RAW 3.2 CPU-s, AGG 0.02 + 0.24 for the same 40,000 requests
    assert res.ratio("agg", 4000) == pytest.approx(ratio)
    text = bs.section(res)
    assert f"| **{ratio:.1f}x** |" in text  # >= 10x: bold
    assert "| RAW | 4,000 |" in text and "the agent is the busiest tier" in text
