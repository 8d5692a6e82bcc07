"""The W&B bridge: an OTLP/HTTP receiver the collector exports to, feeding a ``Pipeline`` (-> W&B).

    wandb-bridge            # or: python -m otel_wandb.bridge

POST /v1/traces, /v1/metrics, /v1/logs with ``application/x-protobuf`` or ``application/json`` (OTLP/JSON, hex ids),
optionally ``Content-Encoding: gzip``. GET /healthz. Responses follow OTLP/HTTP: the Export*ServiceResponse (with
``partial_success`` when records were rejected) in the request's encoding; errors carry a ``google.rpc.Status``
(protobuf) or ``{"code", "message"}`` (JSON). 401 without the bearer token (when one is configured), 400 for a
malformed payload, 413 over the size cap, 415 for an unknown content type, 503 (retryable) when the pipeline cannot
take the records. SIGTERM/SIGINT stop the server and shut the pipeline down, which finishes the W&B run.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import zlib
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format

from otel_wandb.bridge import _decode as otlp_decode
from otel_wandb.bridge._decode import LOGS, METRICS, TRACES, PayloadError, Record
from otel_wandb.config import BridgeConfig
from otel_wandb.records import SpanRecord

logger = logging.getLogger(__name__)

_PATHS = {"/v1/traces": TRACES, "/v1/metrics": METRICS, "/v1/logs": LOGS}
_PROTO, _JSON = "application/x-protobuf", "application/json"
_REJECTED_FIELD = {TRACES: "rejected_spans", METRICS: "rejected_data_points", LOGS: "rejected_log_records"}
_RESPONSES: dict[str, Any] = {}


def _response_type(signal: str) -> Any:
    if not _RESPONSES:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        _RESPONSES.update(
            {TRACES: ExportTraceServiceResponse, METRICS: ExportMetricsServiceResponse, LOGS: ExportLogsServiceResponse}
        )
    return _RESPONSES[signal]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _status_proto(code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` (code = 1, message = 2) encoded by hand; the proto is not shipped with OTLP."""
    msg = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(msg)) + msg


class HttpError(Exception):
    def __init__(self, status: int, message: str, rpc_code: int = 3) -> None:
        super().__init__(message)
        self.status, self.message, self.rpc_code = status, message, rpc_code


class IncompleteBodyError(HttpError):
    """The sender went away in the middle of its body (a collector killed mid-request): answered 400 if the socket
    still takes it, counted as ``incomplete`` (like a sender gone before its answer), not as an error of its data."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class RecentSpans:
    """The last ``capacity`` span ids seen (64-bit hashes of trace id + span id, ~90 bytes each): a span delivered
    twice -- at-least-once transport, a collector replaying its persistent queue after a crash -- is counted once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: set[int] = set()
        self._order: deque[int] = deque()
        self._lock = threading.Lock()

    def new(self, records: list[SpanRecord]) -> tuple[list[SpanRecord], list[int]]:
        """The records not seen before (nor twice within ``records``), and their keys, remembered from now on."""
        if not self.capacity:
            return records, []
        kept: list[SpanRecord] = []
        keys: list[int] = []
        with self._lock:
            seen, order = self._seen, self._order
            for record in records:
                key = hash((record.trace_id, record.span_id))
                if key in seen:
                    continue
                seen.add(key)
                order.append(key)
                kept.append(record)
                keys.append(key)
            while len(order) > self.capacity:
                seen.discard(order.popleft())
        return kept, keys

    def forget(self, keys: list[int]) -> None:
        """Keys of spans that were not taken after all (the pipeline refused them: the sender will retry)."""
        with self._lock:
            self._seen.difference_update(keys)


def gunzip(raw: bytes, cap: int) -> bytes:
    """Every member of a gzip body (RFC 1952 allows several; protobuf concatenation merges them), at most cap bytes
    inflated (413 above); 400 when it is not gzip or the stream is cut off before a member's end."""
    out: list[bytes] = []
    total, rest = 0, raw
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            chunk = d.decompress(rest, cap + 1 - total)
        except zlib.error as exc:
            raise HttpError(400, f"Content-Encoding gzip: body is not valid gzip ({exc})") from None
        total += len(chunk)
        if total > cap:
            raise HttpError(413, f"decompressed body exceeds WANDB_BRIDGE_MAX_BODY_BYTES={cap}", 8)
        if not d.eof:
            raise HttpError(400, "Content-Encoding gzip: body is not valid gzip (the stream is truncated)")
        out.append(chunk)
        rest = d.unused_data.lstrip(b"\x00")  # zero padding between/after members, as gzip(1) accepts
        if not rest:
            return b"".join(out)


class Stats:
    """Counters exposed on /healthz (and read by the benchmarks)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {
            "requests": 0,
            "spans": 0,
            "metric_points": 0,
            "log_records": 0,
            "rejected": 0,
            "errors": 0,
            "incomplete": 0,
            "duplicate_spans": 0,
        }
        self.last_error = ""  # "<status> <message>" of the last refused request: the why behind "errors"

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                self.counts[k] += v

    def refused(self, status: int, message: str, *, incomplete: bool) -> None:
        with self.lock:
            self.counts["incomplete" if incomplete else "errors"] += 1
            self.last_error = f"{status} {message}"[:300]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {**self.counts, "last_error": self.last_error}


_RECORD_COUNTER = {TRACES: "spans", METRICS: "metric_points", LOGS: "log_records"}  # also the run's rejected/* names


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: BridgeServer
    server_version = "ai-diary-wandb-bridge"
    # every socket read is bounded (StreamRequestHandler applies it): a sender that stops mid-body gets 408
    timeout = 30.0
    # headers and body leave in two writes: with Nagle's algorithm and the sender's delayed ACK every answer on a
    # kept-alive connection (the collector's) waited ~40 ms
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.timeout = self.server.config.read_timeout_s  # type: ignore[misc]  # typeshed: a ClassVar; setup() reads the instance's
        super().setup()

    def __getattr__(self, name: str) -> Any:
        """Any method but GET and POST (PUT, DELETE, PATCH, OPTIONS, HEAD, anything): 405 with ``Allow``."""
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        path = self.path.split("?", 1)[0]
        allow = "POST" if path in _PATHS else "GET"
        self.close_connection = True  # its body (if any) is not read
        body = json.dumps({"code": 12, "message": f"method {self.command} not allowed: use {allow}"}).encode()
        self._send(405, body if self.command != "HEAD" else b"", _JSON, {"Allow": allow, "Connection": "close"})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] in ("/healthz", "/health"):
            body = json.dumps({"status": "ok", **self.server.stats.snapshot()}).encode()
            self._send(200, body, _JSON)
        elif self.path in _PATHS:
            self._send(405, b'{"code": 12, "message": "use POST"}', _JSON, {"Allow": "POST"})
        else:
            self._send(404, b'{"code": 5, "message": "not found"}', _JSON)

    def do_POST(self) -> None:
        self._body_consumed = False
        signal = _PATHS.get(self.path.split("?", 1)[0])
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        as_json = ctype == _JSON
        try:
            try:
                if signal is None:
                    raise HttpError(404, "unknown path: use /v1/traces, /v1/metrics or /v1/logs", 5)
                self._check_auth()
                if ctype not in (_PROTO, _JSON):
                    raise HttpError(415, f"Content-Type {ctype!r} not supported: use {_PROTO} or {_JSON}")
                body = self._read_body()
                self._export(signal, body, as_json)
            except TimeoutError:
                raise HttpError(
                    408,
                    "the body did not arrive within WANDB_BRIDGE_READ_TIMEOUT_S "
                    f"({self.server.config.read_timeout_s:g} s)",
                ) from None
            except HttpError:
                raise
            except (BrokenPipeError, ConnectionResetError):  # the sender went away: nobody to answer
                self.server.stats.refused(0, "the sender closed the connection mid-exchange", incomplete=True)
                self.close_connection = True
                return
            except RecursionError:
                raise HttpError(400, "the payload nests too deeply to be parsed") from None
            except Exception as exc:  # a bug of ours: an answer all the same, never a dropped connection
                logger.exception("bridge: %s %s failed", self.command, self.path)
                raise HttpError(500, f"internal error ({type(exc).__name__}); not retryable", 13) from None
        except HttpError as err:
            self.server.stats.refused(err.status, err.message, incomplete=isinstance(err, IncompleteBodyError))
            if err.status >= 500:
                logger.warning("bridge: %s %s -> %d %s", self.command, self.path, err.status, err.message)
            extra = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
            if err.status in (503, 429):
                extra["Retry-After"] = "1"
            if not self._body_consumed:  # an unread body would be parsed as the next request: close instead
                self.close_connection = True
                extra["Connection"] = "close"
            try:
                if as_json:
                    self._send(
                        err.status, json.dumps({"code": err.rpc_code, "message": err.message}).encode(), _JSON, extra
                    )
                else:
                    self._send(err.status, _status_proto(err.rpc_code, err.message), _PROTO, extra)
            except (BrokenPipeError, ConnectionResetError):  # a sender that is gone cannot read its answer
                self.close_connection = True

    def _check_auth(self) -> None:
        token = self.server.config.token
        if not token:
            return
        got = self.headers.get("Authorization") or ""
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise HttpError(401, "missing or wrong bearer token (Authorization: Bearer $WANDB_BRIDGE_TOKEN)", 16)

    def _read_body(self) -> bytes:
        """The body, read with a hard cap (never more than WANDB_BRIDGE_MAX_BODY_BYTES bytes from the socket) and
        the read timeout; a negative, non-decimal or unmatched length is 400, a body shorter than declared 408."""
        cap = self.server.config.max_body_bytes
        transfer = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        if transfer and transfer != "chunked":
            raise HttpError(400, "Transfer-Encoding must be chunked (or absent)")
        if transfer == "chunked":
            if self.headers.get("Content-Length") is not None:
                raise HttpError(400, "Content-Length and chunked Transfer-Encoding together are ambiguous")
            raw = self._read_chunked(cap)
        else:
            lengths = self.headers.get_all("Content-Length") or []
            if not lengths:
                raise HttpError(411, "Content-Length (or chunked Transfer-Encoding) is required")
            length_header = lengths[0].strip()
            if len(lengths) > 1 or not length_header.isascii() or not length_header.isdigit():
                raise HttpError(400, "Content-Length must be one non-negative decimal integer")
            length = int(length_header)
            if length > cap:
                raise HttpError(413, f"body of {length} bytes exceeds WANDB_BRIDGE_MAX_BODY_BYTES={cap}", 8)
            raw = self.rfile.read(length)
            if len(raw) != length:
                raise IncompleteBodyError(
                    f"the body ended after {len(raw)} of the {length} bytes Content-Length declares"
                )
        self._body_consumed = True
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            raw = gunzip(raw, cap)
        elif encoding not in ("identity", ""):
            raise HttpError(415, f"Content-Encoding {encoding!r} not supported: use gzip or identity")
        return raw

    def _read_chunked(self, cap: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise IncompleteBodyError("the chunked body ended before its last chunk")
            digits = line.split(b";", 1)[0].strip()
            if not digits or len(digits) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
                raise HttpError(400, "malformed chunked body: a chunk size must be hexadecimal digits")
            size = int(digits, 16)
            if size == 0:
                for _ in range(64):  # trailers, bounded
                    if self.rfile.readline(1024) in (b"\r\n", b"\n", b""):
                        break
                self._body_consumed = True
                return b"".join(parts)
            total += size
            if total > cap:
                raise HttpError(413, f"body exceeds WANDB_BRIDGE_MAX_BODY_BYTES={cap}", 8)
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise IncompleteBodyError("the chunked body ended inside a chunk")
            parts.append(chunk)
            if self.rfile.readline(8) not in (b"\r\n", b"\n"):
                raise HttpError(400, "malformed chunked body: a chunk is longer than its size")

    def _export(self, signal: str, body: bytes, as_json: bool) -> None:
        try:
            decoded = otlp_decode.decode(signal, body, json_body=as_json)
        except PayloadError as exc:
            raise HttpError(400, str(exc)) from None
        rejected, errors = decoded.rejected, list(decoded.errors)
        records = decoded.records
        if decoded.rejected:
            self.server.pipeline.add_rejected(_RECORD_COUNTER[signal], "decode", decoded.rejected)
        if records:
            invalid = self.server.feed(signal, records)
            if invalid:
                rejected += invalid
                errors.append(
                    f"{invalid} {_RECORD_COUNTER[signal]} rejected as invalid (rejected/"
                    f"{_RECORD_COUNTER[signal]} in the run counts them by reason)"
                )
        self.server.stats.add(requests=1, rejected=rejected, **{_RECORD_COUNTER[signal]: len(records)})
        resp = _response_type(signal)()
        if rejected:
            setattr(resp.partial_success, _REJECTED_FIELD[signal], rejected)
            resp.partial_success.error_message = "; ".join(errors)[:1000]
        if as_json:
            self._send(200, json_format.MessageToJson(resp, indent=None).encode(), _JSON)
        else:
            self._send(200, resp.SerializeToString(), _PROTO)


class BridgeServer(ThreadingHTTPServer):
    """The HTTP server; ``pipeline`` is anything with add_spans/add_metrics/add_logs (an exporters Pipeline)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, config: BridgeConfig, pipeline: Any) -> None:
        self.config, self.pipeline, self.stats = config, pipeline, Stats()
        self.recent_spans = RecentSpans(config.dedup_spans)
        self._adders = {TRACES: pipeline.add_spans, METRICS: pipeline.add_metrics, LOGS: pipeline.add_logs}
        self._thread: threading.Thread | None = None
        super().__init__((config.host, config.port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"  # type: ignore[str-bytes-safe]  # typeshed: str | bytes; bound, it is str

    def feed(self, signal: str, records: list[Record]) -> int:
        """Hand records to the pipeline; returns how many it rejected as invalid (the rest were taken). Raises
        HttpError(503, retryable) when the pipeline is closed or broken: the collector keeps the batch for later."""
        keys: list[int] = []
        if signal == TRACES:  # a span delivered twice (a collector's replay after a crash) counts once
            fresh, keys = self.recent_spans.new(records)  # type: ignore[arg-type]  # TRACES: the records are spans
            if len(fresh) < len(records):
                self.stats.add(duplicate_spans=len(records) - len(fresh))
            if not fresh:
                return 0
            records = list(fresh)
        try:
            rejected = self._adders[signal](records)
        except Exception as exc:  # the pipeline is broken: let the collector retry later
            self.recent_spans.forget(keys)
            logger.warning("bridge: pipeline refused %d %s: %s", len(records), signal, exc)
            raise HttpError(503, f"pipeline unavailable: {exc}", 14) from None
        if rejected is None:
            self.recent_spans.forget(keys)
            raise HttpError(503, "the pipeline is shutting down, retry later", 14)
        return max(0, min(len(records), int(rejected)))

    def start(self) -> BridgeServer:
        """Serve on a background thread (tests, benchmarks, the demo)."""
        self._thread = threading.Thread(target=self.serve_forever, args=(0.1,), name="wandb-bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0, *, shutdown_pipeline: bool = True) -> None:
        """Stop accepting requests, then flush and shut the pipeline down (finishes the W&B run)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self.server_close()
        if shutdown_pipeline:
            deadline = time.monotonic() + timeout
            try:
                self.pipeline.shutdown(max(0.1, deadline - time.monotonic()))
            except Exception:  # never let shutdown raise
                logger.exception("bridge: pipeline shutdown failed")
