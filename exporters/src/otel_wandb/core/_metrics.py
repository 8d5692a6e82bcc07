"""Metric points -> one row per interval (pure; used by ``core.Aggregator``).

Per metric name (``<name>/<stat>`` overall, ``<name>/<stat>@<attr>=<value>`` per breakdown series):
- sums: ``delta`` (this interval's increase -- for a non-monotonic sum, the change of its level) and ``total``
  (running total of the deltas since the exporter started -- for a non-monotonic sum, the current level);
- gauges: ``last`` (the latest point's value);
- histograms (explicit and base2 exponential, delta or cumulative):
  ``count``, ``rate`` (per second), ``mean``, ``p50``, ``p95``, ``p99`` (see ``stats`` for the estimators).
Cumulative points are diffed per stream (name + attributes + resource) by ``cumulative.Streams``: late and
duplicate points are dropped, resets follow the start time, the first point of a stream follows the collector's
``cumulativetodelta`` ``initial_value: auto``, at most ``max_streams`` streams are kept (see there).
Breakdowns are one attribute at a time from an allow-list; ``status_class`` (``2xx``...) derives from
``http.response.status_code``. At most ``max_series`` breakdown series per metric: later ones go to
``<attr>=__overflow__`` with one warning per metric.

One-off warnings (caps reached) are not logged here: they go to ``warn(logger, msg, *args)`` (the aggregator
collects them and the pipeline logs them after releasing its lock -- a log handler that exports synchronously
into the pipeline would otherwise deadlock on it). Without ``warn`` they are logged directly.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import overload

from otel_wandb import records as r
from otel_wandb.core._cumulative import StreamKey, Streams, Value
from otel_wandb.core._stats import QUANTILES, ExpHist, ExplicitHist, Hist
from otel_wandb.core._validate import label

logger = logging.getLogger(__name__)

OVERFLOW = "__overflow__"
Warn = Callable[..., None]  # (logger, msg, *args)
BREAKDOWN_ATTRS = (
    "http.route",
    "http.request.method",
    "gen_ai.request.model",
    "gen_ai.token.type",
    "app.feature",
    "error.type",
)
STATUS_ATTRS = ("http.response.status_code", "http.status_code")
_FAMILY = {r.EXP_HISTOGRAM: r.HISTOGRAM}  # explicit and exponential points of one histogram merge


def status_class(code: object) -> str | None:
    if not isinstance(code, str | bytes | int | float):  # an attribute value: None, a list... is no status
        return None
    try:
        c = int(code)
    except (TypeError, ValueError):
        return None
    return f"{c // 100}xx" if 100 <= c < 600 else None


def _attrs_key(attrs: r.Attributes) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in attrs.items()))


class _Acc:
    __slots__ = ("delta", "hist", "kind", "last")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.delta = 0.0
        self.last: float | None = None
        self.hist: Hist | None = None


class MetricState:
    def __init__(
        self,
        max_series: int = 50,
        breakdown_attrs: Iterable[str] = BREAKDOWN_ATTRS,
        max_streams: int = 10_000,
        max_metrics: int = 300,
        *,
        process_start_ns: int | None = None,
        warn: Warn | None = None,
    ) -> None:
        self.max_metrics = max_metrics  # distinct metric names (W&B allows < 10,000 keys per project)
        self.max_series = max_series
        self.breakdown_attrs = tuple(breakdown_attrs)
        start = time.time_ns() if process_start_ns is None else process_start_ns
        self._warn = warn or (lambda log, msg, *args: log.warning(msg, *args))
        self.streams = Streams(max_streams, start, self._stream_cap, self._decrease)
        self._acc: dict[tuple[str, str], _Acc] = {}
        self._totals: dict[tuple[str, str], float] = {}
        self._series: dict[str, set[str]] = {}
        self._warned: set[object] = set()  # metric names; tuples for the other one-off warnings
        self.seen_names: set[str] = set()
        self._kinds: dict[str, str] = {}  # metric name -> the instrument kind it first came with
        self.sum_deltas: dict[str, float] = {}  # overall sum delta per metric name this interval
        self.flush_errors = 0  # streams dropped from an interval because they could not be summarized
        self.watch: set[str] = set()  # sum metrics whose per-point deltas the aggregator reads (the cost metric)
        self.watched: list[tuple[r.MetricPoint, float]] = []

    # -- input ---------------------------------------------------------------------------------------------
    def add(self, points: Iterable[r.MetricPoint]) -> list[str]:
        """Add valid points (``_validate.point_problem`` passed); returns the reasons of the ones rejected here: a
        name already used with another instrument kind, or one that failed (a malformed point never poisons the
        interval)."""
        rejected: list[str] = []
        for p in points:
            kind = self._kinds.get(p.name)
            if kind is not None and _FAMILY.get(kind, kind) != _FAMILY.get(p.kind, p.kind):
                rejected.append("type_conflict")
                if ("kind", p.name) not in self._warned:
                    self._warned.add(("kind", p.name))
                    self._warn(
                        logger,
                        "metric %s arrives as %s after %s: these points are rejected (one name, one instrument kind)",
                        p.name,
                        p.kind,
                        kind,
                    )
                continue
            try:
                self._add(p)
            except Exception:
                logger.debug("dropping malformed metric point %s", getattr(p, "name", "?"), exc_info=True)
                rejected.append("malformed")
        return rejected

    def _series_for(self, p: r.MetricPoint) -> list[str]:
        out = [""]
        attrs = p.attributes
        if not attrs:
            return out
        for a in self.breakdown_attrs:
            v = attrs.get(a)
            if v is not None:
                out.append(self._capped(p.name, f"{a}={label(v)}", a))
        for a in STATUS_ATTRS:
            cls = status_class(attrs.get(a))
            if cls:
                out.append(self._capped(p.name, f"status_class={cls}", "status_class"))
                break
        return out

    def _capped(self, name: str, series: str, attr: str) -> str:
        seen = self._series.setdefault(name, set())
        if series in seen:
            return series
        if len(seen) < self.max_series:
            seen.add(series)
            return series
        if name not in self._warned:
            self._warned.add(name)
            self._warn(
                logger,
                "metric %s has more than %d breakdown series; further series are reported as %s "
                "(raise WANDB_EXPORT_MAX_SERIES to change)",
                name,
                self.max_series,
                OVERFLOW,
            )
        return f"{attr}={OVERFLOW}"

    def _stream_cap(self) -> None:
        if ("streams",) not in self._warned:
            self._warned.add(("streams",))
            self._warn(
                logger,
                "more than %d cumulative metric streams: the least recently seen are forgotten (or a "
                "new one is not kept while all were seen this interval); one that comes back restarts from a "
                "baseline (its increase meanwhile is not counted)",
                self.streams.max_streams,
            )

    def _decrease(self, p: r.MetricPoint) -> None:
        if ("decrease", p.name) not in self._warned:
            self._warned.add(("decrease", p.name))
            self._warn(
                logger,
                "cumulative metric %s decreased without a new start time (two writers with one "
                "stream identity?): the decrease is ignored",
                p.name,
            )

    def hist_delta(self, p: r.MetricPoint) -> ExpHist | ExplicitHist | None:
        """A histogram point's new part: the point itself (delta) or its difference to its stream's previous point
        (cumulative: late and duplicate points give None)."""
        h = ExpHist.from_point(p) if p.kind == r.EXP_HISTOGRAM else ExplicitHist.from_point(p)
        return self._new_part(p, h, True) if p.temporality == r.CUMULATIVE else h

    @overload
    def _new_part(self, p: r.MetricPoint, value: float, monotonic: bool) -> float | None: ...
    @overload
    def _new_part(self, p: r.MetricPoint, value: Hist, monotonic: bool) -> Hist | None: ...
    def _new_part(self, p: r.MetricPoint, value: Value, monotonic: bool) -> Value | None:
        key: StreamKey = (p.name, _attrs_key(p.attributes), _attrs_key(p.resource))
        return self.streams.new_part(key, p, value, monotonic)

    def _add(self, p: r.MetricPoint) -> None:
        kind = p.kind
        if p.name not in self.seen_names:
            if len(self.seen_names) >= self.max_metrics:
                if ("names",) not in self._warned:
                    self._warned.add(("names",))
                    self._warn(
                        logger,
                        "more than %d metric names: %s and later new names are not exported",
                        self.max_metrics,
                        p.name,
                    )
                return
            self.seen_names.add(p.name)
            self._kinds[p.name] = kind
        cumulative = p.temporality == r.CUMULATIVE
        if kind in (r.HISTOGRAM, r.EXP_HISTOGRAM):
            h = self.hist_delta(p)
            if h is None or h.count <= 0:
                return
            for s in self._series_for(p):
                acc = self._get(p.name, s, kind)
                acc.hist = h if acc.hist is None else acc.hist.merged(h)
            return
        if kind == r.SUM:
            v = float(p.value)
            if cumulative:
                new = self._new_part(p, v, bool(p.monotonic))
                v = 0.0 if new is None else new  # nothing new: the row still has the metric (delta 0)
            self.sum_deltas[p.name] = self.sum_deltas.get(p.name, 0.0) + v
            if p.name in self.watch:
                self.watched.append((p, v))
            for s in self._series_for(p):
                acc = self._get(p.name, s, kind)
                acc.delta += v
            return
        if kind == r.GAUGE:
            for s in self._series_for(p):
                self._get(p.name, s, kind).last = float(p.value)

    def _get(self, name: str, series: str, kind: str) -> _Acc:
        acc = self._acc.get((name, series))
        if acc is None:
            acc = self._acc[(name, series)] = _Acc(kind)
        return acc

    # -- output --------------------------------------------------------------------------------------------
    def flush(self, interval_s: float, row: dict[str, float]) -> None:
        interval_s = max(interval_s, 1e-9)
        for (name, series), acc in self._acc.items():
            try:
                self._write(name, series, acc, interval_s, row)
            except Exception as exc:  # this stream is dropped from this interval (once logged); the rest is written
                if ("flush", name) not in self._warned:
                    self._warned.add(("flush", name))
                    self._warn(
                        logger,
                        "metric %s could not be summarized (%s: %s): dropped from this interval",
                        name,
                        type(exc).__name__,
                        exc,
                    )
                self.flush_errors += 1
        self._acc = {}
        self.sum_deltas = {}
        self.watched = []
        self.streams.next_interval()

    def _write(self, name: str, series: str, acc: _Acc, interval_s: float, row: dict[str, float]) -> None:
        suffix = f"@{series}" if series else ""
        out: dict[str, float] = {}
        if acc.kind == r.SUM:
            tot = self._totals.get((name, series), 0.0) + acc.delta
            out[f"{name}/delta{suffix}"] = acc.delta
            out[f"{name}/total{suffix}"] = tot
        elif acc.kind == r.GAUGE:
            if acc.last is not None:
                out[f"{name}/last{suffix}"] = acc.last
        elif acc.hist is not None:
            h = acc.hist
            out[f"{name}/count{suffix}"] = h.count
            out[f"{name}/rate{suffix}"] = h.count / interval_s
            if h.count:
                out[f"{name}/mean{suffix}"] = h.sum / h.count
            for label_, q in QUANTILES:
                est = h.quantile(q)
                if est is not None:
                    out[f"{name}/{label_}{suffix}"] = est
        if not all(math.isfinite(v) for v in out.values()):
            raise ValueError("a statistic is not finite")
        if acc.kind == r.SUM:
            self._totals[(name, series)] = out[f"{name}/total{suffix}"]
        row.update(out)
