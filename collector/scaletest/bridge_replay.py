"""Replay what the capture "bridge" received through the REAL bridge core (otel_wandb.core.Aggregator), offline.

    .venv/bin/python collector/scaletest/bridge_replay.py RUN_DIR [--every N]

Feeds RUN_DIR/capture/metrics.jsonl (and traces.jsonl) request by request, in arrival order, into one Aggregator
(the bridge "started" before the first point), flushes every N requests, and adds up each row key's per-interval
values over the run. Prints the span_metrics and app.ai.cost keys (and the span-derived http/ai request counts,
which behind tail_sampling only see the sampled traces). Shows whether the bridge's cumulative-stream diffing
adds the gateways' streams without double counting. No W&B, no network.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

from otel_wandb import core
from otel_wandb.bridge import decode


def main() -> None:
    run = sys.argv[1]
    every = int(sys.argv[sys.argv.index("--every") + 1]) if "--every" in sys.argv else 4
    reqs = []
    for sig, cls in (("metrics", mpb.ExportMetricsServiceRequest), ("traces", tpb.ExportTraceServiceRequest)):
        path = f"{run}/capture/{sig}.jsonl"
        if os.path.exists(path):
            for line in open(path):
                reqs.append((sig, ParseDict(json.loads(line), cls()).SerializeToString()))
    # arrival order is lost across the two files: metrics first is fine for these totals
    first = None
    agg = None
    sums: dict[str, float] = defaultdict(float)
    last: dict[str, float] = {}
    warnings = []
    for i, (sig, body) in enumerate(reqs):
        dec = decode(sig, body)
        if agg is None:
            starts = [p.start_time_ns for p in dec.records if getattr(p, "start_time_ns", 0)]
            first = min(starts) if starts else 0
            agg = core.Aggregator(process_start_ns=first - 10**9 if first else None)
        (agg.add_metrics if sig == "metrics" else agg.add_spans)(dec.records)
        if (i + 1) % every == 0 or i == len(reqs) - 1:
            res = agg.flush(now_ns=first + (i + 1) * 10**9 if first else None)
            warnings += agg.take_warnings()
            for k, v in res.row.items():
                if isinstance(v, (int, float)):
                    if (
                        "/delta" in k
                        or k.endswith(("/count",))
                        or "/count@" in k
                        or k.startswith(("http/requests", "ai/calls"))
                    ):
                        sums[k] += v
                    last[k] = v
    for k in sorted(sums):
        if k.startswith(("span_metrics", "app.ai.cost", "http/requests", "ai/calls")) and (
            "@" not in k or "status_class" in k or "gen_ai.request.model" in k or "http.route" in k
        ):
            print(f"{k:90s} sum over intervals = {sums[k]:g}")
    for k in sorted(last):
        if k.endswith("/total") and k.startswith(("span_metrics", "app.ai.cost")) and "@" not in k:
            print(f"{k:90s} last = {last[k]:g}")
    for w in warnings:
        print("bridge warning:", w[1] % tuple(w[2]) if len(w) > 2 else w)


if __name__ == "__main__":
    main()
