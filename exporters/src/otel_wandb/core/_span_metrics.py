"""The ``http/*`` and ``ai/*`` sections from a collector's ``span_metrics`` streams (pure; used by the aggregator).

Behind gateway collectors (collector/gateway.yaml) the bridge receives only tail-sampled traces, so counting spans
would undercount; the ``span_metrics`` connectors of the per-host agents (collector/agent.yaml, before load
balancing; docs/scaling.md) see every span instead and send, per stream (service instance x collector x route,
method, status / model, feature), cumulative points:

- ``span_metrics.http.server.duration``: exponential histogram of server span durations (``http.route``,
  ``http.request.method``, ``http.response.status_code``, ``status.code``; resource ``app.worker.id``);
- ``span_metrics.gen_ai.client.duration``: the same for GenAI client spans (``gen_ai.request.model``,
  ``app.feature``, ``status.code``, ``error.type``);
- and the app's own ``gen_ai.client.token.usage`` (per ``gen_ai.token.type``) and ``app.ai.cost``, unsampled.

Each stream's points are diffed (``_cumulative.Streams``: late and duplicate points dropped, resets by start time),
and the deltas of all streams -- every collector, every instance -- are added: counts exact, percentiles from the
merged exponential histograms. The row keys are the span-derived section's, so the dashboard, the report and the
alert rules do not change with the topology. One source of truth: while this section is the source, spans still
make the error tables, error groups and slowest traces (every error trace is sampled), never the counts; and the
duplicate views of the same requests (``http.server.request.duration``, ``gen_ai.client.operation.duration``,
the ``*.calls`` sums and the token histogram) are never written as metric keys: http/* and ai/* are the one place
requests and AI calls are counted, whatever the topology (export traces to have them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from otel_wandb import records as r
from otel_wandb.core._stats import QUANTILES, ExpHist, ExplicitHist
from otel_wandb.core._validate import label

HTTP_DURATION = "span_metrics.http.server.duration"
AI_DURATION = "span_metrics.gen_ai.client.duration"
TOKEN_USAGE = "gen_ai.client.token.usage"
# views of requests the http/* and ai/* sections already hold
DUPLICATES = frozenset(
    {
        "http.server.request.duration",
        "gen_ai.client.operation.duration",
        TOKEN_USAGE,
        "span_metrics.http.server.calls",
        "span_metrics.gen_ai.client.calls",
        HTTP_DURATION,
        AI_DURATION,
    }
)
WORKER_ATTR = "app.worker.id"
_QS = tuple(q for _, q in QUANTILES)
_UNIT_MS = {"s": 1000.0, "ms": 1.0, "us": 0.001, "ns": 1e-6}
Hist = ExpHist | ExplicitHist


def is_span_metric(name: str) -> bool:
    return name in (HTTP_DURATION, AI_DURATION)


class HistStats:
    """One series: requests (or calls), errors and their latency histogram, in the histogram's unit."""

    __slots__ = ("count", "errors", "hist", "to_ms")

    def __init__(self, to_ms: float) -> None:
        self.count = 0
        self.errors = 0
        self.hist: Hist | None = None
        self.to_ms = to_ms

    def add(self, h: Hist, error: bool, coarser: dict[int, ExpHist] | None = None) -> None:
        """``coarser``: ``h`` downscaled, by scale, shared by the series one point goes into (each downscales it to
        its own scale at most once per point: the same merge, without repeating the downscale per series)."""
        self.count += h.count
        self.errors += h.count if error else 0
        acc = self.hist
        if acc is None:
            self.hist = h
            return
        if coarser is not None and isinstance(acc, ExpHist) and isinstance(h, ExpHist) and acc.scale < h.scale:
            hd = coarser.get(acc.scale)
            if hd is None:
                hd = coarser[acc.scale] = h.downscaled(acc.scale)
            h = hd
        self.hist = acc.merged(h)

    def quantile_ms(self, q: float) -> float | None:
        return self.quantiles_ms((q,))[0]

    def quantiles_ms(self, qs: Sequence[float]) -> list[float | None]:
        """``[self.quantile_ms(q) for q in qs]``, the histogram's buckets sorted once."""
        if self.hist is None:
            return [None] * len(qs)
        to_ms = self.to_ms
        return [None if v is None else v * to_ms for v in self.hist.quantiles(qs)]


def _error(attrs: r.Attributes, code_class: str | None) -> bool:
    return attrs.get("status.code") == "STATUS_CODE_ERROR" or code_class == "5xx" or "error.type" in attrs


class SpanMetricsSection:
    """``capped(section, series)`` is the aggregator's series cap; ``status_class(code)`` its 2xx/5xx mapping."""

    def __init__(self, capped: Callable[[str, str], str], status_class: Callable[[object], str | None]) -> None:
        self._capped = capped
        self._status_class = status_class
        self.reset()

    def reset(self) -> None:
        self.http: dict[str, HistStats] = {}  # "" = overall, "http.route=/x", "http.request.method=GET", "worker=0"
        self.status: dict[str, int] = {}
        self.ai: dict[str, HistStats] = {}  # "", "gen_ai.request.model=m", "app.feature=f"
        self.tokens: dict[tuple[str, str], float] = {}  # (series, token type) -> tokens
        self.cost: dict[str, float] = {}  # series -> USD (from the app's cost metric)

    def _series(self, table: dict[str, HistStats], section: str, key: str, to_ms: float) -> HistStats:
        if key:
            key = self._capped(section, key)
        x = table.get(key)
        if x is None:
            x = table[key] = HistStats(to_ms)
        return x

    def add_duration(self, p: r.MetricPoint, h: Hist) -> None:
        """One stream's new part (already diffed) of a span_metrics duration histogram."""
        attrs, to_ms = p.attributes, _UNIT_MS.get(p.unit, 1000.0)
        if p.name == HTTP_DURATION:
            code = attrs.get("http.response.status_code")
            cls = self._status_class(code) if code is not None else None
            err = _error(attrs, cls)
            method = label(attrs.get("http.request.method") or "")
            route = label(attrs.get("http.route") or method or "unknown")
            keys = ["", f"http.route={route}"] + ([f"http.request.method={method}"] if method else [])
            worker = p.resource.get(WORKER_ATTR)
            if worker is not None:
                keys.append(f"worker={label(worker)}")
            coarser: dict[int, ExpHist] = {}
            for key in keys:
                self._series(self.http, "http", key, to_ms).add(h, err, coarser)
            if cls:
                self.status[cls] = self.status.get(cls, 0) + h.count
        else:
            err = _error(attrs, None)
            model = label(attrs.get("gen_ai.request.model") or "unknown")
            feature = label(attrs.get("app.feature") or "unknown")
            coarser = {}
            for key in ("", f"gen_ai.request.model={model}", f"app.feature={feature}"):
                self._series(self.ai, "ai", key, to_ms).add(h, err, coarser)

    def add_tokens(self, p: r.MetricPoint, h: Hist) -> None:
        kind = str(p.attributes.get("gen_ai.token.type") or "")
        if kind not in ("input", "output"):
            return
        model = label(p.attributes.get("gen_ai.request.model") or "unknown")
        for key in ("", self._capped("ai", f"gen_ai.request.model={model}")):
            self.tokens[(key, kind)] = self.tokens.get((key, kind), 0.0) + h.sum

    def add_cost(self, p: r.MetricPoint, delta: float) -> None:
        """The app's cost metric (its delta this interval) as ai/cost_usd per model and feature."""
        keys = [""]
        for attr in ("gen_ai.request.model", "app.feature"):
            value = p.attributes.get(attr)
            if value is not None:
                keys.append(self._capped("ai", f"{attr}={label(value)}"))
        for key in keys:
            self.cost[key] = self.cost.get(key, 0.0) + delta

    def write_ai(self, row: dict[str, float], totals: dict[str, float]) -> None:
        """The ai/* keys (calls, errors, percentiles from the histograms; tokens and cost from the app's metrics)."""
        keys = set(self.ai) | {k for k, _ in self.tokens} | set(self.cost)
        for key in keys:
            sfx = f"@{key}" if key else ""
            x = self.ai.get(key)
            if x is not None:
                row[f"ai/calls{sfx}"] = x.count
                row[f"ai/errors{sfx}"] = x.errors
                for (name, _), v in zip(QUANTILES, x.quantiles_ms(_QS), strict=True):
                    if v is not None:
                        row[f"ai/{name}_ms{sfx}"] = v
            for kind in ("input", "output"):
                if (key, kind) in self.tokens:
                    row[f"ai/{kind}_tokens{sfx}"] = self.tokens[(key, kind)]
            if key in self.cost:
                row[f"ai/cost_usd{sfx}"] = self.cost[key]
        overall = {
            "calls": self.ai[""].count if "" in self.ai else 0,
            "input_tokens": self.tokens.get(("", "input")),
            "output_tokens": self.tokens.get(("", "output")),
            "cost_usd": self.cost.get(""),
        }
        for name, value in overall.items():
            if value is not None and (value or f"ai/{name}_total" in totals):
                totals[f"ai/{name}_total"] = totals.get(f"ai/{name}_total", 0) + value
                row[f"ai/{name}_total"] = totals[f"ai/{name}_total"]

    def latency_sample(self, size: int) -> list[float]:
        """Representative server latencies (ms) for the alert rules' windowed percentiles: the merged histogram's
        quantiles at evenly spaced ranks, each standing for the same share of the interval's requests."""
        overall = self.http.get("")
        if overall is None or overall.hist is None or not overall.count:
            return []
        n = min(size, overall.count, 200)
        values = overall.quantiles_ms([(i + 0.5) / n for i in range(n)])
        return [v for v in values if v is not None]
