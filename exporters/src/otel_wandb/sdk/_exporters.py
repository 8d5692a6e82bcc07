"""The three SDK exporters over one ``Pipeline`` (see the package docstring)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.metrics.view import (
    Aggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_wandb.config import ExportConfig
from otel_wandb.core import EXP_HISTOGRAM_MAX_SIZE
from otel_wandb.pipeline import Pipeline
from otel_wandb.sdk._convert import log_records, metric_records, span_records

logger = logging.getLogger(__name__)
_Result = TypeVar("_Result", SpanExportResult, MetricExportResult, LogRecordExportResult)
_R = TypeVar("_R")  # a record


def _flush_global_providers() -> None:
    """At exit: push what the global providers still hold into the pipeline before its final flush."""
    from opentelemetry import _logs, metrics, trace

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider()):
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            try:
                flush(5000)
            except Exception:
                logger.debug("force_flush of %r failed", provider, exc_info=True)


class _Base(Generic[_Result]):
    _FAIL: _Result
    _OK: _Result
    _SIGNAL = ""  # spans, metric_points, log_records: the name of the run's rejected/<signal> counter

    def __init__(self, pipeline: Pipeline | None = None) -> None:
        self._explicit = pipeline
        self._pipeline: Pipeline | None = None
        self._pid = 0
        self._shutdown = False
        self._warned = False
        self._get()  # attach now: the last of the exporters to shut down closes the pipeline

    def _get(self) -> Pipeline | None:
        if self._shutdown:
            return None
        if self._pipeline is None or (self._explicit is None and self._pid != os.getpid()):
            # first use, or a forked worker: the shared pipeline of this process
            p = self._explicit if self._explicit is not None else Pipeline.shared()
            self._pipeline, self._pid = p, os.getpid()
            p.attach()
            p.add_exit_hook(_flush_global_providers)
        return self._pipeline

    def _export(
        self,
        add: Callable[[Pipeline, list[_R]], int | None],
        convert: Callable[..., Iterable[_R]],  # takes the batch, or a list of one of its items
        batch: object,
    ) -> _Result:
        t0 = time.thread_time()
        try:
            p = self._get()
            if p is None:
                return self._FAIL
            records, failed = _convert(convert, batch)
            if failed:
                p.add_rejected(self._SIGNAL, "convert", failed)
            if add(p, records) is None:  # the pipeline is closed
                return self._FAIL
            p.cpu_export_s += time.thread_time() - t0
            return self._OK if p.last_export_ok else self._FAIL
        except Exception as exc:  # never raise into the SDK's worker thread
            if not self._warned:
                self._warned = True
                logger.warning("W&B %s failed: %s: %s", type(self).__name__, type(exc).__name__, exc)
            return self._FAIL

    def _force_flush(self, timeout_millis: float) -> bool:
        p = self._pipeline
        if p is None or self._shutdown:
            return True
        try:
            return p.force_flush(timeout_millis / 1000.0)
        except Exception:
            logger.debug("force_flush failed", exc_info=True)
            return False

    def _do_shutdown(self, timeout_s: float = 10.0) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        if self._pipeline is not None:
            try:
                self._pipeline.detach(timeout_s)
            except Exception:
                logger.debug("shutdown failed", exc_info=True)


def _convert(convert: Callable[..., Iterable[_R]], batch: object) -> tuple[list[_R], int]:
    """SDK items -> records, and how many could not be converted: one bad item never costs its batch (a batch of
    spans or log records is converted again item by item when the whole fails)."""
    try:
        return list(convert(batch)), 0
    except Exception:
        if not isinstance(batch, Sequence):
            return [], 1
    records: list[_R] = []
    failed = 0
    for item in batch:
        try:
            records.extend(convert([item]))
        except Exception:
            failed += 1
    return records, failed


class WandbSpanExporter(_Base[SpanExportResult], SpanExporter):
    _OK, _FAIL = SpanExportResult.SUCCESS, SpanExportResult.FAILURE
    _SIGNAL = "spans"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._export(Pipeline.add_spans, span_records, spans)

    def shutdown(self) -> None:
        self._do_shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._force_flush(timeout_millis)


class WandbMetricExporter(_Base[MetricExportResult], MetricExporter):
    _OK, _FAIL = MetricExportResult.SUCCESS, MetricExportResult.FAILURE
    _SIGNAL = "metric_points"

    def __init__(
        self,
        pipeline: Pipeline | None = None,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
    ) -> None:
        cfg = ExportConfig.from_env()
        delta = cfg.temporality == "delta"
        d, c = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
        temporality: dict[type, AggregationTemporality] = {
            Counter: d if delta else c,
            UpDownCounter: c,
            Histogram: d if delta else c,
            ObservableCounter: d if delta else c,
            ObservableUpDownCounter: c,
            ObservableGauge: c,
        }
        temporality.update(preferred_temporality or {})
        hist: Aggregation = (
            ExponentialBucketHistogramAggregation(max_size=EXP_HISTOGRAM_MAX_SIZE)
            if cfg.histogram == "exponential"
            else ExplicitBucketHistogramAggregation()
        )
        aggregation: dict[type, Aggregation] = {Histogram: hist}
        aggregation.update(preferred_aggregation or {})
        MetricExporter.__init__(self, preferred_temporality=temporality, preferred_aggregation=aggregation)
        _Base.__init__(self, pipeline)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        return self._export(Pipeline.add_metrics, metric_records, metrics_data)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self._do_shutdown(timeout_millis / 1000.0)


class WandbLogExporter(_Base[LogRecordExportResult], LogRecordExporter):
    _OK, _FAIL = LogRecordExportResult.SUCCESS, LogRecordExportResult.FAILURE
    _SIGNAL = "log_records"

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return self._export(Pipeline.add_logs, log_records, batch)

    def shutdown(self) -> None:
        self._do_shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._force_flush(timeout_millis)
