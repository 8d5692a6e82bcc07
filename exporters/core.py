"""The pure conversion core: plain records in, one W&B row + tables + alert signals out per export interval.

No threads, no I/O (one-off cap warnings go to ``logging``), no ``wandb``, no SDK types. Every per-interval
structure is bounded (latency sketches, top-N heaps, capped tables and series) and reset on ``flush``;
cross-interval state (error groups, cumulative metric streams, totals) is capped too.

Key grammar of the row (W&B groups panels by the prefix before the first ``/``)::

    <section>/<statistic>[@<attribute>=<value>]

- ``interval/time`` (unix seconds, the step metric), ``interval/seconds``
- ``http/requests|errors|error_rate|p50_ms|p95_ms|p99_ms|requests_total|errors_total`` from server spans, with
  breakdowns ``@http.route=<route>``, ``@http.request.method=<m>``, ``@status_class=2xx`` (requests only) and
  ``@worker=<id>`` per pre-forked worker (the resource's ``app.worker.id``, a stable gunicorn slot; spans without
  it get no worker series -- ``service.instance.id`` holds a pid, a new W&B key per restart)
- ``ai/calls|errors|input_tokens|output_tokens|cached_tokens|cost_usd|p50_ms|p95_ms|p99_ms`` from gen_ai spans with
  ``@gen_ai.request.model=<model>`` and ``@app.feature=<feature>``, plus ``ai/*_total`` running totals (see
  ``coreai``; the app's own ``app.ai.cost`` metric appears as ``app.ai.cost/delta`` and ``app.ai.cost/total``)
- ``logs/count@severity=<TRACE|DEBUG|INFO|WARN|ERROR|FATAL>``
- ``errors/occurrences``, ``errors/new_groups``, ``errors/groups``
- ``<metric name>/<statistic>[@<attr>=<value>]`` for metric points (see ``metricstate``)

Tables: ``recent_errors``, ``slowest_traces``, ``error_groups`` (only when non-empty, bounded rows).
"""

from __future__ import annotations

import heapq
import logging
import random
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from . import records as r
from .coreai import AiSection, as_int
from .errors import ErrorGroups
from .metricstate import BREAKDOWN_ATTRS, OVERFLOW, MetricState, status_class
from .stats import LogSketch

_STATUS_CLASS: dict = {}  # status code value -> "2xx"... ("" when not a status), filled lazily
logger = logging.getLogger(__name__)
WORKER_ATTR = "app.worker.id"  # resource attribute set by app.telemetry.init_worker (gunicorn post_fork)
SEVERITIES = ((4, "TRACE"), (8, "DEBUG"), (12, "INFO"), (16, "WARN"), (20, "ERROR"), (99, "FATAL"))
ERROR_COLUMNS = ["time", "trace_id", "route", "exception_type", "message", "fingerprint"]
SLOW_COLUMNS = ["time", "trace_id", "route", "method", "status_code", "duration_ms"]
GROUP_COLUMNS = ["fingerprint", "type", "message", "frame", "count", "first_seen", "last_seen", "sample_trace_ids"]


@dataclass(slots=True)
class Table:
    columns: list[str]
    rows: list[list]


@dataclass(slots=True)
class IntervalResult:
    row: dict
    tables: dict[str, Table]
    signals: r.Signals


@dataclass(slots=True)
class CoreConfig:
    max_series: int = 50
    breakdown_attrs: tuple = BREAKDOWN_ATTRS
    max_error_rows: int = 50
    slowest_n: int = 10
    max_error_groups: int = 500
    max_group_rows: int = 50
    latency_sample: int = 1000
    message_chars: int = 200
    cost_metric: str = "app.ai.cost"
    # model -> (usd per input token, usd per output token, usd per cached input token)
    pricing: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)


class _Lat:
    __slots__ = ("count", "errors", "sketch")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.sketch = LogSketch()


def severity_name(number: int) -> str:
    for upper, name in SEVERITIES:
        if number <= upper:
            return name
    return "FATAL"


class Aggregator:
    def __init__(self, config: CoreConfig | None = None, start_ns: int | None = None) -> None:
        self.cfg = config or CoreConfig()
        self.metrics = MetricState(self.cfg.max_series, self.cfg.breakdown_attrs)
        self.groups = ErrorGroups(self.cfg.max_error_groups)
        self._start_ns = start_ns
        self._totals: dict[str, float] = {}
        self._series: dict[str, set[str]] = {}
        self._warned: set[str] = set()
        self._cost_metric_seen = False
        self.dropped = 0  # malformed span records skipped
        self.ai = AiSection(self.cfg.pricing, self._capped)
        self._rng = random.Random(0x5EED)
        self._random = self._rng.random
        self._reset()

    def _reset(self) -> None:
        self._http: dict[str, _Lat] = {}  # "" = overall, "http.route=/x", "http.request.method=GET"
        self._overall = self._http[""] = _Lat()
        self._by_route: dict[str, _Lat] = {}  # raw route -> its (possibly __overflow__) entry of _http
        self._by_method: dict[str, _Lat] = {}
        self._by_worker: dict = {}  # app.worker.id -> its entry of _http
        self._status: dict[str, int] = {}
        self.ai.reset()
        self._logs: dict[str, int] = {}
        self._sample: list[float] = []
        self._seen_requests = 0
        self._slow: list[tuple] = []
        self._seq = 0
        self._errors: list[list] = []
        self._err_keys: set[tuple] = set()
        self._err_traces: dict[str, list[list]] = {}
        self._occurrences = 0
        self._new_groups: list[dict] = []
        self._dirty_groups = False
        self._first_ns = 0

    # -- spans ---------------------------------------------------------------------------------------------
    def add_spans(self, spans: Iterable[r.SpanRecord]) -> None:
        for s in spans:
            try:
                attrs = s.attributes
                if s.kind == r.SERVER:
                    self._server(s, attrs)
                elif "gen_ai.operation.name" in attrs or "gen_ai.request.model" in attrs:
                    self.ai.add(s, attrs)
                if s.exceptions:
                    for e in s.exceptions:
                        self._error(s.end_ns, s.trace_id, str(attrs.get("http.route") or ""), e.type, e.message,
                                    e.stacktrace)
            except Exception:  # one malformed record never poisons the interval (counted, see ``dropped``)
                self.dropped += 1

    def _capped(self, section: str, series: str) -> str:
        seen = self._series.setdefault(section, set())
        if series in seen or len(seen) < self.cfg.max_series:
            seen.add(series)
            return series
        if section not in self._warned:
            self._warned.add(section)
            logger.warning("%s/* has more than %d breakdown series; further series are reported as %s "
                           "(raise WANDB_EXPORT_MAX_SERIES to change)", section, self.cfg.max_series, OVERFLOW)
        return series.split("=", 1)[0] + "=" + OVERFLOW

    def _lat(self, table: dict, key: str) -> _Lat:
        x = table.get(key)
        if x is None:
            x = table[key] = _Lat()
        return x

    def _part(self, index: dict, attr: str, value, ms: float, err: bool, bucket: int) -> None:
        """One server span into its ``@attr=value`` series (``index`` caches raw value -> capped entry)."""
        x = index.get(value)
        if x is None:
            x = index[value] = self._lat(self._http, self._capped("http", f"{attr}={value}"))
        x.count += 1
        x.errors += err
        x.sketch.add_keyed(ms, bucket)

    def _server(self, s: r.SpanRecord, attrs) -> None:
        ms = (s.end_ns - s.start_ns) / 1e6
        if ms < 0:
            ms = 0.0
        code = attrs.get("http.response.status_code") or attrs.get("http.status_code")
        cls = _STATUS_CLASS.get(code)
        if cls is None and code is not None:
            cls = status_class(code) or ""
            if len(_STATUS_CLASS) < 1000:
                _STATUS_CLASS[code] = cls
        err = s.is_error or (cls == "5xx")
        route = attrs.get("http.route") or s.name
        if type(route) is not str:
            route = str(route)
        method = attrs.get("http.request.method") or attrs.get("http.method") or ""
        if type(method) is not str:
            method = str(method)
        overall = self._overall
        bucket = overall.sketch.key(ms)
        overall.count += 1
        overall.errors += err
        overall.sketch.add_keyed(ms, bucket)
        self._part(self._by_route, "http.route", route, ms, err, bucket)
        if method:
            self._part(self._by_method, "http.request.method", method, ms, err, bucket)
        worker = s.resource.get(WORKER_ATTR)
        if worker is not None:
            self._part(self._by_worker, "worker", worker, ms, err, bucket)
        if cls:
            self._status[cls] = self._status.get(cls, 0) + 1
        # bounded reservoir (algorithm R) of latencies for the alert rules
        self._seen_requests += 1
        if len(self._sample) < self.cfg.latency_sample:
            self._sample.append(ms)
        else:
            j = int(self._random() * self._seen_requests)
            if j < self.cfg.latency_sample:
                self._sample[j] = ms
        if len(self._slow) < self.cfg.slowest_n or ms > self._slow[0][0]:
            self._seq += 1
            item = (ms, self._seq, s.end_ns, s.trace_id, route, method, as_int(code))
            if len(self._slow) < self.cfg.slowest_n:
                heapq.heappush(self._slow, item)
            else:
                heapq.heapreplace(self._slow, item)
        if self._err_traces and s.trace_id in self._err_traces:
            for row in self._err_traces.pop(s.trace_id):
                row[2] = row[2] or route
        if err and not s.exceptions:
            etype = f"HTTP {code}" if cls == "5xx" else "span status ERROR"
            self._error(s.end_ns, s.trace_id, route, etype, s.status_message or f"{method} {route}".strip(), "")
        if not self._first_ns:
            self._first_ns = s.start_ns

    # -- errors --------------------------------------------------------------------------------------------
    def _error(self, time_ns: int, trace_id: str | None, route: str, etype: str, message: str, stack: str) -> None:
        group, new = self.groups.record(etype or "Error", message or "", stack or "", trace_id, time_ns)
        key = (trace_id, group.fingerprint)
        if trace_id and key in self._err_keys:
            group.count -= 1  # the same error seen again on an ancestor span of the same trace
            return
        self._occurrences += 1
        self._dirty_groups = True
        if new:
            self._new_groups.append(group.as_dict())
        if trace_id and len(self._err_keys) < 10_000:
            self._err_keys.add(key)
        if len(self._errors) < self.cfg.max_error_rows:
            # the group's normalized, content-free message: never the raw one (it may quote the user's input)
            row = [time_ns / 1e9, trace_id or "", route or "", etype, group.message[: self.cfg.message_chars],
                   group.fingerprint]
            self._errors.append(row)
            if trace_id and not route:
                self._err_traces.setdefault(trace_id, []).append(row)

    # -- metrics and logs ----------------------------------------------------------------------------------
    def add_metrics(self, points: Iterable[r.MetricPoint]) -> None:
        self.metrics.add(points)

    def add_logs(self, logs: Iterable[r.LogRecord]) -> None:
        for rec in logs:
            number = rec.severity_number or 0
            sev = severity_name(number or 9)  # unspecified severity counts as INFO
            self._logs[sev] = self._logs.get(sev, 0) + 1
            if number >= 17:
                body = rec.body if isinstance(rec.body, str) else str(rec.body)
                # whole body: the group normalizes it (content-free) before anything is cut
                self._error(rec.time_ns, rec.trace_id, "", f"log:{rec.scope or 'root'}", body, "")

    # -- flush ---------------------------------------------------------------------------------------------
    def flush(self, now_ns: int) -> IntervalResult:
        from .coreflush import build_result  # split to keep modules small

        start = self._start_ns if self._start_ns is not None else (self._first_ns or now_ns)
        result = build_result(self, start, now_ns)
        self._start_ns = now_ns
        self._reset()
        return result
