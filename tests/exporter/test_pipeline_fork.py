"""A pre-forked worker (as under gunicorn) gets its own shared pipeline and its own W&B run."""

from __future__ import annotations

import os

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind

from otel_wandb.pipeline import Pipeline
from otel_wandb.runfile import find_runs, read_run, wait_complete
from otel_wandb.sdk import WandbSpanExporter


def server_spans(n):
    tracer = TracerProvider().get_tracer("fork")
    spans = []
    for _ in range(n):
        s = tracer.start_span("GET /x", kind=SpanKind.SERVER, attributes={"http.route": "/x"})
        s.end()
        spans.append(s)
    return spans


def test_forked_worker_builds_its_own_pipeline_and_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_EXPORT_INTERVAL", "3600")
    Pipeline.reset_shared()
    exporter = WandbSpanExporter()  # zero-argument: the process-wide pipeline, built before the fork
    parent_pipeline = Pipeline.shared()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            ok = exporter.export(server_spans(3)) is SpanExportResult.SUCCESS
            mine = Pipeline.shared()
            exporter.shutdown()
            code = 0 if ok and mine is not parent_pipeline and mine.closed else 3
        finally:
            os._exit(code)
    assert exporter.export(server_spans(5)) is SpanExportResult.SUCCESS
    _, status = os.waitpid(pid, 0)
    exporter.shutdown()
    Pipeline.reset_shared()
    assert os.waitstatus_to_exitcode(status) == 0
    runs = find_runs(tmp_path)
    assert len(runs) == 2
    totals = []
    for run_dir in runs:
        assert wait_complete(run_dir, 20)
        totals.append(sum(h.get("http/requests", 0) for h in read_run(run_dir).history))
    assert sorted(totals) == [3, 5]
