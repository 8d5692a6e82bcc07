"""What the core accepts: every record is checked here before it touches an aggregate (pure).

No sender can silence the run: a record that could break a statistic (an exponential histogram whose bucket bounds
overflow a float, a NaN that would poison a running total for good, a count no point can hold) or a key (a metric
name with control characters) is rejected on its own, counted by reason, and the rest of its batch is kept.

Limits (stated once, used by the bridge's decoder too):

- names and attribute keys: printable, at most ``MAX_NAME`` characters;
- values that become part of a W&B key (route, method, model, feature, worker): printable (others replaced by
  U+FFFD), at most ``MAX_LABEL`` characters -- they are cleaned, not rejected, so the request still counts;
- sums, gauges, histogram sums, minimums, maximums and explicit bounds: finite;
- counts (histogram count, bucket and zero counts): integers in ``0..MAX_COUNT`` (2**53: beyond it a float total
  loses integer precision), bucket counts summing to the count;
- explicit histograms: strictly increasing bounds and ``len(bounds) + 1`` bucket counts;
- exponential histograms: scale in ``MIN_SCALE..MAX_SCALE`` (-9..20: the OTLP range less -10, unrepresentable), at most
  ``MAX_BUCKETS`` buckets a side, and every bucket bound within a float (``|index| * 2**-scale < MAX_LOG2``);
- times: non-negative integers; log severity numbers ``0..24`` (or unset); attribute nesting ``MAX_DEPTH`` levels.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from otel_wandb import records as r

MAX_NAME = 255
MAX_LABEL = 256
MAX_COUNT = 2**53
MIN_SCALE, MAX_SCALE = -9, 20  # OTLP allows -10, but scale -10's bucket 0 already ends at 2**1024, beyond any float
MAX_BUCKETS = 16_384
MAX_LOG2 = 1000.0  # 2**1000 ~ 1e301: bucket bounds stay finite floats
MAX_DEPTH = 16
REPLACEMENT = "\ufffd"
_INT = {int}
_GOOD_NAMES: set[str] = set()  # attribute keys is_name() accepted (only str passes it)
_GOOD_NAMES_MAX = 4096
_KINDS = (r.SUM, r.GAUGE, r.HISTOGRAM, r.EXP_HISTOGRAM)


def is_name(value: Any) -> bool:
    """A metric name or attribute key that may become part of a W&B key."""
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME and value.isprintable()


def _names(keys: Any) -> bool:
    """``all(is_name(k) for k in keys)``; keys that passed before (a bounded set: keys repeat on every point of a
    stream) are not checked again."""
    if _GOOD_NAMES.issuperset(keys):
        return True
    if not all(is_name(k) for k in keys):
        return False
    if len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
        _GOOD_NAMES.update(keys)
    return True


def label(value: Any) -> str:
    """A value as part of a W&B key: printable (control and other non-printable characters replaced), bounded."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_LABEL:
        text = text[:MAX_LABEL]
    return text if text.isprintable() else "".join(c if c.isprintable() else REPLACEMENT for c in text)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_COUNT


def _counts(xs: Any) -> bool:
    """``all(_count(x) for x in xs)``; a sequence of plain ints (what a decoder makes) is checked in C."""
    if set(map(type, xs)) <= _INT:
        return min(xs, default=0) >= 0 and max(xs, default=0) <= MAX_COUNT
    return all(_count(x) for x in xs)


def _time(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**64


def point_problem(p: r.MetricPoint) -> str | None:
    """None when the point is usable, else the reason it is rejected (a short word: the key of its counter)."""
    if not is_name(p.name):
        return "name"
    if p.kind not in _KINDS:
        return "kind"
    if not (_time(p.time_ns) and _time(p.start_time_ns)):
        return "time"
    if p.attributes and not _names(p.attributes):
        return "attribute_key"
    if p.kind in (r.SUM, r.GAUGE):
        return None if _finite(p.value) else "value"
    if not _count(p.count):
        return "count"
    if not _finite(p.sum) or (p.min is not None and not _finite(p.min)) or (p.max is not None and not _finite(p.max)):
        return "sum"
    if p.kind == r.HISTOGRAM:
        return _explicit_problem(p)
    return _exponential_problem(p)


def _explicit_problem(p: r.MetricPoint) -> str | None:
    bounds, counts = p.bounds, p.bucket_counts
    if not counts:
        return None if p.count == 0 or not bounds else "buckets"
    if len(counts) != len(bounds) + 1 or len(counts) > MAX_BUCKETS:
        return "buckets"
    if not all(_finite(b) for b in bounds) or any(b >= c for b, c in itertools.pairwise(bounds)):
        return "bounds"
    if not _counts(counts) or sum(counts) != p.count:
        return "buckets"
    return None


def _exponential_problem(p: r.MetricPoint) -> str | None:
    if not isinstance(p.scale, int) or not MIN_SCALE <= p.scale <= MAX_SCALE:
        return "scale"
    if not _count(p.zero_count):
        return "count"
    total = p.zero_count
    for offset, counts in ((p.positive_offset, p.positive_counts), (p.negative_offset, p.negative_counts)):
        if len(counts) > MAX_BUCKETS:
            return "buckets"
        if not counts:
            continue
        if not isinstance(offset, int) or max(abs(offset), abs(offset + len(counts))) * 2.0**-p.scale >= MAX_LOG2:
            return "offset"
        if not _counts(counts):
            return "buckets"
        total += sum(counts)
    return None if total == p.count else "buckets"


def span_problem(s: r.SpanRecord) -> str | None:
    if not (_time(s.start_ns) and _time(s.end_ns)):
        return "time"
    if not isinstance(s.name, str) or len(s.name) > 4 * MAX_LABEL:
        return "name"
    return None


def log_problem(rec: r.LogRecord) -> str | None:
    if not _time(rec.time_ns):
        return "time"
    sev = rec.severity_number
    if sev is not None and (not isinstance(sev, int) or isinstance(sev, bool) or not 0 <= sev <= 24):
        return "severity"
    return None
