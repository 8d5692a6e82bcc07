"""The pure aggregation core: plain records in, one W&B row + tables + alert signals out per export interval.

No threads, no I/O, no logging under the caller's lock (one-off cap warnings are collected: ``take_warnings``
hands them to the caller, which logs them with ``log_warnings`` once its lock is released), no ``wandb``, no SDK
types. Every per-interval structure is bounded (latency sketches, top-N heaps, capped tables, series and the
route/method lookup caches) and reset on ``flush``; cross-interval state (error groups, cumulative metric
streams, totals) is capped too.

Key grammar of the row (W&B groups panels by the prefix before the first ``/``)::

    <section>/<statistic>[@<attribute>=<value>]

- ``interval/time`` (unix seconds, the step metric), ``interval/seconds``
- ``http/requests|errors|error_rate|p50_ms|p95_ms|p99_ms|requests_total|errors_total`` from server spans, with
  breakdowns ``@http.route=<route>`` (a server span without ``http.route`` counts under its method, e.g.
  ``@http.route=GET``: never its raw path), ``@http.request.method=<m>``, ``@status_class=2xx`` (requests only) and
  ``@worker=<id>`` per pre-forked worker (the resource's ``app.worker.id``, a stable gunicorn slot; spans without
  it get no worker series -- ``service.instance.id`` holds a pid, a new W&B key per restart)
- ``ai/calls|errors|input_tokens|output_tokens|cached_tokens|cost_usd|p50_ms|p95_ms|p99_ms`` from gen_ai spans with
  ``@gen_ai.request.model=<model>`` and ``@app.feature=<feature>``, plus ``ai/*_total`` running totals (see
  ``coreai``; the app's own ``app.ai.cost`` metric appears as ``app.ai.cost/delta`` and ``app.ai.cost/total``)
- ``logs/count@severity=<TRACE|DEBUG|INFO|WARN|ERROR|FATAL>`` (a record without a severity number counts by its
  severity text, as the collector routes it to error.log: ``ERROR...`` -> ERROR, ``FATAL...``/``CRITICAL...`` ->
  FATAL, ``WARN...`` -> WARN, ``DEBUG...`` -> DEBUG, ``TRACE...`` -> TRACE, anything else INFO)
- ``errors/occurrences``, ``errors/new_groups``, ``errors/groups``
- ``keys/dropped``: new keys left out of this row because the run already has ``max_keys`` distinct keys (one
  warning); keys already in the run keep coming, so charts never stop half-way
- ``<metric name>/<statistic>[@<attr>=<value>]`` for metric points (see ``metricstate``)

Tables: ``recent_errors``, ``slowest_traces``, ``error_groups`` (only when non-empty, bounded rows).

Errors: ``exception`` span events, 5xx/ERROR server spans, and logs at ERROR and above (by number, or by text
when the number is unset, see above). A log that carries
``exception.type``/``exception.message``/``exception.stacktrace`` (the SDK's LoggingHandler with ``exc_info``) is
grouped by them, like the span event of the same exception; exception types are grouped by their unqualified
name (span events carry ``module.Qualname``, log records ``__name__``), so the request span's event and the log
of one exception share a fingerprint and count once per trace. Other logs group as ``log:<scope>`` + body.
"""

from __future__ import annotations

from otel_wandb.core._aggregator import (
    ERROR_COLUMNS,
    GROUP_COLUMNS,
    SLOW_COLUMNS,
    WORKER_ATTR,
    Aggregator,
    CoreConfig,
    IntervalResult,
    Table,
    log_warnings,
    severity_name,
    severity_number,
)
from otel_wandb.core._errors import (
    MAX_INPUT,
    ErrorGroups,
    fingerprint,
    normalize_message,
    scrub_message,
    strip_literals,
    strip_quoted,
    top_app_frame,
)
from otel_wandb.core._stats import EXP_HISTOGRAM_MAX_SIZE, QUANTILES, ExpHist, ExplicitHist, LogSketch
from otel_wandb.core._validate import MAX_DEPTH, MAX_LABEL, MAX_NAME, label, log_problem, point_problem, span_problem

__all__ = [
    "ERROR_COLUMNS",
    "EXP_HISTOGRAM_MAX_SIZE",
    "GROUP_COLUMNS",
    "MAX_DEPTH",
    "MAX_INPUT",
    "MAX_LABEL",
    "MAX_NAME",
    "QUANTILES",
    "SLOW_COLUMNS",
    "WORKER_ATTR",
    "Aggregator",
    "CoreConfig",
    "ErrorGroups",
    "ExpHist",
    "ExplicitHist",
    "IntervalResult",
    "LogSketch",
    "Table",
    "fingerprint",
    "label",
    "log_problem",
    "log_warnings",
    "normalize_message",
    "point_problem",
    "scrub_message",
    "severity_name",
    "severity_number",
    "span_problem",
    "strip_literals",
    "strip_quoted",
    "top_app_frame",
]
