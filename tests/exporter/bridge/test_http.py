"""The W&B bridge's OTLP/HTTP surface, in-process on a free port, feeding the real Pipeline (tests/support/collector.py
``TappedPipeline``: its W&B sink writes into a recorder run, and it keeps a copy of every record it accepted)."""

from __future__ import annotations

import gzip
import json

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_wandb.bridge._server import _status_proto
from otel_wandb.config import BridgeConfig, ConfigError
from otel_wandb.config import bridge_log_level as log_level
from tests.support.collector import PROTO, get_json, logs_request, metrics_request, post, spans_request


def _json_request(n: int = 2) -> bytes:
    """Hand-written OTLP/JSON as an SDK would send it: hex ids, lowerCamelCase, enum ints, int64 as strings."""
    spans = [
        {
            "traceId": f"{i + 1:032x}",
            "spanId": f"{i + 1:016x}",
            "parentSpanId": "",
            "name": "POST /entries",
            "kind": 2,
            "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000250000000",
            "attributes": [
                {"key": "http.route", "value": {"stringValue": "/entries"}},
                {"key": "http.response.status_code", "value": {"intValue": "201"}},
            ],
            "status": {"code": 2 if i == 0 else 0, "message": "boom" if i == 0 else ""},
        }
        for i in range(n)
    ]
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                    "scopeSpans": [{"scope": {"name": "flask"}, "spans": spans}],
                }
            ]
        }
    ).encode()


def test_protobuf_traces_reach_the_pipeline(make_bridge, pipeline):
    bridge = make_bridge()
    status, headers, body = post(bridge.url, "/v1/traces", spans_request(3).SerializeToString())
    assert status == 200 and headers["content-type"] == PROTO
    resp = ExportTraceServiceResponse.FromString(body)
    assert not resp.HasField("partial_success")
    assert [s.span_id for s in pipeline.spans] == [f"{i:016x}" for i in (1, 2, 3)]
    s = pipeline.spans[0]
    assert (s.kind, s.trace_id, s.attributes["http.route"], s.resource["service.name"], s.scope) == (
        "server",
        f"{1:032x}",
        "/entries",
        "ai-diary-test",
        "test.scope",
    )
    assert s.duration_s == pytest.approx(0.005)


def test_json_traces_with_hex_ids(make_bridge, pipeline):
    bridge = make_bridge()
    status, headers, body = post(bridge.url, "/v1/traces", _json_request(), "application/json")
    assert status == 200 and headers["content-type"] == "application/json", body
    assert json.loads(body) == {}
    first, second = pipeline.spans
    assert first.trace_id == f"{1:032x}" and first.span_id == f"{1:016x}" and first.parent_span_id is None
    assert first.is_error and first.status_message == "boom" and not second.is_error
    assert first.attributes == {"http.route": "/entries", "http.response.status_code": 201}
    assert first.duration_s == pytest.approx(0.25)


def test_gzip_metrics_and_logs(make_bridge, pipeline):
    bridge = make_bridge()
    status, _, _ = post(
        bridge.url, "/v1/metrics", metrics_request(value=7, points=3).SerializeToString(), gzip_body=True
    )
    assert status == 200
    assert [(p.name, p.kind, p.value, p.monotonic, p.temporality) for p in pipeline.metrics] == [
        ("test.requests", "sum", 7.0, True, "cumulative")
    ] * 3
    status, _, _ = post(
        bridge.url,
        "/v1/logs",
        logs_request([("audit", 9, "login", {"actor": "u1"})]).SerializeToString(),
        gzip_body=True,
    )
    assert status == 200
    (log,) = pipeline.logs
    assert (log.scope, log.severity_number, log.body, log.attributes) == ("audit", 9, "login", {"actor": "u1"})


def test_bearer_token_required_when_configured(make_bridge, pipeline):
    bridge = make_bridge(token="s3cret")
    body = spans_request(1).SerializeToString()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        status, resp_headers, _ = post(bridge.url, "/v1/traces", body, headers=headers)
        assert status == 401 and resp_headers["www-authenticate"] == "Bearer"
    assert pipeline.spans == []
    status, _, _ = post(bridge.url, "/v1/traces", body, headers={"Authorization": "Bearer s3cret"})
    assert status == 200 and len(pipeline.spans) == 1


def test_keep_alive_connection_survives_a_rejected_request(make_bridge, pipeline):
    import http.client

    bridge = make_bridge(token="t")
    conn = http.client.HTTPConnection(bridge.url.split("://", 1)[1], timeout=5)
    body = spans_request(2).SerializeToString()
    try:
        for headers, want in (({}, 401), ({"Authorization": "Bearer t"}, 200), ({"Authorization": "Bearer t"}, 200)):
            conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": PROTO, **headers})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == want
    finally:
        conn.close()
    assert bridge.stats.snapshot()["spans"] == 4  # two accepted requests on the one connection
    assert len(pipeline.spans) == 2  # the same two spans sent twice count once


def test_chunked_body(make_bridge, pipeline):
    import http.client

    bridge = make_bridge()
    conn = http.client.HTTPConnection(bridge.url.split("://", 1)[1], timeout=5)
    body = spans_request(3).SerializeToString()
    try:
        conn.request(
            "POST",
            "/v1/traces",
            body=iter([body[:10], body[10:]]),
            headers={"Content-Type": PROTO},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
    finally:
        conn.close()
    assert len(pipeline.spans) == 3


@pytest.mark.parametrize(
    "body, ctype, gz, needle",
    [
        (b"\xff\xff\xff\xff", PROTO, False, "invalid OTLP protobuf traces request"),
        (b"{not json", "application/json", False, "body is not valid JSON"),
        (b'{"resourceSpans": 5}', "application/json", False, "invalid OTLP/JSON traces request"),
    ],
)
def test_malformed_payload_is_400_with_a_message(make_bridge, pipeline, body, ctype, gz, needle):
    bridge = make_bridge()
    status, _headers, resp = post(bridge.url, "/v1/traces", body, ctype, gzip_body=gz)
    assert status == 400
    if ctype == PROTO:
        assert resp.startswith(b"\x08\x03") and needle.encode() in resp  # google.rpc.Status{code=3, message}
    else:
        assert json.loads(resp)["code"] == 3 and needle in json.loads(resp)["message"]
    assert pipeline.spans == []


def test_bad_gzip_and_unknown_content_type(make_bridge):
    bridge = make_bridge()
    status, _, resp = post(bridge.url, "/v1/traces", b"not gzip", headers={"Content-Encoding": "gzip"})
    assert status == 400 and b"not valid gzip" in resp
    status, _, resp = post(bridge.url, "/v1/traces", b"x", "text/plain")
    assert status == 415 and b"application/x-protobuf" in resp


def test_every_gzip_member_is_decoded_and_a_cut_off_stream_is_400(make_bridge, pipeline):
    bridge = make_bridge()
    first, second = spans_request(3).SerializeToString(), spans_request(4, start=3).SerializeToString()
    # two members (RFC 1952) = the concatenated protobuf = one request with 7 spans; zero padding after a member
    body = gzip.compress(first) + gzip.compress(second) + b"\x00" * 4
    status, _, resp = post(bridge.url, "/v1/traces", body, headers={"Content-Encoding": "gzip"})
    assert status == 200 and not ExportTraceServiceResponse.FromString(resp).HasField("partial_success")
    assert sorted(s.span_id for s in pipeline.spans) == [f"{i:016x}" for i in range(1, 8)]
    pipeline.spans.clear()
    whole = gzip.compress(first + second)
    for cut in (whole[:-4], whole[:-12], whole[: len(whole) // 2], gzip.compress(first) + whole[:-1]):
        status, _, resp = post(bridge.url, "/v1/traces", cut, headers={"Content-Encoding": "gzip"})
        assert status == 400 and b"truncated" in resp, (len(cut), resp)
    status, _, resp = post(
        bridge.url, "/v1/traces", gzip.compress(first) + b"trailing junk", headers={"Content-Encoding": "gzip"}
    )
    assert status == 400 and b"not valid gzip" in resp
    assert pipeline.spans == []


def test_the_size_cap_counts_every_gzip_member(make_bridge, pipeline):
    bridge = make_bridge(max_body_bytes=64 * 1024)
    part = spans_request(1, attrs={"pad": "x" * 40_000}).SerializeToString()
    assert len(part) < 64 * 1024 < 2 * len(part)
    status, _, resp = post(bridge.url, "/v1/traces", gzip.compress(part) * 2, headers={"Content-Encoding": "gzip"})
    assert status == 413 and b"decompressed" in resp
    assert pipeline.spans == []


def test_size_cap_is_413_also_after_decompression(make_bridge, pipeline):
    bridge = make_bridge(max_body_bytes=64 * 1024)
    big = spans_request(1, attrs={"pad": "x" * 100_000}).SerializeToString()
    status, _, resp = post(bridge.url, "/v1/traces", big)
    assert status == 413 and b"WANDB_BRIDGE_MAX_BODY_BYTES" in resp
    status, _, resp = post(bridge.url, "/v1/traces", big, gzip_body=True)  # ~1 KB compressed, 100 KB inflated
    assert len(gzip.compress(big)) < 64 * 1024
    assert status == 413 and b"decompressed" in resp
    assert pipeline.spans == []


def test_partial_success_counts_rejected_records(make_bridge, pipeline):
    bridge = make_bridge()
    req = spans_request(3)
    req.resource_spans[0].scope_spans[0].spans[1].trace_id = b"short"
    status, _, body = post(bridge.url, "/v1/traces", req.SerializeToString())
    resp = ExportTraceServiceResponse.FromString(body)
    assert status == 200 and resp.partial_success.rejected_spans == 1
    assert "trace_id must be 16 bytes" in resp.partial_success.error_message
    assert len(pipeline.spans) == 2

    mreq = metrics_request(points=4)
    summary = mreq.resource_metrics[0].scope_metrics[0].metrics.add()
    summary.name = "legacy.summary"
    summary.summary.data_points.add()  # refused by the decoder
    gauge = mreq.resource_metrics[0].scope_metrics[0].metrics.add()
    gauge.name = "bad.gauge"
    gauge.gauge.data_points.add(time_unix_nano=1, as_double=float("nan"))  # decoded, then refused by the pipeline
    status, _, body = post(bridge.url, "/v1/metrics", mreq.SerializeToString())
    resp = ExportMetricsServiceResponse.FromString(body)
    assert status == 200 and resp.partial_success.rejected_data_points == 1 + 1
    assert "summary points are not supported" in resp.partial_success.error_message
    assert "1 metric_points rejected as invalid" in resp.partial_success.error_message
    assert len(pipeline.metrics) == 5  # the batch the pipeline took, the invalid point included

    status, _, body = post(bridge.url, "/v1/metrics", json_format.MessageToJson(mreq).encode(), "application/json")
    assert status == 200 and json.loads(body)["partialSuccess"]["rejectedDataPoints"] == "2"
    assert len(pipeline.metrics) == 10
    assert pipeline.force_flush(5)
    (row,) = pipeline.run.logged  # and the real pipeline aggregated what the bridge handed it
    assert row["http/requests"] == 2
    assert row["test.requests/delta"] == 4  # 4 cumulative streams at 1; the second batch repeats the same points
    assert not [k for k in row if k.startswith("bad.gauge")]
    rejected = {k: v for k, v in row.items() if k.startswith("rejected/")}
    assert rejected == {
        "rejected/spans": 1,
        "rejected/spans@reason=decode": 1,
        "rejected/metric_points": 4,
        "rejected/metric_points@reason=decode": 2,
        "rejected/metric_points@reason=value": 2,
    }, rejected


@pytest.mark.parametrize("content_type", [PROTO, "application/json"])
def test_closed_pipeline_is_a_retryable_503(make_bridge, pipeline, content_type):
    """After the pipeline shut down (SIGTERM: the bridge is stopping) a batch is refused with 503 + Retry-After, so
    the collector keeps it queued and sends it again, instead of it being lost."""
    bridge = make_bridge()
    assert pipeline.shutdown(5) and pipeline.closed
    body = spans_request(2).SerializeToString() if content_type == PROTO else _json_request(2)
    status, headers, resp = post(bridge.url, "/v1/traces", body, content_type)
    assert status == 503 and headers["retry-after"] == "1"
    message = resp.decode() if content_type == PROTO else json.loads(resp)["message"]
    assert "shutting down" in message and "retry later" in message
    if content_type != PROTO:
        assert json.loads(resp)["code"] == 14  # UNAVAILABLE: retryable for OTLP clients
    else:
        assert resp.startswith(b"\x08\x0e")  # google.rpc.Status{code=14 UNAVAILABLE}
    assert pipeline.spans == [] and pipeline.run.logged == []
    status, health = get_json(bridge.url, "/healthz")
    assert (health["requests"], health["spans"], health["errors"]) == (0, 0, 1)


def test_a_pipeline_that_breaks_is_a_retryable_503_not_a_crash(make_bridge, pipeline, monkeypatch):
    """A bug in aggregation (the real pipeline's aggregator raising) reaches the collector as 503, never as a 500
    (which it would drop the batch on) or a dead handler thread; the next batch is served again."""
    bridge = make_bridge()
    from otel_wandb.core import Aggregator

    real_add = Aggregator.add_spans
    calls = []

    def broken_once(agg, spans):
        calls.append(len(spans))
        if len(calls) == 1:
            raise KeyError("http.route")
        return real_add(agg, spans)

    monkeypatch.setattr(Aggregator, "add_spans", broken_once)
    status, headers, body = post(bridge.url, "/v1/traces", spans_request(1).SerializeToString())
    assert status == 503 and headers["retry-after"] == "1" and b"pipeline unavailable: 'http.route'" in body
    assert post(bridge.url, "/v1/traces", spans_request(2).SerializeToString())[0] == 200
    assert calls == [1, 2] and len(pipeline.spans) == 2


def test_healthz_counts_and_unknown_paths(make_bridge):
    bridge = make_bridge()
    post(bridge.url, "/v1/traces", spans_request(5).SerializeToString())
    post(bridge.url, "/v1/traces", b"\xff", PROTO)
    status, health = get_json(bridge.url, "/healthz")
    assert status == 200 and health["status"] == "ok"
    assert (health["requests"], health["spans"], health["errors"]) == (1, 5, 1)
    assert post(bridge.url, "/v1/profiles", b"")[0] == 404
    assert get_json(bridge.url, "/v1/traces")[0] == 405


def test_stop_flushes_the_last_interval_and_finishes_the_run_once(make_bridge, pipeline):
    bridge = make_bridge()
    assert post(bridge.url, "/v1/traces", spans_request(3).SerializeToString())[0] == 200
    bridge.stop(5)
    assert pipeline.closed and pipeline.run.finished == 1
    assert [row["http/requests_total"] for row in pipeline.run.logged] == [3]
    bridge.stop(5)  # idempotent: the run is not finished twice
    assert pipeline.run.finished == 1


def test_status_proto_encoding():
    assert _status_proto(3, "bad") == b"\x08\x03\x12\x03bad"
    assert _status_proto(16, "x" * 200)[:4] == b"\x08\x10\x12\xc8"


@pytest.mark.integration  # `python -m otel_wandb.bridge` in its own process
def test_cli_refuses_bad_settings_naming_the_variable(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "WANDB_BRIDGE_PORT": "http", "WANDB_DIR": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-m", "otel_wandb.bridge"], env=env, capture_output=True, text=True, timeout=60
    )
    assert (
        res.returncode == 2
        and "WANDB_BRIDGE_PORT must be an integer" in res.stderr
        and "http" not in res.stderr.split("configuration:")[-1]
    )
    res = subprocess.run(
        [sys.executable, "-m", "otel_wandb.bridge"],
        env={**env, "WANDB_BRIDGE_PORT": "0", "WANDB_BRIDGE_LOG_LEVEL": "verbose"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        res.returncode == 2
        and "invalid configuration: WANDB_BRIDGE_LOG_LEVEL must be one of" in res.stderr
        and "verbose" not in res.stderr
    )
    assert "Traceback" not in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "otel_wandb.bridge", "--help"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and "WANDB_BRIDGE_TOKEN" in res.stdout


def test_config_errors_name_the_variable():
    assert BridgeConfig.from_env({}) == BridgeConfig()
    cfg = BridgeConfig.from_env(
        {"WANDB_BRIDGE_PORT": "0", "WANDB_BRIDGE_TOKEN": " t ", "WANDB_BRIDGE_MAX_BODY_BYTES": "2048"}
    )
    assert (cfg.port, cfg.token, cfg.max_body_bytes) == (0, "t", 2048)
    secret = BridgeConfig.from_env({"WANDB_BRIDGE_TOKEN": "s3cr3t-bridge-token"})
    assert "s3cr3t" not in repr(secret) + str(secret) and "max_body_bytes" in repr(secret)
    with pytest.raises(ConfigError, match="WANDB_BRIDGE_PORT"):
        BridgeConfig.from_env({"WANDB_BRIDGE_PORT": "http"})
    with pytest.raises(ConfigError, match="WANDB_BRIDGE_MAX_BODY_BYTES"):
        BridgeConfig.from_env({"WANDB_BRIDGE_MAX_BODY_BYTES": "-1"})
    assert [
        log_level(e) for e in ({}, {"WANDB_BRIDGE_LOG_LEVEL": " debug "}, {"WANDB_BRIDGE_LOG_LEVEL": "WARNING"})
    ] == ["INFO", "DEBUG", "WARNING"]
    with pytest.raises(ConfigError, match="WANDB_BRIDGE_LOG_LEVEL"):
        log_level({"WANDB_BRIDGE_LOG_LEVEL": "verbose"})


def test_a_span_delivered_twice_counts_once(make_bridge, pipeline):
    """At-least-once transport: a collector that crashed replays batches the bridge already took. The replayed spans
    are dropped (and counted) so the run's request totals stay exact; new spans in the same batch are kept."""
    bridge = make_bridge()
    assert post(bridge.url, "/v1/traces", spans_request(3).SerializeToString())[0] == 200
    status, _, body = post(bridge.url, "/v1/traces", spans_request(5).SerializeToString())  # ids 1..3 again, 4, 5
    assert status == 200 and not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    assert [s.span_id for s in pipeline.spans] == [f"{i:016x}" for i in (1, 2, 3, 4, 5)]
    health = get_json(bridge.url, "/healthz")[1]
    assert (health["spans"], health["duplicate_spans"], health["errors"]) == (8, 3, 0)


def test_dedup_window_is_bounded_and_can_be_off(make_bridge, pipeline):
    bridge = make_bridge(dedup_spans=2)
    for _ in range(2):
        post(bridge.url, "/v1/traces", spans_request(3).SerializeToString())  # 3 ids > a window of 2
    assert len(bridge.recent_spans._seen) <= 2
    off = make_bridge(dedup_spans=0)
    post(off.url, "/v1/traces", spans_request(1).SerializeToString())
    post(off.url, "/v1/traces", spans_request(1).SerializeToString())
    assert get_json(off.url, "/healthz")[1]["duplicate_spans"] == 0


def test_a_body_cut_off_by_its_sender_is_incomplete_not_an_error(make_bridge):
    """A sender killed mid-request (Content-Length promised more than arrived) is counted apart from bad data."""
    import socket

    bridge = make_bridge()
    host, port = bridge.url.split("://", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: {PROTO}\r\nContent-Length: 100\r\n\r\n".encode()
        )
        sock.sendall(b"\x0a\x02")
        sock.shutdown(socket.SHUT_WR)  # the sender is gone
        sock.recv(4096)
    health = get_json(bridge.url, "/healthz")[1]
    assert (health["incomplete"], health["errors"]) == (1, 0)
