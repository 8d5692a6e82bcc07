"""Cumulative metric streams -> what is new in each point (pure; used by ``metricstate.MetricState``).

A stream is name + attributes + resource. ``Streams.new_part(key, point, value, monotonic)`` returns the part of a
cumulative ``value`` (a float for sums, an ``ExpHist``/``ExplicitHist`` for histograms) not counted before, or
``None`` when nothing is new. Rules, per point of a stream seen before:

- **late or duplicate** (same start time, timestamp not after the newest seen; or a start time older than the
  stream's): dropped. Exports from the collector's queue are at-least-once and drain with several consumers after
  an outage, so points arrive twice and out of order; counting them would double count (false cost alerts).
- **reset** (a newer start time; or, when the start time is unset, a monotonic value that drops): the value counts
  in full (it is what accumulated since the new start).
- **monotonic decrease with the same, set start time**: impossible for a real counter (an SDK resets by changing
  the start time), e.g. two writers with the same stream identity. Ignored (nothing counted, the higher value stays
  the reference, so it can never add false increases) with one warning.
- otherwise monotonic sums and histograms count ``value - previous``.
- **non-monotonic sums** (UpDownCounters, always cumulative) are levels: each newer point counts its change in
  level, ``value - previous`` of either sign, also across a start-time change (the new level replaces the old), so
  the running total of the deltas is the current level.

The first point of a stream not seen before: a non-monotonic sum counts its level in full. A histogram or monotonic
sum follows the collector's ``cumulativetodelta`` ``initial_value: auto`` (which converts only those): it counts in
full only if its start time is set, differs from its timestamp and is at or after ``horizon_ns`` (this process's
start minus a tolerance) -- it began while we were watching, so its whole value is new. Otherwise it is a baseline
(``None``): its value was (or may have been) counted by whoever watched it before -- the previous bridge process
before a restart (the alerts' daily cost is restored from the state file, so counting the app's running total again
would double it). Trade-off: what a stream gained between the last point before a restart and the first after it is
not counted; a stream never seen that started before this process starts counting from its first point.

At most ``max_streams`` streams are kept. When full, the least recently seen stream is forgotten -- unless it was
seen in the current interval (``next_interval`` advances it): then the working set is larger than the cap, and the
new stream is not kept instead (rather than thrash: evicting one live stream per point would turn every point into
a baseline). A forgotten or not-kept stream is remembered (up to ``max_streams`` keys) as counted: its next first
point is a baseline (its value, or level, is already in the totals), its later points count again once it is kept.
Past that, the oldest remembered key is dropped and the horizon moves past its start time (a monotonic stream that
started before it is a baseline; a non-monotonic one would count its level again). ``on_cap()`` is called each
time the cap turns a stream away (the caller warns once).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeAlias, overload

from otel_wandb import records as r
from otel_wandb.core._stats import ExpHist, ExplicitHist, Hist

START_TOLERANCE_NS = 1_000_000_000
# a stream's identity: (name, attributes, resource), each mapping as sorted (key, repr(value)) pairs
StreamKey: TypeAlias = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]
Value: TypeAlias = float | Hist  # a sum's value or a histogram; a stream keeps its kind


class _Stream:
    __slots__ = ("interval", "start", "time", "value")

    def __init__(self, start: int, time: int, value: Value, interval: int) -> None:
        self.start, self.time, self.value, self.interval = start, time, value, interval


def _count(value: Value) -> float:
    return value if isinstance(value, float) else value.count


def _minus(value: Value, prev: Value) -> Value:
    if isinstance(value, float) and isinstance(prev, float):
        return value - prev
    if isinstance(value, ExpHist | ExplicitHist) and isinstance(prev, ExpHist | ExplicitHist):
        return value.merged(prev, -1)
    raise TypeError("a stream's points changed kind")  # never: one name has one instrument kind


class Streams:
    def __init__(
        self,
        max_streams: int,
        process_start_ns: int,
        on_cap: Callable[[], None],
        on_decrease: Callable[[r.MetricPoint], None],
    ) -> None:
        self.max_streams = max_streams
        self.horizon_ns = process_start_ns - START_TOLERANCE_NS
        self._on_cap, self._on_decrease = on_cap, on_decrease
        self._live: OrderedDict[StreamKey, _Stream] = OrderedDict()  # least recently seen first
        self._counted: OrderedDict[StreamKey, int] = OrderedDict()  # forgotten / not kept: key -> start time
        self._interval = 0
        self.evicted = 0  # streams forgotten to make room
        self.refused = 0  # points of streams not kept (the cap was full of streams seen this interval)

    def __len__(self) -> int:
        return len(self._live)

    def next_interval(self) -> None:
        self._interval += 1

    @overload
    def new_part(self, key: StreamKey, p: r.MetricPoint, value: float, monotonic: bool) -> float | None: ...
    @overload
    def new_part(self, key: StreamKey, p: r.MetricPoint, value: Hist, monotonic: bool) -> Hist | None: ...
    def new_part(self, key: StreamKey, p: r.MetricPoint, value: Value, monotonic: bool) -> Value | None:
        st = self._live.get(key)
        if st is None:
            return self._first(key, p, value, monotonic)
        self._live.move_to_end(key)
        st.interval = self._interval
        start, t = p.start_time_ns, p.time_ns
        if start < st.start or (start == st.start and t and st.time and t <= st.time):
            return None  # late or duplicate
        if not monotonic:
            new = _minus(value, st.value)
        elif start != st.start or (not start and _count(value) < _count(st.value)):
            new = value  # reset
        elif _count(value) < _count(st.value):
            self._on_decrease(p)
            st.time = max(st.time, t)
            return None
        else:
            new = _minus(value, st.value)
        st.start, st.time, st.value = start, t, value
        return new

    def _first(self, key: StreamKey, p: r.MetricPoint, value: Value, monotonic: bool) -> Value | None:
        start = p.start_time_ns
        if key in self._counted:
            new = None
        elif not monotonic:
            new = value
        elif not start or start == p.time_ns or start < self.horizon_ns:
            new = None  # initial_value auto: not new while we watched -> baseline
        else:
            new = value
        if self._live and len(self._live) >= self.max_streams:
            old_key, old = next(iter(self._live.items()))
            self._on_cap()
            if old.interval == self._interval:
                self.refused += 1
                self._remember(key, start)
                return new
            del self._live[old_key]
            self.evicted += 1
            self._remember(old_key, old.start)
        self._counted.pop(key, None)
        self._live[key] = _Stream(start, p.time_ns, value, self._interval)
        return new

    def _remember(self, key: StreamKey, start: int) -> None:
        self._counted[key] = start
        self._counted.move_to_end(key)
        if len(self._counted) > self.max_streams:
            _, old_start = self._counted.popitem(last=False)
            self.horizon_ns = max(self.horizon_ns, old_start + 1)
