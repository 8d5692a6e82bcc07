"""No sender can silence the W&B run: every case of issue 13, sent to a real bridge process, gets a 4xx or an OTLP
partial success, and the valid data sent after each case is in the offline run read back from disk, with no NaN or
inf anywhere. Protocol abuse (negative and short lengths, bad chunk sizes, other methods) gets an answer too."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from app.demo.topology import start_bridge
from otel_wandb.runfile import find_runs, read_run
from tests.support.collector import PROTO, post
from tests.support.otlp import hostile_cases, type_conflict, valid_metric, valid_spans

pytestmark = pytest.mark.integration

RESPONSES = {"/v1/traces": ExportTraceServiceResponse, "/v1/metrics": ExportMetricsServiceResponse}


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory):
    wdir = tmp_path_factory.mktemp("hostile-run")
    handle = start_bridge(
        {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(wdir),
            "WANDB_EXPORT_INTERVAL": "1",
            "WANDB_BRIDGE_READ_TIMEOUT_S": "1",
            "ALERTS_ENABLED": "false",
        }
    )
    handle.wandb_dir = wdir
    yield handle
    handle.stop()


def _raw(url: str, request: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return what comes back until the server closes (or a response arrives whole)."""
    host, port = url.split("://", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1."), f"no HTTP answer: {response[:80]!r}"
    return int(response.split(b" ", 2)[1])


def test_every_hostile_case_is_refused_and_the_valid_data_after_it_is_in_the_run(bridge):
    sent_after: dict[str, int] = {}
    for i, case in enumerate(hostile_cases()):
        status, _headers, body = post(bridge.url, case.path, case.body, case.content_type)
        assert status < 500, f"{case.name}: {status} {body[:200]!r}"
        if status == 200:
            resp = RESPONSES.get(case.path, ExportTraceServiceResponse).FromString(body)
            rejected = (
                (
                    resp.partial_success.rejected_spans
                    if case.path == "/v1/traces"
                    else getattr(resp.partial_success, "rejected_data_points", 0)
                )
                if case.path != "/v1/logs"
                else None
            )
            assert rejected is None or rejected >= 1, f"{case.name}: accepted silently"
            assert resp.partial_success.error_message, case.name
        else:
            assert status in (400, 413, 415), f"{case.name}: {status}"
        route = f"/after-{i}"
        status, _, _ = post(bridge.url, "/v1/traces", valid_spans(route, 3 + i, start=1000 * (i + 1)))
        assert status == 200
        sent_after[route] = 3 + i
    status, _, _ = post(bridge.url, "/v1/metrics", valid_metric("after.total", 7))
    assert status == 200
    status, _, body = post(bridge.url, "/v1/metrics", type_conflict("after.total"))  # a sum reused as a gauge
    assert status == 200 and ExportMetricsServiceResponse.FromString(body).partial_success.rejected_data_points == 1
    bridge.stop()  # SIGTERM: the last interval is flushed and the run finished

    run = read_run(find_runs(bridge.wandb_dir)[0])
    for route, n in sent_after.items():
        assert sum(run.series(f"http/requests@http.route={route}")) == n, route
    assert run.series("after.total/total")[-1] == 7
    values = [v for row in run.history for v in row.values() if isinstance(v, float)]
    assert values and all(math.isfinite(v) for v in values), "a key holds NaN or inf"
    keys = {k for row in run.history for k in row}
    assert not [k for k in keys if not k.isprintable()], "a key holds control characters"
    rejected = {k: sum(run.series(k)) for k in keys if k.startswith("rejected/")}
    assert rejected.get("rejected/metric_points@reason=type_conflict") == 1
    for reason in ("scale", "offset", "buckets", "value", "sum", "count", "name"):
        assert rejected.get(f"rejected/metric_points@reason={reason}", 0) >= 1, (reason, rejected)
    assert rejected.get("rejected/spans@reason=decode", 0) >= 3 and rejected.get("rejected/log_records", 0) >= 1


@pytest.fixture
def live_bridge(tmp_path: Path):
    handle = start_bridge(
        {
            "WANDB_MODE": "disabled",
            "WANDB_DIR": str(tmp_path),
            "WANDB_EXPORT_INTERVAL": "3600",
            "WANDB_BRIDGE_READ_TIMEOUT_S": "1",
            "WANDB_BRIDGE_MAX_BODY_BYTES": "1048576",
            "ALERTS_ENABLED": "false",
        }
    )
    yield handle
    handle.stop()


@pytest.mark.parametrize(
    "head, body, expected",
    [
        (b"Content-Length: -1", b"x" * 64, 400),
        (b"Content-Length: 1e3", b"x" * 64, 400),
        (b"Content-Length: 5\r\nContent-Length: 6", b"x" * 6, 400),
        (b"Content-Length: 4000000000", b"x" * 64, 413),  # over the cap: refused before a byte is read
        (b"Transfer-Encoding: chunked", b"-1\r\nxx\r\n0\r\n\r\n", 400),
        (b"Transfer-Encoding: chunked", b"5\r\nabcdefgh\r\n0\r\n\r\n", 400),  # a chunk longer than its size
        (b"Transfer-Encoding: gzip", b"x", 400),
        (b"Content-Length: 100", b"only 20 bytes here..", 400),  # shorter than declared: the read times out
    ],
)
def test_lengths_and_chunks_that_lie_get_an_answer(live_bridge, head, body, expected):
    request = (
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n" + head + b"\r\n\r\n" + body
    )
    response = _raw(live_bridge.url, request)
    assert _status(response) in ((expected, 408) if expected == 400 and b"100" in head else (expected,)), response


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW"])
def test_other_methods_are_405_with_allow(live_bridge, method):
    response = _raw(live_bridge.url, f"{method} /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    assert _status(response) == 405 and b"\r\nallow: post\r\n" in response.lower()
    response = _raw(live_bridge.url, f"{method} /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    assert _status(response) == 405 and b"\r\nallow: get\r\n" in response.lower()


def test_a_huge_body_with_a_negative_length_costs_no_memory(live_bridge):
    """The old reader took ``read(-1)``: everything until the client closed. Now 400 at once, nothing buffered."""
    rss_before = _rss_kib(live_bridge.proc.pid)
    host, port = live_bridge.url.split("://", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: -1\r\n\r\n"
        )
        answer = sock.recv(4096)
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:  # the server has answered and closes: sending stops early
                sock.sendall(b"\0" * (1 << 20))
                sent += 1 << 20
        except OSError:
            pass
    assert _status(answer) == 400
    assert _rss_kib(live_bridge.proc.pid) - rss_before < 20 * 1024


def test_one_bad_span_among_valid_ones_is_rejected_alone(live_bridge):
    good = valid_spans("/fine", 5, start=1)
    status, _, body = post(live_bridge.url, "/v1/traces", good + good.replace(b"/fine", b"/fin\xff"), PROTO)
    # a non-UTF-8 route (the bytes of one span changed) is refused on its own; the five valid spans are taken
    resp = ExportTraceServiceResponse.FromString(body)
    assert status == 200 and resp.partial_success.rejected_spans == 5
    assert live_bridge.stats()["spans"] == 5


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
