"""gen_ai client spans -> the ``ai/*`` section of the row (pure; used by ``core.Aggregator``).

Per interval: ``ai/calls|errors|input_tokens|output_tokens|cached_tokens|cost_usd|p50_ms|p95_ms|p99_ms`` overall and
per ``@gen_ai.request.model=<model>`` / ``@app.feature=<feature>`` (under the aggregator's series cap), plus the
``ai/*_total`` running totals. Cost comes from the pricing table: the exact model name, else the longest listed
name the model extends with ``-`` (dated snapshots such as ``gpt-4o-mini-2024-07-18``).
"""

from __future__ import annotations

from collections.abc import Callable

from otel_wandb import records as r
from otel_wandb.core._stats import QUANTILES, LogSketch
from otel_wandb.core._validate import label
from otel_wandb.pricing import PriceList


def as_int(v: object) -> int:
    if not isinstance(v, str | bytes | int | float):  # an attribute value: None, a list... counts 0
        return 0
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


class AiStats:
    __slots__ = ("cached", "calls", "cost", "errors", "inp", "out", "sketch")

    def __init__(self) -> None:
        self.calls = self.errors = self.inp = self.out = self.cached = 0
        self.cost = 0.0
        self.sketch = LogSketch()


class AiSection:
    def __init__(self, pricing: PriceList, capped: Callable[[str, str], str]) -> None:
        self.pricing = pricing
        self._capped = capped  # (section, series) -> series or its overflow series
        self.series: dict[str, AiStats] = {}  # "" = overall, "gen_ai.request.model=m", "app.feature=f"

    def reset(self) -> None:
        self.series = {}

    def add(self, s: r.SpanRecord, attrs: r.Attributes) -> None:
        ms = max(0.0, (s.end_ns - s.start_ns) / 1e6)
        model = label(attrs.get("gen_ai.request.model") or attrs.get("gen_ai.response.model") or "unknown")
        feature = label(attrs.get("app.feature") or "unknown")
        inp = as_int(attrs.get("gen_ai.usage.input_tokens"))
        out = as_int(attrs.get("gen_ai.usage.output_tokens"))
        cached = as_int(attrs.get("gen_ai.usage.cache_read.input_tokens"))
        found = self.pricing.lookup(model)
        cost = found[1].cost(inp, out, cached) if found else 0.0
        err = s.is_error or "error.type" in attrs
        for key in ("", "gen_ai.request.model=" + model, "app.feature=" + feature):
            if key and key not in self.series:
                key = self._capped("ai", key)
            x = self.series.get(key)
            if x is None:
                x = self.series[key] = AiStats()
            x.calls += 1
            x.errors += err
            x.inp += inp
            x.out += out
            x.cached += cached
            x.cost += cost
            x.sketch.add(ms)

    def flush(self, row: dict[str, float], totals: dict[str, float]) -> float:
        """Write this interval's ``ai/*`` keys into ``row`` (running totals kept in ``totals``); returns the
        interval's span-priced cost."""
        span_cost = 0.0
        for key, x in self.series.items():
            sfx = f"@{key}" if key else ""
            row[f"ai/calls{sfx}"] = x.calls
            row[f"ai/errors{sfx}"] = x.errors
            row[f"ai/input_tokens{sfx}"] = x.inp
            row[f"ai/output_tokens{sfx}"] = x.out
            row[f"ai/cached_tokens{sfx}"] = x.cached
            row[f"ai/cost_usd{sfx}"] = x.cost
            for stat, q in QUANTILES:
                v = x.sketch.quantile(q)
                if v is not None:
                    row[f"ai/{stat}_ms{sfx}"] = v
            if not key:
                span_cost = x.cost
                for name, val in (
                    ("calls", x.calls),
                    ("input_tokens", x.inp),
                    ("output_tokens", x.out),
                    ("cached_tokens", x.cached),
                    ("cost_usd", x.cost),
                ):
                    totals[f"ai/{name}_total"] = totals.get(f"ai/{name}_total", 0) + val
                    row[f"ai/{name}_total"] = totals[f"ai/{name}_total"]
        return span_cost
