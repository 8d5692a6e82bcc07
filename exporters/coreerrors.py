"""Errors of one interval -> the ``recent_errors`` rows, error groups and new-group signals (pure; used by
``core.Aggregator``, see its docstring for what counts as an error).

One exception is one occurrence per trace: the same fingerprint seen again in a trace (on an ancestor span, or
as the log record of the exception the request span recorded) is not counted twice. Exception types are grouped
by their unqualified name: the SDK's span events carry ``module.Qualname``, its log records ``__name__``.
"""

from __future__ import annotations

from . import records as r
from .errors import ErrorGroups

MAX_TRACE_KEYS = 10_000  # (trace id, fingerprint) pairs remembered per interval for the dedup


def short_type(name: str) -> str:
    """``sqlite3.IntegrityError`` -> ``IntegrityError``."""
    return name.rsplit(".", 1)[-1] if name else name


class ErrorSection:
    def __init__(self, max_groups: int, max_rows: int, message_chars: int) -> None:
        self.groups = ErrorGroups(max_groups)
        self.max_rows = max_rows
        self.message_chars = message_chars
        self.reset()

    def reset(self) -> None:
        self.rows: list[list] = []
        self.occurrences = 0
        self.new_groups: list[dict] = []
        self.dirty = False  # a group changed: the error_groups table is due
        self._keys: set[tuple] = set()
        self._waiting: dict[str, list[list]] = {}  # trace id -> rows without a route yet

    def exception(self, time_ns: int, trace_id: str | None, route: str, e: r.ExceptionInfo) -> None:
        self.record(time_ns, trace_id, route, short_type(e.type), e.message, e.stacktrace)

    def log(self, rec: r.LogRecord) -> None:
        """A log at ERROR or above: its exception if it carries one, else ``log:<scope>`` + body."""
        attrs = rec.attributes or {}
        etype = attrs.get("exception.type")
        if etype:
            self.record(rec.time_ns, rec.trace_id, "", short_type(str(etype)),
                        str(attrs.get("exception.message") or ""), str(attrs.get("exception.stacktrace") or ""))
            return
        body = rec.body if isinstance(rec.body, str) else str(rec.body)
        # whole body: the group normalizes it (content-free) before anything is cut
        self.record(rec.time_ns, rec.trace_id, "", f"log:{rec.scope or 'root'}", body, "")

    def server_span(self, trace_id: str, route: str) -> None:
        """The trace's server span arrived: rows recorded earlier from its children get its route."""
        if self._waiting and trace_id in self._waiting:
            for row in self._waiting.pop(trace_id):
                row[2] = row[2] or route

    def record(self, time_ns: int, trace_id: str | None, route: str, etype: str, message: str, stack: str) -> None:
        group, new = self.groups.record(etype or "Error", message or "", stack or "", trace_id, time_ns)
        key = (trace_id, group.fingerprint)
        if trace_id and key in self._keys:
            group.count -= 1  # the same error seen again in the same trace
            return
        self.occurrences += 1
        self.dirty = True
        if new:
            self.new_groups.append(group.as_dict())
        if trace_id and len(self._keys) < MAX_TRACE_KEYS:
            self._keys.add(key)
        if len(self.rows) < self.max_rows:
            # the group's normalized, content-free message: never the raw one (it may quote the user's input)
            row = [time_ns / 1e9, trace_id or "", route or "", etype, group.message[: self.message_chars],
                   group.fingerprint]
            self.rows.append(row)
            if trace_id and not route:
                self._waiting.setdefault(trace_id, []).append(row)
