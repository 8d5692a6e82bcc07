"""Controlled OTLP load for the scale-out tests: ai-diary-shaped traces (+ one app metric and some logs).

    .venv/bin/python collector/scaletest/send.py --endpoint 127.0.0.1:14317 --traces 600 --instance host-a-w1 \
        --rate 100 --expect /tmp/scale-run/expect-a.json

Trace i (deterministic): one SERVER span (http.route, http.request.method, http.response.status_code; every 10th
a 500 with status ERROR and error.type; every 7th a 404 without a route; every 25th lasts 2.5 s); the ones on
/api/ai/summarize get a gen_ai CLIENT child (gen_ai.operation.name, gen_ai.request.model, app.feature, token usage;
every 9th call fails with error.type RateLimitError) and an HTTP CLIENT grandchild (the call to the LLM API: method
and status, no route -- span_metrics/http must not count it). The counter app.ai.cost (USD, per model and feature)
goes up per gen_ai call; every 10th trace writes an ERROR log record inside its server span, every trace an INFO one.
--expect writes what was sent, counted the way the gateway's span_metrics and tail_sampling should see it.
Uses opentelemetry-sdk and the OTLP/gRPC exporters (the project's .venv).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

ROUTES = [
    ("GET", "/api/entries", 200),
    ("POST", "/api/entries", 201),
    ("GET", "/api/entries/<int:entry_id>", 200),
    ("POST", "/api/ai/summarize", 200),
]
MODELS = ["gpt-4o-mini", "gpt-4o"]
FEATURES = ["summarize", "tag"]
MS = 1_000_000


def plan(i: int):
    method, route, code = ROUTES[i % len(ROUTES)]
    if i % 7 == 3:
        route, code = None, 404  # a scan: no matched route
    error = i % 10 == 9
    if error:
        code = 500
    slow = i % 25 == 24
    dur_ms = 2500 if slow else 20 + (i * 37) % 180
    ai = route == "/api/ai/summarize"
    return method, route, code, error, slow, dur_ms, ai


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True, help="agent OTLP/gRPC host:port")
    ap.add_argument("--traces", type=int, default=600)
    ap.add_argument("--start", type=int, default=0, help="first trace index (to continue a plan)")
    ap.add_argument("--instance", default="host-a-w1", help="service.instance.id")
    ap.add_argument("--rate", type=float, default=0, help="traces per second (0: as fast as possible)")
    ap.add_argument("--expect", help="write the expected counts (JSON) here")
    a = ap.parse_args()

    res = Resource.create(
        {"service.name": "ai-diary", "service.instance.id": a.instance, "app.worker.id": a.instance.rsplit("-", 1)[-1]}
    )
    ep = f"http://{a.endpoint}"
    tp = TracerProvider(resource=res)
    tp.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=ep, insecure=True),
            max_queue_size=100_000,
            max_export_batch_size=512,
            schedule_delay_millis=200,
        )
    )
    mp = MeterProvider(
        resource=res,
        metric_readers=[
            PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=ep, insecure=True), export_interval_millis=2000)
        ],
    )
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=ep, insecure=True), max_queue_size=100_000, schedule_delay_millis=200
        )
    )
    tracer = tp.get_tracer("flask-like")
    ai_tracer = tp.get_tracer("genai-like")
    cost = mp.get_meter("ai-diary").create_counter("app.ai.cost", unit="USD")
    log = logging.getLogger("scaletest")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(logger_provider=lp))

    exp = {
        "server": Counter(),
        "server_total": 0,
        "server_errors": 0,
        "ai": Counter(),
        "ai_total": 0,
        "ai_errors": 0,
        "http_client_spans": 0,
        "spans": 0,
        "traces": 0,
        "error_traces": 0,
        "slow_traces": 0,
        "cost_usd": 0.0,
        "trace_ids": {},
    }
    t_begin = time.time()
    for i in range(a.start, a.start + a.traces):
        if a.rate:
            delay = t_begin + (i - a.start) / a.rate - time.time()
            if delay > 0:
                time.sleep(delay)
        method, route, code, error, slow, dur_ms, ai = plan(i)
        t0 = time.time_ns() - dur_ms * MS
        name = f"{method} {route}" if route else method
        attrs = {"http.request.method": method, "http.response.status_code": code, "url.scheme": "http"}
        if route:
            attrs["http.route"] = route
        span = tracer.start_span(name, kind=SpanKind.SERVER, start_time=t0, attributes=attrs)
        ctx = trace.set_span_in_context(span)
        n_spans = 1
        ai_error = False
        if ai and code != 404:
            model, feature = MODELS[(i // 4) % 2], FEATURES[(i // 8) % 2]
            ai_error = i % 9 == 0
            g = ai_tracer.start_span(
                f"chat {model}",
                kind=SpanKind.CLIENT,
                context=ctx,
                start_time=t0 + 5 * MS,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": model,
                    "gen_ai.provider.name": "openai",
                    "app.feature": feature,
                    "gen_ai.usage.input_tokens": 100 + i % 50,
                    "gen_ai.usage.output_tokens": 20 + i % 30,
                },
            )
            h = tracer.start_span(
                "POST",
                kind=SpanKind.CLIENT,
                context=trace.set_span_in_context(g),
                start_time=t0 + 6 * MS,
                attributes={
                    "http.request.method": "POST",
                    "server.address": "api.openai.com",
                    "http.response.status_code": 429 if ai_error else 200,
                },
            )
            h.end(end_time=t0 + (dur_ms - 10) * MS)
            if ai_error:
                g.set_attribute("error.type", "RateLimitError")
                g.set_status(Status(StatusCode.ERROR, "rate limited"))
            g.end(end_time=t0 + (dur_ms - 5) * MS)
            n_spans += 2
            exp["http_client_spans"] += 1
            exp["ai"][f"{model}|{feature}|{'ERROR' if ai_error else 'UNSET'}"] += 1
            exp["ai_total"] += 1
            exp["ai_errors"] += ai_error
            usd = 0.001 * (1 + i % 3)
            cost.add(usd, {"gen_ai.request.model": model, "app.feature": feature})
            exp["cost_usd"] += usd
        if error:
            span.set_attribute("error.type", "500")
            span.set_status(Status(StatusCode.ERROR))
            with trace.use_span(span):
                log.error("request failed: synthetic 500 on %s", route)
        with trace.use_span(span):
            log.info("request %d done", i)
        span.end(end_time=t0 + dur_ms * MS)
        exp["server"][f"{method}|{route or method}|{code}"] += 1
        exp["server_total"] += 1
        exp["server_errors"] += error
        exp["spans"] += n_spans
        exp["traces"] += 1
        exp["error_traces"] += error or ai_error
        exp["slow_traces"] += slow
        kept = "error" if (error or ai_error) else ("slow" if slow else "")
        exp["trace_ids"][format(span.get_span_context().trace_id, "032x")] = kept
    tp.force_flush()
    mp.force_flush()
    lp.force_flush()
    tp.shutdown()
    mp.shutdown()
    lp.shutdown()
    if a.expect:
        exp = {k: (dict(v) if isinstance(v, Counter) else v) for k, v in exp.items()}
        with open(a.expect, "w") as f:
            json.dump(exp, f, indent=1, sort_keys=True)
    print(json.dumps({k: v for k, v in exp.items() if k not in ("trace_ids", "server", "ai")}))


if __name__ == "__main__":
    main()
