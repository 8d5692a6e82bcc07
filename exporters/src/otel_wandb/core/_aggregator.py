"""The ``Aggregator``: records in, one row + tables + signals out per interval (see the package docstring)."""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

from otel_wandb import records as r
from otel_wandb.core._ai import AiSection, as_int
from otel_wandb.core._errors import ErrorSection
from otel_wandb.core._metrics import BREAKDOWN_ATTRS, OVERFLOW, MetricState, status_class
from otel_wandb.core._span_metrics import DUPLICATES, TOKEN_USAGE, HistStats, SpanMetricsSection, is_span_metric
from otel_wandb.core._stats import QUANTILES, LogSketch
from otel_wandb.core._validate import label, log_problem, point_problem, span_problem
from otel_wandb.pricing import PriceList

_STATUS_CLASS: dict[object, str] = {}  # status code value -> "2xx"... ("" when not a status), filled lazily
logger = logging.getLogger(__name__)
WORKER_ATTR = "app.worker.id"  # resource attribute set by app.telemetry.init_worker (gunicorn post_fork)
SEVERITIES = ((4, "TRACE"), (8, "DEBUG"), (12, "INFO"), (16, "WARN"), (20, "ERROR"), (99, "FATAL"))
_TEXT_SEVERITY = (("error", 17), ("fatal", 21), ("critical", 21), ("warn", 13), ("debug", 5), ("trace", 1))
ERROR_COLUMNS = ["time", "trace_id", "route", "exception_type", "message", "fingerprint"]
SLOW_COLUMNS = ["time", "trace_id", "route", "method", "status_code", "duration_ms"]
GROUP_COLUMNS = ["fingerprint", "type", "message", "frame", "count", "first_seen", "last_seen", "sample_trace_ids"]
LogWarning: TypeAlias = tuple[logging.Logger, str, tuple[object, ...]]  # (logger, msg, args), see take_warnings
_K = TypeVar("_K")
_QS = tuple(q for _, q in QUANTILES)


@dataclass(slots=True)
class Table:
    columns: list[str]
    rows: list[list[str | float]]


@dataclass(slots=True)
class IntervalResult:
    row: dict[str, float]
    tables: dict[str, Table]
    signals: r.Signals


@dataclass(slots=True)
class CoreConfig:
    max_series: int = 50
    breakdown_attrs: tuple[str, ...] = BREAKDOWN_ATTRS
    max_error_rows: int = 50  # recent_errors rows per table: the first ones since the last tables
    slowest_n: int = 10
    max_error_groups: int = 500
    max_group_rows: int = 50
    latency_sample: int = 1000
    message_chars: int = 200
    cost_metric: str = "app.ai.cost"
    # distinct row keys per run (W&B allows < 10,000 per project): new keys past it are dropped, counted, warned
    max_keys: int = 5000
    pricing: PriceList = field(default_factory=PriceList)
    # where http/* and ai/* come from: "spans", "span_metrics" (a gateway collector's connector: see
    # _span_metrics), or "auto": span_metrics from the first such point on, spans until then
    request_source: str = "auto"
    # the tables (recent_errors, slowest_traces, error_groups) at most every this many seconds (each table logged is a
    # W&B artifact version): between two, their rows add up -- the first error rows, the slowest traces, the groups
    # -- and an interval is written without them. 0: with every interval. flush(tables=True) forces them.
    tables_interval_s: float = 0.0


class _Lat:
    __slots__ = ("count", "errors", "sketch")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.sketch = LogSketch()

    def quantile_ms(self, q: float) -> float | None:
        return self.sketch.quantile(q)

    def quantiles_ms(self, qs: Sequence[float]) -> list[float | None]:
        return [self.sketch.quantile(q) for q in qs]


def log_warnings(warnings: Iterable[LogWarning]) -> None:
    """Log what ``Aggregator.take_warnings`` returned (call it without holding the aggregator's lock)."""
    for log, msg, args in warnings:
        log.warning(msg, *args)


def severity_number(number: int, text: str = "") -> int:
    """The OTel severity number; when unset (0), from the text's start, any case (as otel-collector.yaml routes a
    record to error.log: ``(?i)^(error|fatal|critical)``), else INFO (9)."""
    if number:
        return number
    text = (text or "").lower()
    return next((n for prefix, n in _TEXT_SEVERITY if text.startswith(prefix)), 9)


def severity_name(number: int) -> str:
    for upper, name in SEVERITIES:
        if number <= upper:
            return name
    return "FATAL"


def _suffix(key: str) -> str:
    return f"@{key}" if key else ""


class Aggregator:
    """``start_ns``: start of the first interval (default: the first span's start). ``process_start_ns``: when
    this process started watching (default: now), for the first point of cumulative streams (``metricstate``)."""

    MAX_WARNINGS = 100

    def __init__(
        self, config: CoreConfig | None = None, start_ns: int | None = None, *, process_start_ns: int | None = None
    ) -> None:
        self.cfg = config or CoreConfig()
        self.warnings: list[LogWarning] = []
        self.metrics = MetricState(
            self.cfg.max_series, self.cfg.breakdown_attrs, process_start_ns=process_start_ns, warn=self._warn
        )
        self.errors = ErrorSection(self.cfg.max_error_groups, self.cfg.max_error_rows, self.cfg.message_chars)
        self.groups = self.errors.groups
        self._start_ns = start_ns
        self._tables_since_ns: int | None = None  # start of the first interval the next tables cover
        self._totals: dict[str, float] = {}
        self._series: dict[str, set[str]] = {}
        self._warned: set[str] = set()
        self._warned_rejects: set[tuple[str, str]] = set()
        self._cost_metric_seen = False
        self.keys: set[str] = set()  # every row key this run has had (bounded by max_keys)
        self.dropped = 0  # records rejected since the start (all signals; per interval and reason in the row)
        self._rejected: dict[tuple[str, str], int] = {}  # (signal, reason) -> records rejected this interval
        self.ai = AiSection(self.cfg.pricing, self._capped)
        self.span_metrics = SpanMetricsSection(self._capped, status_class)
        self.metrics.watch.add(self.cfg.cost_metric)
        self.from_span_metrics = self.cfg.request_source == "span_metrics"  # else spans (until one arrives: auto)
        self._rng = random.Random(0x5EED)
        self._random = self._rng.random
        self._reset_tables()
        self._reset()

    def _warn(self, log: logging.Logger, msg: str, *args: object) -> None:
        if len(self.warnings) < self.MAX_WARNINGS:
            self.warnings.append((log, msg, args))

    def take_warnings(self) -> list[LogWarning]:
        """The warnings collected since the last call (for ``log_warnings``)."""
        out, self.warnings = self.warnings, []
        return out

    def _reset(self) -> None:
        self._http: dict[str, _Lat] = {}  # "" = overall, "http.route=/x", "http.request.method=GET"
        self._overall = self._http[""] = _Lat()
        self._by_route: dict[str, _Lat] = {}  # raw route -> its (possibly __overflow__) entry of _http
        self._by_method: dict[str, _Lat] = {}
        self._by_worker: dict[object, _Lat] = {}  # app.worker.id -> its entry of _http
        self._status: dict[str, int] = {}
        self.ai.reset()
        self.span_metrics.reset()
        self._logs: dict[str, int] = {}
        self._sample: list[float] = []
        self._seen_requests = 0
        self.errors.reset()
        self._first_ns = 0
        self._rejected = {}

    def _reset_tables(self) -> None:
        self._slow: list[tuple[float, int, int, str, str, str, int]] = []  # (ms, seq, end, trace, route, method, code)
        self._seq = 0
        self.errors.reset_tables()

    # -- spans ---------------------------------------------------------------------------------------------
    def reject(self, signal: str, reason: str, n: int = 1) -> None:
        """Count ``n`` records of ``signal`` (spans, metric_points, log_records) rejected for ``reason`` -- here or
        by an adapter that could not even turn them into records; the row says so (``rejected/<signal>``)."""
        key = (signal, reason)
        self._rejected[key] = self._rejected.get(key, 0) + n
        self.dropped += n
        if key not in self._warned_rejects:
            self._warned_rejects.add(key)
            self._warn(
                logger,
                "rejected %s (%s): see the rejected/%s keys of the run; the rest of each batch is kept",
                signal,
                reason,
                signal,
            )

    def add_spans(self, spans: Iterable[r.SpanRecord]) -> int:
        """Aggregate ``spans``; returns how many were rejected (counted by reason)."""
        rejected = 0
        for s in spans:
            problem = span_problem(s)
            if problem:
                self.reject("spans", problem)
                rejected += 1
                continue
            try:
                attrs = s.attributes
                if s.kind == r.SERVER:
                    self._server(s, attrs)
                elif (
                    "gen_ai.operation.name" in attrs or "gen_ai.request.model" in attrs
                ) and not self.from_span_metrics:
                    self.ai.add(s, attrs)
                if s.exceptions:
                    for e in s.exceptions:
                        self.errors.exception(s.end_ns, s.trace_id, str(attrs.get("http.route") or ""), e)
            except Exception:  # one malformed record never poisons the interval (counted by reason)
                self.reject("spans", "malformed")
                rejected += 1
        return rejected

    def _capped(self, section: str, series: str) -> str:
        seen = self._series.setdefault(section, set())
        if series in seen or len(seen) < self.cfg.max_series:
            seen.add(series)
            return series
        if section not in self._warned:
            self._warned.add(section)
            self._warn(
                logger,
                "%s/* has more than %d breakdown series; further series are reported as %s "
                "(raise WANDB_EXPORT_MAX_SERIES to change)",
                section,
                self.cfg.max_series,
                OVERFLOW,
            )
        return series.split("=", 1)[0] + "=" + OVERFLOW

    def _lat(self, table: dict[str, _Lat], key: str) -> _Lat:
        x = table.get(key)
        if x is None:
            x = table[key] = _Lat()
        return x

    def _part(self, index: dict[_K, _Lat], attr: str, value: _K, ms: float, err: bool, bucket: int | None) -> None:
        """One server span into its ``@attr=value`` series (``index`` caches raw value -> capped entry, for at
        most ``2 * max_series`` values: beyond, overflowing values are looked up each time, never stored)."""
        x = index.get(value)
        if x is None:
            x = self._lat(self._http, self._capped("http", f"{attr}={label(value)}"))
            if len(index) < 2 * self.cfg.max_series:
                index[value] = x
        x.count += 1
        x.errors += err
        x.sketch.add_keyed(ms, bucket)

    def _server(self, s: r.SpanRecord, attrs: r.Attributes) -> None:
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
        method = attrs.get("http.request.method") or attrs.get("http.method") or ""
        if type(method) is not str:
            method = str(method)
        route = attrs.get("http.route")
        if not route:  # no matched route (a 404 scan, a non-Flask server): the method, never the raw path
            route = method or "unknown"
        elif type(route) is not str:
            route = str(route)
        if not self.from_span_metrics:  # else the requests are counted from span_metrics (every span, unsampled)
            self._count_server(s, ms, err, route, method, cls)
        if len(self._slow) < self.cfg.slowest_n or ms > self._slow[0][0]:
            self._seq += 1
            item = (ms, self._seq, s.end_ns, s.trace_id, route, method, as_int(code))
            if len(self._slow) < self.cfg.slowest_n:
                heapq.heappush(self._slow, item)
            else:
                heapq.heapreplace(self._slow, item)
        self.errors.server_span(s.trace_id, route)
        if err and not s.exceptions:
            etype = f"HTTP {code}" if cls == "5xx" else "span status ERROR"
            default = f"{method} {route}" if route != method else route
            self.errors.record(s.end_ns, s.trace_id, route, etype, s.status_message or default, "")
        if not self._first_ns:
            self._first_ns = s.start_ns

    def _count_server(self, s: r.SpanRecord, ms: float, err: bool, route: str, method: str, cls: str | None) -> None:
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

    # -- metrics and logs ----------------------------------------------------------------------------------
    def add_metrics(self, points: Iterable[r.MetricPoint]) -> int:
        """Aggregate metric points; returns how many were rejected (counted by reason)."""
        rejected = 0
        good = []
        for p in points:
            problem = point_problem(p)
            if problem:
                self.reject("metric_points", problem)
                rejected += 1
            elif p.name in DUPLICATES:
                self._request_view(p)
            else:
                good.append(p)
        for reason in self.metrics.add(good):
            self.reject("metric_points", reason)
            rejected += 1
        return rejected

    def _request_view(self, p: r.MetricPoint) -> None:
        """A metric view of the requests http/* and ai/* hold: span_metrics feed them (the first one makes them the
        source, in "auto"); the others are duplicates of the sections and are not written (one source of truth)."""
        if is_span_metric(p.name) and self.cfg.request_source != "spans":
            if not self.from_span_metrics:
                self.from_span_metrics = True
                self._warn(
                    logger,
                    "span_metrics points arrive: http/* and ai/* now count every request from them "
                    "(spans keep making the error tables and slowest traces)",
                )
            h = self.metrics.hist_delta(p)
            if h is not None and h.count > 0:
                self.span_metrics.add_duration(p, h)
        elif p.name == TOKEN_USAGE and self.from_span_metrics:
            h = self.metrics.hist_delta(p)
            if h is not None:
                self.span_metrics.add_tokens(p, h)

    def add_logs(self, logs: Iterable[r.LogRecord]) -> int:
        """Aggregate log records; returns how many were rejected (counted by reason)."""
        rejected = 0
        for rec in logs:
            problem = log_problem(rec)
            if problem:
                self.reject("log_records", problem)
                rejected += 1
                continue
            try:
                number = severity_number(rec.severity_number or 0, rec.severity_text)
                sev = severity_name(number)
                self._logs[sev] = self._logs.get(sev, 0) + 1
                if number >= 17:
                    self.errors.log(rec)
            except Exception:  # one malformed record never poisons the interval
                self.reject("log_records", "malformed")
                rejected += 1
        return rejected

    # -- flush ---------------------------------------------------------------------------------------------
    def flush(self, now_ns: int, tables: bool | None = None) -> IntervalResult:
        """Close the interval that ends at ``now_ns``: its row, alert signals and -- when due (``tables_interval_s``;
        ``tables=True`` forces them, ``False`` holds them back) -- its tables; then reset -- always: whatever goes
        wrong in one interval (logged once), the next one starts clean and is written."""
        start = self._start_ns if self._start_ns is not None else (self._first_ns or now_ns)
        if self._tables_since_ns is None:
            self._tables_since_ns = start
        if tables is None:
            # due once the tables would cover tables_interval_s, give or take half this interval (timer jitter)
            period = int(self.cfg.tables_interval_s * 1e9)
            tables = period <= 0 or now_ns - self._tables_since_ns >= period - (now_ns - start) // 2
        failed = ""
        try:
            result = self._result(start, now_ns, tables)
        except Exception as exc:  # never a silenced run: this interval is lost, counted, and the next one is written
            failed = type(exc).__name__
            if "flush" not in self._warned:
                self._warned.add("flush")
                self._warn(
                    logger,
                    "an export interval could not be closed (%s: %s): its data is dropped; the next "
                    "interval is written",
                    failed,
                    exc,
                )
            row = {"interval/time": now_ns / 1e9, "interval/seconds": max(0.0, (now_ns - start) / 1e9)}
            result = IntervalResult(row, {}, r.Signals(interval_start_ns=start, interval_end_ns=now_ns))
        self._start_ns = now_ns
        self._reset()
        if tables or failed:
            self._reset_tables()
            self._tables_since_ns = now_ns
        if failed:
            self.reject("intervals", failed)  # shown in the next interval's row
        return result

    def _result(self, start_ns: int, now_ns: int, with_tables: bool = True) -> IntervalResult:
        seconds = max(0.0, (now_ns - start_ns) / 1e9)
        row: dict[str, float] = {"interval/time": now_ns / 1e9, "interval/seconds": seconds}
        tot = self._totals

        http: Mapping[str, _Lat | HistStats] = self.span_metrics.http if self.from_span_metrics else self._http
        status = self.span_metrics.status if self.from_span_metrics else self._status
        overall = http.get("")
        requests = overall.count if overall else 0
        errors = overall.errors if overall else 0
        tot["http/requests_total"] = tot.get("http/requests_total", 0) + requests
        tot["http/errors_total"] = tot.get("http/errors_total", 0) + errors
        row["http/requests"] = requests
        row["http/errors"] = errors
        row["http/requests_total"] = tot["http/requests_total"]
        row["http/errors_total"] = tot["http/errors_total"]
        p95 = None
        for key, x in http.items():
            sfx = _suffix(key)
            if key:
                row[f"http/requests{sfx}"] = x.count
                row[f"http/errors{sfx}"] = x.errors
            row[f"http/error_rate{sfx}"] = x.errors / x.count if x.count else 0.0
            for (stat, _), v in zip(QUANTILES, x.quantiles_ms(_QS), strict=True):
                if v is not None:
                    row[f"http/{stat}_ms{sfx}"] = v
                    if not key and stat == "p95":
                        p95 = v
        for cls, n in status.items():
            row[f"http/requests@status_class={cls}"] = n

        if self.from_span_metrics:
            for point, delta in self.metrics.watched:
                if point.name == self.cfg.cost_metric:
                    self.span_metrics.add_cost(point, delta)
            self.span_metrics.write_ai(row, tot)
            span_cost = 0.0
        else:
            span_cost = self.ai.flush(row, tot)

        for sev, n in self._logs.items():
            row[f"logs/count@severity={sev}"] = n

        cost_metric = self.cfg.cost_metric
        metric_cost = self.metrics.sum_deltas.get(cost_metric)
        if cost_metric in self.metrics.seen_names:
            self._cost_metric_seen = True
        self.metrics.flush(seconds, row)
        if self.metrics.flush_errors:
            self.reject("metric_points", "summary", self.metrics.flush_errors)
            self.metrics.flush_errors = 0
        ai_cost = (metric_cost or 0.0) if self._cost_metric_seen else span_cost

        for (signal, reason), n in self._rejected.items():
            row[f"rejected/{signal}@reason={reason}"] = n
            row[f"rejected/{signal}"] = row.get(f"rejected/{signal}", 0) + n

        errs = self.errors
        row["errors/occurrences"] = errs.occurrences
        row["errors/new_groups"] = len(errs.new_groups)
        row["errors/groups"] = len(self.groups.groups)

        self._apply_key_budget(row)
        tables = self._tables() if with_tables else {}

        signals = r.Signals(
            interval_start_ns=start_ns,
            interval_end_ns=now_ns,
            requests=requests,
            errors=errors,
            latency_ms=tuple(
                self.span_metrics.latency_sample(self.cfg.latency_sample) if self.from_span_metrics else self._sample
            ),
            p95_ms=p95,
            ai_cost_usd=ai_cost,
            new_error_groups=tuple(errs.new_groups),
        )
        return IntervalResult(row, tables, signals)

    def _tables(self) -> dict[str, Table]:
        """The tables of what was seen since the last ones."""
        errs = self.errors
        tables: dict[str, Table] = {}
        if errs.rows:
            tables["recent_errors"] = Table(list(ERROR_COLUMNS), errs.rows)
        if self._slow:
            slow = sorted(self._slow, reverse=True)
            tables["slowest_traces"] = Table(
                list(SLOW_COLUMNS), [[t / 1e9, tid, route, m, code, ms] for ms, _, t, tid, route, m, code in slow]
            )
        if errs.dirty and self.groups.groups:
            groups = sorted(self.groups.groups.values(), key=lambda g: g.count, reverse=True)[: self.cfg.max_group_rows]
            tables["error_groups"] = Table(
                list(GROUP_COLUMNS),
                [
                    [
                        g.fingerprint,
                        g.type,
                        g.message,
                        g.frame,
                        g.count,
                        g.first_seen_ns / 1e9,
                        g.last_seen_ns / 1e9,
                        ",".join(g.sample_trace_ids),
                    ]
                    for g in groups
                ],
            )

        return tables

    def _apply_key_budget(self, row: dict[str, float]) -> None:
        """Keys the run already has always pass; a new one passes while the run has fewer than ``max_keys``."""
        known, cap = self.keys, self.cfg.max_keys
        new = [k for k in row if k not in known]
        room = max(0, cap - len(known))
        known.update(new[:room])
        dropped = new[room:]
        for k in dropped:
            del row[k]
        row["keys/dropped"] = len(dropped)
        known.add("keys/dropped")
        if dropped and "keys" not in self._warned:
            self._warned.add("keys")
            self._warn(
                logger,
                "the run has %d distinct keys (W&B allows < 10,000 per project): %d new keys left out, "
                "e.g. %s; raise WANDB_EXPORT_MAX_KEYS or lower WANDB_EXPORT_MAX_SERIES",
                cap,
                len(dropped),
                dropped[0],
            )
