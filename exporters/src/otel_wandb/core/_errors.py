"""Error fingerprints, bounded error groups and the errors of one interval (pure).

Fingerprint = sha1 of ``type | normalized message | top in-app frame``:
- the message is normalized, content-free by construction (error messages quote their input, and this message
  goes to W&B tables and alerts; the policy, in this order):
  1. quoted literals (``'...'``/``"..."``, backslash escapes and newlines inside included, any length) ->
     ``<str>``; then everything from a quote left open (a literal cut off, or a stray apostrophe) -> ``<str>``;
  2. only the first non-blank line is kept: database drivers put the failing row and the statement on later lines
     (``DETAIL: Failing row contains (...)``, ``[SQL: ...]``, ``[parameters: ...]``), and so do tracebacks;
  3. everything from ``DETAIL:``/``HINT:``/``[SQL:``/``[parameters:`` on is dropped (same, on one line);
  4. parenthesized and bracketed literals (``(1, 'x', ...)``, ``[...]``) -> ``<lit>``, innermost first, and
     everything from a bracket left open -> ``<lit>``. A group holding only an exception type or an API error
     code names the error, not input, and stays: a CamelCase name ending in Error/Exception/Warning/Violation/
     Failure/Timeout/Exit/Interrupt after an optional dotted path of lower-case modules
     (``(sqlite3.IntegrityError)``), a CamelCase name in an ``errors``/``exceptions``/``exc`` module
     (``(psycopg.errors.UniqueViolation)``), a snake_case code ending in ``_error``/``_exceeded``/``_failed``/
     ``_timeout``/``_not_found``/``_invalid`` (``(invalid_request_error)``, ``(rate_limit_exceeded)``) or one of a
     few OpenAI error codes (``insufficient_quota``, ``invalid_api_key``...). Anything else -- ``(john.smith)``,
     ``(my_diary.txt)``, ``(user_12345)`` -- is a literal;
  5. UUIDs -> ``<uuid>``, hex (0x.. or >= 8 hex digits) -> ``<hex>``, numbers -> ``<num>`` (fingerprints only:
     ``scrub_message``, used for span status and exception text, keeps them -- an HTTP status is worth reading),
     whitespace collapsed, truncated to 200 characters -- truncation comes LAST, so it can never open a quote.
  Unquoted free text in the first line (``raise ValueError(f"bad {text}")``) cannot be told apart from a
  message and is kept: the app must quote (``!r``) what it puts into exception messages.
  Input is read up to 64 KiB (CPU bound); a literal crossing that bound is an open quote and is cut.
- the top in-app frame is the innermost ``File "...", line N, in func`` of a Python traceback that is not under
  ``site-packages``/``dist-packages``/the standard library, rendered as ``<file basename>:<func>`` (line numbers
  are left out so that an unrelated edit above the frame keeps the group).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field

from otel_wandb import records as r

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.DOTALL)
_TAIL = re.compile(r"\b(?:DETAIL|HINT):|\[(?:SQL|parameters):")
_GROUPED = re.compile(r"\([^()\[\]]+\)|\[[^()\[\]]+\]")
_MARKS = re.compile("[\0-\3]")  # the placeholders strip_literals uses
_TYPE_NAME = re.compile(  # see step 4: what a parenthesized group may hold to stay (nothing a person could write)
    r"\(("
    r"(?:[a-z_][a-z0-9_]*\.)*[A-Z][A-Za-z0-9]*(?:Error|Exception|Warning|Violation|Failure|Timeout|Exit|Interrupt)"
    r"|(?:[a-z_][a-z0-9_]*\.)*(?:errors|exceptions|exc)\.[A-Z][A-Za-z0-9]*"
    r"|[a-z][a-z0-9]*(?:_[a-z0-9]+)*_(?:error|exceeded|failed|timeout|not_found|invalid)"
    r"|insufficient_quota|invalid_api_key|content_filter|content_policy_violation|unsupported_parameter"
    r"|invalid_value|invalid_type|invalid_json|model_not_found"
    r")\)"
)
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b")
_NUM = re.compile(r"(?<![A-Za-z_<])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_WS = re.compile(r"\s+")
_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')
_NOT_IN_APP = ("site-packages", "dist-packages", "/lib/python", "<frozen", "\\lib\\")

MAX_MESSAGE = 200
MAX_INPUT = 65536


def _cut_open(text: str, openers: str, mark: str) -> str:
    cut = min((i for i in map(text.find, openers) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut] + mark


def strip_quoted(message: str) -> str:
    """Quoted literals -> ``<str>``, then everything from a quote left open on (steps 1 of the policy)."""
    return _cut_open(_QUOTED.sub("<str>", message), "'\"", "<str>")


def strip_literals(message: str) -> str:
    """Steps 1-4 of the policy: what is left names the error, not its input."""
    m = strip_quoted(_MARKS.sub("", message[:MAX_INPUT]))
    m = m.lstrip().split("\n", 1)[0].split("\r", 1)[0]
    tail = _TAIL.search(m)
    if tail:
        m = m[: tail.start()]
    m = m.replace("()", "\0").replace("[]", "\1")  # empty calls/indexes (``int()``) are not literals
    m = _TYPE_NAME.sub("\2\\1\3", m)  # type names: brackets hidden from _GROUPED, restored below
    for _ in range(8):  # nested groups, innermost first
        m, n = _GROUPED.subn("<lit>", m)
        if not n:
            break
    m = _cut_open(m, "([", "<lit>")
    return m.replace("\0", "()").replace("\1", "[]").replace("\2", "(").replace("\3", ")")


def _normalize(message: str, numbers: bool) -> str:
    m = _HEX.sub("<hex>", _UUID.sub("<uuid>", strip_literals(message)))
    if numbers:
        m = _NUM.sub("<num>", m)
    return _WS.sub(" ", m).strip()[:MAX_MESSAGE]


def normalize_message(message: str) -> str:
    """The whole policy: the grouping key of an error (and the message of the W&B tables and alerts)."""
    return _normalize(message, numbers=True)


def scrub_message(message: str) -> str:
    """The policy but numbers: content-free text to show (span status descriptions, exception messages)."""
    return _normalize(message, numbers=False)


def top_app_frame(stacktrace: str) -> str:
    best = ""
    for path, func in _FRAME.findall(stacktrace or ""):
        if any(marker in path for marker in _NOT_IN_APP):
            continue
        best = f"{path.replace(chr(92), '/').rsplit('/', 1)[-1]}:{func}"
    return best


@functools.lru_cache(maxsize=4096)
def fingerprint(exc_type: str, message: str, stacktrace: str = "") -> tuple[str, str, str]:
    """Return ``(fingerprint, normalized message, top in-app frame)`` (cached: the same error comes back often, and
    its normalization is the regex work of every error)."""
    norm = normalize_message(message or "")
    frame = top_app_frame(stacktrace)
    digest = hashlib.sha1(f"{exc_type}|{norm}|{frame}".encode("utf-8", "replace")).hexdigest()[:16]
    return digest, norm, frame


@dataclass(slots=True)
class ErrorGroup:
    fingerprint: str
    type: str
    message: str
    frame: str
    count: int = 0
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    sample_trace_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, str | int | list[str]]:
        return {
            "fingerprint": self.fingerprint,
            "type": self.type,
            "message": self.message,
            "frame": self.frame,
            "count": self.count,
            "first_seen_ns": self.first_seen_ns,
            "last_seen_ns": self.last_seen_ns,
            "sample_trace_ids": list(self.sample_trace_ids),
        }


class ErrorGroups:
    """Bounded map fingerprint -> group; when full, the least recently seen group is evicted."""

    def __init__(self, max_groups: int = 500, max_samples: int = 5) -> None:
        self.max_groups = max_groups
        self.max_samples = max_samples
        self.groups: dict[str, ErrorGroup] = {}
        self.evicted = 0

    def record(
        self, exc_type: str, message: str, stacktrace: str, trace_id: str | None, time_ns: int
    ) -> tuple[ErrorGroup, bool]:
        fp, norm, frame = fingerprint(exc_type, message, stacktrace)
        group = self.groups.pop(fp, None)  # pop + reinsert keeps dict order = recency
        is_new = group is None
        if group is None:
            if len(self.groups) >= self.max_groups:
                del self.groups[next(iter(self.groups))]
                self.evicted += 1
            group = ErrorGroup(fp, exc_type, norm, frame, first_seen_ns=time_ns)
        self.groups[fp] = group
        group.count += 1
        group.last_seen_ns = max(group.last_seen_ns, time_ns)
        if trace_id and len(group.sample_trace_ids) < self.max_samples and trace_id not in group.sample_trace_ids:
            group.sample_trace_ids.append(trace_id)
        return group, is_new


# -- the errors of one interval -----------------------------------------------------------------------------
# Errors of one interval -> the ``recent_errors`` rows, error groups and new-group signals (pure; used by
# ``core.Aggregator``, see its docstring for what counts as an error).
#
# One exception is one occurrence per trace: the same fingerprint seen again in a trace (on an ancestor span, or
# as the log record of the exception the request span recorded) is not counted twice. Exception types are grouped
# by their unqualified name: the SDK's span events carry ``module.Qualname``, its log records ``__name__``.
MAX_TRACE_KEYS = 10_000  # (trace id, fingerprint) pairs remembered per interval for the dedup


def short_type(name: str) -> str:
    """``sqlite3.IntegrityError`` -> ``IntegrityError``."""
    return name.rsplit(".", 1)[-1] if name else name


class ErrorSection:
    def __init__(self, max_groups: int, max_rows: int, message_chars: int) -> None:
        self.groups = ErrorGroups(max_groups)
        self.max_rows = max_rows
        self.message_chars = message_chars
        self.reset_tables()
        self.reset()

    def reset(self) -> None:
        """A new interval: its counts (the rows of the tables stay until ``reset_tables``)."""
        self.occurrences = 0
        self.new_groups: list[dict[str, str | int | list[str]]] = []
        self._keys: set[tuple[str | None, str]] = set()

    def reset_tables(self) -> None:
        """The tables were written: the next ones start empty."""
        self.rows: list[list[str | float]] = []
        self.dirty = False  # a group changed: the error_groups table is due
        self._waiting: dict[str, list[list[str | float]]] = {}  # trace id -> rows without a route yet

    def exception(self, time_ns: int, trace_id: str | None, route: str, e: r.ExceptionInfo) -> None:
        self.record(time_ns, trace_id, route, short_type(e.type), e.message, e.stacktrace)

    def log(self, rec: r.LogRecord) -> None:
        """A log at ERROR or above: its exception if it carries one, else ``log:<scope>`` + body."""
        attrs = rec.attributes or {}
        etype = attrs.get("exception.type")
        if etype:
            self.record(
                rec.time_ns,
                rec.trace_id,
                "",
                short_type(str(etype)),
                str(attrs.get("exception.message") or ""),
                str(attrs.get("exception.stacktrace") or ""),
            )
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
            row: list[str | float] = [
                time_ns / 1e9,
                trace_id or "",
                route or "",
                etype,
                group.message[: self.message_chars],
                group.fingerprint,
            ]
            self.rows.append(row)
            if trace_id and not route:
                self._waiting.setdefault(trace_id, []).append(row)
