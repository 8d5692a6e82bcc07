"""Pure, deterministic alert evaluation: ``Evaluator.evaluate(signals, now) -> list[AlertEvent]``.

No threads, no I/O, no clock of its own: the same sequence of (signals, now) gives the same events. Its state
(firing/ok per rule, the day's AI cost, each new_error_group rule's seen fingerprints and held groups) round-trips
through ``snapshot()`` / ``state=``.

Notification policy (per rule):
- ok -> breach: one ``fire`` event, unless the rule was notified less than ``wait`` seconds ago (flapping): then
  the notification is held back and sent once the wait has passed if the breach still holds.
- still breaching: a reminder ``fire`` every ``wait`` seconds when ``renotify`` (never when ``wait`` is 0).
- breach -> clear: one ``resolve`` event if the breach was notified (``resolve_threshold`` adds hysteresis).
- no data (fewer than ``min_samples`` in the window): no transition either way.
- daily_ai_cost restarts at local midnight in the configured zone (which clears that rule).
- new_error_group: one ``fire`` per fingerprint ever seen by that rule (each rule has its own bounded memory, so
  two rules -- say SMS hourly and Slack at once -- each announce every group on their own channels), capped per
  interval; groups arriving within ``wait`` of the rule's last notification are held and announced once the wait
  has passed (``groups.py``).
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from otel_wandb.alerts._groups import ErrorGroupMemory, group_text
from otel_wandb.alerts._rules import PERCENTILE_RE, AlertsConfig, Rule
from otel_wandb.records import Signals

MAX_INTERVALS = 2048  # window entries kept, whatever the windows say
MAX_SAMPLES_PER_INTERVAL = 1000  # latency samples kept per interval (8 bytes each): <= 16 MiB worst case
TITLE_MAX = 63  # W&B: title under 64 characters


@dataclass(frozen=True, slots=True)
class AlertEvent:
    kind: str  # "fire" | "resolve"
    rule: str
    value: float | None
    threshold: float | None
    text: str
    level: str
    channels: tuple[str, ...] = ()
    wait: float = 0.0
    at: float = 0.0  # epoch seconds of the evaluation
    key: str = ""  # error-group fingerprint for new_error_group
    reminder: bool = False
    subject: str = ""  # error type for new_error_group

    @property
    def title(self) -> str:
        if self.subject:
            return f"{self.rule}: {self.subject}"[:TITLE_MAX]
        return ("[RESOLVED] " if self.kind == "resolve" else "[FIRING] ") + self.rule[: TITLE_MAX - 11]


@dataclass(slots=True)
class RuleState:
    firing: bool = False
    notified: bool = False  # this breach has been notified
    since: float | None = None
    last_notified: float | None = None


@dataclass(slots=True)
class _Entry:
    at: float
    requests: int
    errors: int
    latency_ms: array[float]  # array('d'), at most MAX_SAMPLES_PER_INTERVAL
    weight: float  # requests each kept sample stands for (the core sends a bounded reservoir sample)
    p95_ms: float | None
    cost: float


@dataclass(slots=True)
class _Reading:
    value: float | None
    detail: str = ""


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def weighted_percentile(groups: list[tuple[array[float], float]], q: float) -> float:
    """Nearest-rank percentile over samples that each stand for ``weight`` requests (equal weights: plain)."""
    if len({w for _, w in groups}) <= 1:
        return percentile([x for xs, _ in groups for x in xs], q)
    pairs = sorted((x, w) for xs, w in groups for x in xs)
    target = q / 100.0 * sum(w for _, w in pairs)
    acc = 0.0
    for x, w in pairs:
        acc += w
        if acc >= target - 1e-9:
            return x
    return pairs[-1][0]


def format_value(metric: str, value: float) -> str:
    if metric == "error_rate":
        return f"{value:.1%}"
    if metric.endswith("_response_time"):
        return f"{value:,.0f} ms"
    if metric.endswith("_ai_cost"):
        return f"${value:,.2f}"
    return f"{value:g}"


def _window_label(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


class Evaluator:
    def __init__(self, config: AlertsConfig, state: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.tz = config.tz
        self._window: deque[_Entry] = deque(maxlen=MAX_INTERVALS)
        self.rules: dict[str, RuleState] = {r.name: RuleState() for r in config.enabled_rules}
        self.day: str | None = None
        self.daily_cost = 0.0
        # new_error_group, per rule: seen fingerprints, groups held during the rule's wait
        self.groups = {r.name: ErrorGroupMemory() for r in config.enabled_rules if r.metric == "new_error_group"}
        if state:
            self._restore(state)

    # -- state ------------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "timezone": self.config.timezone,
            "day": self.day,
            "daily_ai_cost": round(self.daily_cost, 9),
            "rules": {name: asdict(st) for name, st in self.rules.items()},
            "error_groups": {name: memory.snapshot() for name, memory in self.groups.items()},
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        if state.get("timezone") == self.config.timezone:  # a day in another zone is another day
            self.day = state.get("day")
            self.daily_cost = float(state.get("daily_ai_cost") or 0.0)
        for name, saved in (state.get("rules") or {}).items():
            if name in self.rules and isinstance(saved, dict):
                self.rules[name] = RuleState(**{k: saved[k] for k in RuleState.__slots__ if k in saved})
        saved_groups = state.get("error_groups")
        for name, memory in self.groups.items():
            if isinstance(saved_groups, dict):
                if isinstance(saved_groups.get(name), dict):
                    memory.restore(saved_groups[name])
            else:  # the state before one memory per rule: one shared memory at the top level, for every rule
                memory.restore(state)

    # -- evaluation -------------------------------------------------------------------------------------------
    def local_day(self, now: float) -> str:
        return datetime.fromtimestamp(now, self.tz).date().isoformat()

    def evaluate(self, signals: Signals, now: float) -> list[AlertEvent]:
        """Fold one interval's signals in and return the events it causes (in rule order)."""
        day = self.local_day(now)
        if day != self.day:
            self.day, self.daily_cost = day, 0.0
        self.daily_cost += max(0.0, float(signals.ai_cost_usd or 0.0))
        lat = array("d", sorted(list(signals.latency_ms)[:MAX_SAMPLES_PER_INTERVAL]))  # sorted runs: cheap merge
        weight = max(1.0, int(signals.requests) / len(lat)) if lat else 1.0
        self._window.append(
            _Entry(
                now,
                int(signals.requests),
                int(signals.errors),
                lat,
                weight,
                signals.p95_ms,
                float(signals.ai_cost_usd or 0.0),
            )
        )
        horizon = now - self.config.max_window
        while self._window and self._window[0].at <= horizon:
            self._window.popleft()
        events: list[AlertEvent] = []
        for rule in self.config.enabled_rules:
            if rule.metric == "new_error_group":
                events.extend(self._error_groups(rule, signals, now))
            else:
                events.extend(self._threshold(rule, self.read(rule, now), now))
        return events

    def read(self, rule: Rule, now: float) -> _Reading:
        """The rule's metric value now (None when the window holds fewer than ``min_samples``)."""
        if rule.metric == "daily_ai_cost":
            return _Reading(self.daily_cost, f"${self.daily_cost:,.2f} spent today ({self.day}, {self.tz.key})")
        entries = [e for e in self._window if e.at > now - rule.window]
        span = _window_label(rule.window)
        requests = sum(e.requests for e in entries)
        errors = sum(e.errors for e in entries)
        if rule.metric == "error_rate":
            if requests < rule.min_samples:
                return _Reading(None)
            rate = errors / requests
            return _Reading(rate, f"error rate {rate:.1%} ({errors}/{requests} requests over {span})")
        if rule.metric == "error_count":
            ok = requests >= rule.min_samples
            return _Reading(float(errors) if ok else None, f"{errors} errors over {span}")
        if rule.metric == "request_count":
            ok = len(entries) >= rule.min_samples
            return _Reading(float(requests) if ok else None, f"{requests} requests over {span}")
        if rule.metric == "window_ai_cost":
            cost = sum(e.cost for e in entries)
            return _Reading(cost, f"${cost:,.2f} AI cost over {span}")
        match = PERCENTILE_RE.match(rule.metric)
        if match:
            q = float(match.group(1))
            groups = [(e.latency_ms, e.weight) for e in entries if e.latency_ms]
            n = sum(len(xs) for xs, _ in groups)
            if n:
                if max(n, requests) < rule.min_samples:
                    return _Reading(None)
                value = weighted_percentile(groups, q)
                return _Reading(
                    value,
                    f"p{q:g} response time {value:,.0f} ms ({max(n, requests)} requests, {n} samples over {span})",
                )
            p95s = [e.p95_ms for e in entries if e.p95_ms is not None]
            if q == 95 and p95s and requests >= rule.min_samples:  # no samples: worst interval p95
                value = max(p95s)
                return _Reading(value, f"p95 response time {value:,.0f} ms (worst interval over {span})")
        return _Reading(None)

    def _threshold(self, rule: Rule, reading: _Reading, now: float) -> list[AlertEvent]:
        st = self.rules[rule.name]
        if reading.value is None:
            return []
        if rule.breached(reading.value):
            if not st.firing:
                st.firing, st.since, st.notified = True, now, False
            since_last = None if st.last_notified is None else now - st.last_notified
            if not st.notified and (since_last is None or since_last >= rule.wait):
                st.notified, st.last_notified = True, now
                return [self._event("fire", rule, reading, now)]
            if st.notified and rule.renotify and rule.wait > 0 and since_last is not None and since_last >= rule.wait:
                st.last_notified = now
                return [self._event("fire", rule, reading, now, reminder=True)]
            return []
        if st.firing and rule.cleared(reading.value):
            notified = st.notified
            st.firing, st.notified, st.since = False, False, None
            if notified:
                return [self._event("resolve", rule, reading, now)]
        return []

    def _event(self, kind: str, rule: Rule, reading: _Reading, now: float, reminder: bool = False) -> AlertEvent:
        cmp = rule.comparison if kind == "fire" else {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[rule.comparison]
        head = {"fire": "still firing" if reminder else "FIRING", "resolve": "RESOLVED"}[kind]
        limit = (rule.threshold or 0.0) if kind == "fire" or rule.resolve_threshold is None else rule.resolve_threshold
        what = "threshold" if limit == rule.threshold else "resolve threshold"
        text = f"{rule.name} {head}: {reading.detail} {cmp} {what} {format_value(rule.metric, limit)}"
        return AlertEvent(
            kind,
            rule.name,
            reading.value,
            rule.threshold,
            text,
            rule.level if kind == "fire" else "INFO",
            rule.channels,
            rule.wait,
            now,
            reminder=reminder,
        )

    def _error_groups(self, rule: Rule, signals: Signals, now: float) -> list[AlertEvent]:
        st = self.rules[rule.name]
        waiting = rule.wait > 0 and st.last_notified is not None and now - st.last_notified < rule.wait
        groups, more = self.groups[rule.name].take(signals.new_error_groups or (), waiting=waiting)
        if not groups:
            return []
        st.last_notified = now
        events = []
        shown, rest = groups[: rule.max_per_interval], len(groups) - rule.max_per_interval + more
        for i, group in enumerate(shown):
            text = group_text(group)
            if rest > 0 and i == len(shown) - 1:
                text += f" (and {rest} more new error groups not listed)"
            events.append(
                AlertEvent(
                    "fire",
                    rule.name,
                    float(group.get("count") or 1),
                    None,
                    text,
                    rule.level,
                    rule.channels,
                    rule.wait,
                    now,
                    key=str(group["fingerprint"]),
                    subject=str(group.get("type") or "Error")[:40],
                )
            )
        return events
