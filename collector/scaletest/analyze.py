"""Check what the capture "bridge" received against what send.py sent (collector/scaletest).

    python collector/scaletest/analyze.py RUN_DIR [--example]

Metrics: for every span_metrics stream (metric name + point attributes + resource) and start time the NEWEST
cumulative point counts (as the bridge's cumulative.Streams would after diffing); streams are then ADDED across gateways
(collector.instance.id) and compared with the sums of RUN_DIR/expect-*.json. Traces: the trace ids received vs
the ones send.py marked as error/slow (all must be kept) and the baseline share of the rest; duplicates.
--example prints one trimmed OTLP JSON request of each span_metrics metric.
"""

from __future__ import annotations

import glob
import json
import sys
from collections import Counter, defaultdict


def attrs(lst):
    out = {}
    for a in lst or []:
        v = a["value"]
        out[a["key"]] = next(iter(v.values())) if v else None
    return out


def main() -> None:
    run = sys.argv[1]
    exp = [json.load(open(f)) for f in sorted(glob.glob(f"{run}/expect-*.json"))]
    want_server, want_ai = Counter(), Counter()
    kept_ids, all_ids = {}, set()
    for e in exp:
        want_server.update(e["server"])
        want_ai.update(e["ai"])
        for tid, why in e["trace_ids"].items():
            all_ids.add(tid)
            if why:
                kept_ids[tid] = why
    # -- metrics
    newest = {}  # stream key -> (time, point, kind, metric meta)
    shapes = {}
    n_req = 0
    for line in open(f"{run}/capture/metrics.jsonl"):
        req = json.loads(line)
        n_req += 1
        for rm in req.get("resourceMetrics", []):
            res = attrs(rm.get("resource", {}).get("attributes"))
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    kind = next(k for k in ("sum", "gauge", "histogram", "exponentialHistogram") if k in m)
                    body = m[kind]
                    shapes.setdefault(
                        m["name"],
                        (
                            kind,
                            m.get("unit"),
                            body.get("aggregationTemporality"),
                            body.get("isMonotonic"),
                            sm["scope"].get("name"),
                            sorted(res),
                        ),
                    )
                    for p in body.get("dataPoints", []):
                        pa = attrs(p.get("attributes"))
                        # a new start time is a reset (a restarted gateway with a stable collector.instance.id):
                        # each (stream, start time) segment counts its newest point
                        key = (
                            m["name"],
                            tuple(sorted(pa.items())),
                            tuple(sorted(res.items())),
                            int(p.get("startTimeUnixNano", 0)),
                        )
                        t = int(p["timeUnixNano"])
                        if key not in newest or t >= newest[key][0]:
                            newest[key] = (t, p, pa, res, int(p.get("startTimeUnixNano", 0)))
    print(f"metric export requests: {n_req}")
    for name, (kind, unit, temp, mono, scope, rkeys) in sorted(shapes.items()):
        print(f"  {name}: {kind} unit={unit} temporality={temp} monotonic={mono} scope={scope}")
        print(f"      resource keys: {rkeys}")
    got_server, got_ai = Counter(), Counter()
    streams = defaultdict(set)
    gw_ids = defaultdict(set)
    hist_info = Counter()
    dur_counts = Counter()
    for (name, pa_t, res_t, _), (_t, p, pa, _res, _start) in newest.items():
        streams[name].add((pa_t, res_t))
        if "collector.instance.id" in pa:
            gw_ids[name].add(pa["collector.instance.id"])
        if name == "span_metrics.http.server.calls":
            got_server[
                f"{pa.get('http.request.method')}|{pa.get('http.route')}|{pa.get('http.response.status_code')}"
            ] += int(p.get("asInt", p.get("asDouble", 0)))
        if name == "span_metrics.gen_ai.client.calls":
            status = "ERROR" if pa.get("status.code") == "STATUS_CODE_ERROR" else "UNSET"
            got_ai[f"{pa.get('gen_ai.request.model')}|{pa.get('app.feature')}|{status}"] += int(p.get("asInt", 0))
        if name.endswith(".duration"):
            hist_info[(name, p.get("scale"))] += 1
            dur_counts[name] += int(p.get("count", 0))
    for name in sorted(streams):
        if name.startswith("span_metrics"):
            print(f"  {name}: {len(streams[name])} streams, {len(gw_ids[name])} collector.instance.id values")
    print("  duration histogram scales (name, scale): streams", dict(hist_info))
    print("  duration counts:", dict(dur_counts))
    ok = got_server == want_server and got_ai == want_ai
    print(
        f"server calls: sent {sum(want_server.values())} / span_metrics (sum of newest points over all streams) "
        f"{sum(got_server.values())}; per route/method/status equal: {got_server == want_server}"
    )
    if got_server != want_server:
        for k in sorted(set(want_server) | set(got_server)):
            if want_server[k] != got_server[k]:
                print(f"   {k}: sent {want_server[k]} got {got_server[k]}")
    print(
        f"gen_ai calls: sent {sum(want_ai.values())} / span_metrics {sum(got_ai.values())}; per model/feature/status "
        f"equal: {got_ai == want_ai}"
    )
    if got_ai != want_ai:
        for k in sorted(set(want_ai) | set(got_ai)):
            if want_ai[k] != got_ai[k]:
                print(f"   {k}: sent {want_ai[k]} got {got_ai[k]}")
    # -- traces
    seen = Counter()
    spans = 0
    for line in open(f"{run}/capture/traces.jsonl"):
        req = json.loads(line)
        for rs in req.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    spans += 1
                    if not s.get("parentSpanId"):
                        seen[s["traceId"]] += 1
    import base64

    got_ids = {base64.b64decode(t).hex(): n for t, n in seen.items()}
    missing = [t for t in kept_ids if t not in got_ids]
    dup = sum(1 for n in got_ids.values() if n > 1)
    rest = [t for t in all_ids if t not in kept_ids]
    base = sum(1 for t in rest if t in got_ids)
    print(
        f"traces: sent {len(all_ids)}, received {len(got_ids)} root spans ({spans} spans); must-keep (error/slow) "
        f"{len(kept_ids)}, missing {len(missing)}; baseline {base}/{len(rest)} = {100 * base / max(1, len(rest)):.1f}% "
        f"of the others; traces with a duplicated root span: {dup}"
    )
    if "--example" in sys.argv:
        print_example(run)
    sys.exit(0 if ok and not missing else 1)


def print_example(run: str) -> None:
    done = set()
    for line in open(f"{run}/capture/metrics.jsonl"):
        req = json.loads(line)
        for rm in req.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    if not m["name"].startswith("span_metrics") or m["name"] in done:
                        continue
                    done.add(m["name"])
                    kind = next(k for k in m if k in ("sum", "exponentialHistogram", "histogram"))
                    m = dict(m)
                    m[kind] = dict(m[kind])
                    m[kind]["dataPoints"] = m[kind]["dataPoints"][:1]
                    ex = {
                        "resourceMetrics": [
                            {
                                "resource": rm.get("resource"),
                                "scopeMetrics": [{"scope": sm.get("scope"), "metrics": [m]}],
                            }
                        ]
                    }
                    print(json.dumps(ex, indent=1))


if __name__ == "__main__":
    main()
