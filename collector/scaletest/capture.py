"""A stand-in for the W&B bridge in scale-out tests: an OTLP/HTTP receiver that records what it gets.

    python collector/scaletest/capture.py --port 14319 --out /tmp/scale-run/capture

Accepts POST /v1/traces|metrics|logs (protobuf, gzip or not, as the collector's otlp_http exporter sends them) and
appends each request, decoded to OTLP JSON (protobuf's json_format: camelCase, int64 as strings), as one line to
<out>/<signal>.jsonl. Answers 200 with an empty protobuf response. GET /healthz -> 200. Needs opentelemetry-proto
(the project's .venv has it). Test tooling only: it keeps nothing but those files.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

KINDS = {
    "/v1/traces": ("traces", trace_pb.ExportTraceServiceRequest, trace_pb.ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", metrics_pb.ExportMetricsServiceRequest, metrics_pb.ExportMetricsServiceResponse),
    "/v1/logs": ("logs", logs_pb.ExportLogsServiceRequest, logs_pb.ExportLogsServiceResponse),
}
_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    out_dir = "."

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        kind = KINDS.get(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if kind is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name, req_cls, resp_cls = kind
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        req = req_cls()
        req.ParseFromString(body)
        line = json.dumps(MessageToDict(req), separators=(",", ":"))
        with _lock, open(os.path.join(self.out_dir, name + ".jsonl"), "a") as f:
            f.write(line + "\n")
        payload = resp_cls().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=14319)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    Handler.out_dir = a.out
    ThreadingHTTPServer((a.host, a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
