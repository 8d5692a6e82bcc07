"""ai-diary-logs over files written by the real collector (otel-collector.yaml): rotation, routing, trace ids."""

from __future__ import annotations

import gzip
import json
import shutil

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_wandb import logfiles as logq
from otel_wandb.logfiles._files import stream_files
from tests.support import wait_until
from tests.support.collector import logs_request, post, read_log_records

BULK, PAD = 5000, 400


def run(capsys, *args: str) -> list[dict]:
    assert logq.main([*args, "--format", "jsonl"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_queries_over_real_collector_files_with_rotation(start_collector, capsys):
    col = start_collector(
        {
            "LOG_MAX_MEGABYTES": "1",
            "OTEL_COLLECTOR_BATCH_SIZE": "200",
            "OTEL_COLLECTOR_BATCH_MAX_SIZE": "400",
            "LOG_MAX_BACKUPS": "50",
        }
    )
    # bulk traffic (forces rotation of combined.log)
    for start in range(0, BULK, 500):
        recs = [
            ("app", 9, f"bulk-{i:06d}-" + "x" * PAD, {"http.route": "/api/entries"}) for i in range(start, start + 500)
        ]
        assert post(col.http_endpoint, "/v1/logs", logs_request(recs).SerializeToString())[0] == 200
    # application-like records from the real SDK, inside a span (trace id), and audit records
    provider = LoggerProvider(resource=Resource.create({"service.name": "ai-diary"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=col.http_endpoint + "/v1/logs")))
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("GET /api/entries/<int:id>/summary") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        provider.get_logger("app").emit(
            body="AI call failed: feature=summarize status=502",
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            attributes={"http.route": "/api/entries/<int:id>/summary", "enduser.pseudo.id": "u_7f3a"},
        )
        provider.get_logger("audit").emit(
            body="audit ai.summarize",
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            attributes={
                "audit.action": "ai.summarize",
                "audit.actor": "u_7f3a",
                "audit.outcome": "failure",
                "audit.seq": 1,
            },
        )
    provider.get_logger("audit").emit(
        body="audit entry.delete",
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        attributes={"audit.action": "entry.delete", "audit.actor": "u_9b01", "audit.seq": 2},
    )
    provider.shutdown()
    for stream, least in (("combined.log", BULK + 3), ("audit.log", 2), ("error.log", 1)):  # three pipelines
        wait_until(lambda s=stream, n=least: len(read_log_records(col.log_dir, s)) >= n, 30, stream, interval=0.2)
    files = stream_files(col.log_dir, "combined")
    assert len(files) >= 3 and files[-1].name == "combined.log", [f.name for f in files]
    # compress the oldest backup as logrotate / lumberjack's compress would: nothing may be lost
    oldest = files[0]
    with open(oldest, "rb") as src, gzip.open(oldest.with_name(oldest.name + ".gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    oldest.unlink()
    d = ["--log-dir", str(col.log_dir)]

    counts = {r["severity"]: r["count"] for r in run(capsys, *d, "--group-by", "severity")}
    assert counts == {"INFO": BULK + 1, "WARN": 1, "ERROR": 1}
    rows = run(capsys, *d, "--trace-id", trace_id)
    assert [r["body"] for r in rows] == ["AI call failed: feature=summarize status=502", "audit ai.summarize"]
    assert (
        run(capsys, *d, "--severity", "ERROR", "--route", "/api/entries/*")[0]["attributes"]["enduser.pseudo.id"]
        == "u_7f3a"
    )
    assert [r["attributes"]["audit.seq"] for r in run(capsys, *d, "--stream", "audit", "--user", "u_7f3a")] == [1]
    assert [r["body"] for r in run(capsys, *d, "--stream", "audit", "--action", "entry.*")] == ["audit entry.delete"]
    assert [r["body"] for r in run(capsys, *d, "--stream", "error")] == ["AI call failed: feature=summarize status=502"]
    assert run(capsys, *d, "--top-errors", "3") == [
        {
            "count": 1,
            "error": "AI call failed: feature=summarize status=<n>",
            "first": rows[0]["time"],
            "last": rows[0]["time"],
            "example": "AI call failed: feature=summarize status=502",
        }
    ]
    bulk = run(capsys, *d, "--grep", "bulk-")
    assert len(bulk) == BULK and len({r["body"][:11] for r in bulk}) == BULK
