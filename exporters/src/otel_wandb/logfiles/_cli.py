"""The ``ai-diary-logs`` command line (see the package docstring for examples)."""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO, TypedDict

from otel_wandb.config import LOG_DIR
from otel_wandb.config import log_dir as default_log_dir
from otel_wandb.logfiles._files import SEVERITY_BY_NAME, STREAMS, Entry, entries, read_file
from otel_wandb.logfiles._follow import follow

# Attribute keys that may carry the pseudonymous user id, first match wins.
USER_KEYS = ("enduser.pseudo.id", "enduser.id", "user.pseudo_id", "user.id", "audit.actor", "actor")
ROUTE_KEYS = ("http.route", "url.path", "http.target")
ACTION_KEYS = ("audit.action", "action")
_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> int:
    """ISO 8601 (``2026-11-29T12:00``, ``Z`` or offset; naive means UTC) or relative (``15m``, ``2h``, ``1d``)
    → Unix nanoseconds."""
    now = now or datetime.now(UTC)
    m = _REL.match(text.strip())
    if m:
        ts = now - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    else:
        try:
            ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a time: {text!r} (use ISO 8601 or e.g. 15m, 2h, 1d)") from None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1e9)


def parse_severity(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return SEVERITY_BY_NAME[text.upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown severity {text!r}: one of {', '.join(SEVERITY_BY_NAME)} or 1-24"
        ) from None


def non_negative(text: str, least: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}")
    return value


def positive(text: str) -> int:
    return non_negative(text, least=1)


def _first(entry: Entry, keys: Sequence[str]) -> object:
    for key in keys:
        value = entry.attributes.get(key)
        if value is not None:
            return value
    return None


def _match(pattern: str, value: object) -> bool:
    if value is None:
        return False
    text = str(value)
    return fnmatch.fnmatchcase(text, pattern) if any(c in pattern for c in "*?[") else text == pattern


def build_filter(args: argparse.Namespace) -> Callable[[Entry], bool]:
    tests: list[Callable[[Entry], bool]] = []
    if args.severity is not None:
        tests.append(lambda e: e.severity_number >= args.severity)
    if args.since is not None:
        tests.append(lambda e: e.time_ns >= args.since)
    if args.until is not None:
        tests.append(lambda e: e.time_ns <= args.until)
    if args.route:
        tests.append(lambda e: _match(args.route, _first(e, ROUTE_KEYS)))
    if args.trace_id:
        tid = args.trace_id.lower()
        tests.append(lambda e: e.trace_id == tid)
    if args.user:
        tests.append(lambda e: _match(args.user, _first(e, USER_KEYS)))
    if args.action:
        tests.append(lambda e: _match(args.action, _first(e, ACTION_KEYS)))
    if args.grep:
        needle = args.grep.lower()
        tests.append(lambda e: needle in e.body.lower())
    for spec in args.where or ():
        key, _, pattern = spec.partition("=")
        tests.append(_where(key, pattern))
    return lambda e: all(t(e) for t in tests)


def _where(key: str, pattern: str) -> Callable[[Entry], bool]:
    return lambda e: _match(pattern, e.get(key))


class ErrorCount(TypedDict):
    """One row of ``--top-errors``."""

    count: int
    error: str
    first: str  # time_iso of the first and last occurrence
    last: str
    example: str


_NORMALIZE = [
    (re.compile(r"\b[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"\b\d+(\.\d+)?\b"), "<n>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<s>"),
]


def error_group_key(entry: Entry) -> str:
    """Exception type + message with numbers, ids and quoted values masked, so similar errors group together."""
    message = str(entry.attributes.get("exception.message") or entry.body or "")
    for rx, repl in _NORMALIZE:
        message = rx.sub(repl, message)
    etype = entry.attributes.get("exception.type")
    return f"{etype}: {message}" if etype else message


def top_errors(items: Iterable[Entry], n: int, min_severity: int = SEVERITY_BY_NAME["ERROR"]) -> list[ErrorCount]:
    groups: dict[str, ErrorCount] = {}
    for e in items:
        if e.severity_number < min_severity:
            continue
        key = error_group_key(e)
        g = groups.setdefault(
            key, {"count": 0, "error": key, "first": e.time_iso, "last": e.time_iso, "example": e.body}
        )
        g["count"] += 1
        g["first"] = min(g["first"], e.time_iso)
        g["last"] = max(g["last"], e.time_iso)
    return sorted(groups.values(), key=lambda g: (-g["count"], g["error"]))[:n]


def group_counts(items: Iterable[Entry], keys: Sequence[str]) -> list[dict[str, object]]:
    counts = Counter(tuple(str(e.get(k)) for k in keys) for e in items)
    return [dict(zip(keys, k), count=c) for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _cell(value: object, width: int) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(rows: Sequence[Mapping[str, object]], out: TextIO, max_width: int = 80) -> None:
    if not rows:
        return
    cols = list(rows[0])
    widths = {c: min(max_width, max(len(c), *(len(_cell(r.get(c), max_width)) for r in rows))) for c in cols}
    out.write("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(_cell(r.get(c), widths[c]).ljust(widths[c]) for c in cols).rstrip() + "\n")


def entry_row(e: Entry) -> dict[str, object]:
    route = _first(e, ROUTE_KEYS)
    action = _first(e, ACTION_KEYS)
    return {
        "time": e.time_iso,
        "severity": e.severity,
        "scope": e.scope,
        "route/action": route if route is not None else (action or ""),
        "trace_id": e.trace_id[:16],
        "body": e.body,
    }


def emit(e: Entry, fmt: str, out: TextIO) -> None:
    if fmt == "jsonl":
        out.write(json.dumps(e.to_json(), ensure_ascii=False, default=str) + "\n")
    else:
        r = entry_row(e)
        out.write(
            f"{r['time']}  {r['severity']:<5}  {_cell(r['route/action'], 28):<28}  {r['trace_id']:<16}  "
            f"{_cell(r['body'], 200)}\n"
        )
    out.flush()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ai-diary-logs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--log-dir", type=Path, default=None, help=f"collector log directory (default ${LOG_DIR} or ./logs)")
    p.add_argument(
        "--stream",
        "-s",
        action="append",
        choices=STREAMS,
        help="which file(s): combined (default), error, audit; repeatable",
    )
    p.add_argument("--file", action="append", type=Path, default=[], help="read this file instead (repeatable)")
    p.add_argument("--severity", "--level", type=parse_severity, help="minimum severity (INFO, WARN, ERROR or 1-24)")
    p.add_argument("--since", type=parse_time, help="from this time (ISO 8601 or relative: 15m, 2h, 1d)")
    p.add_argument("--until", type=parse_time, help="up to this time (ISO 8601 or relative)")
    p.add_argument("--route", help="http.route, exact or glob (e.g. '/api/entries*')")
    p.add_argument("--trace-id", help="32-hex trace id")
    p.add_argument("--user", help="pseudonymous user id (as logged; glob allowed)")
    p.add_argument("--action", help="audit action (audit.action), exact or glob")
    p.add_argument("--grep", help="case-insensitive substring of the body")
    p.add_argument("--where", action="append", metavar="KEY=GLOB", help="any field or attribute (repeatable)")
    mode = p.add_mutually_exclusive_group()  # one output mode: records (default), counts, error groups or a tail
    mode.add_argument("--group-by", action="append", metavar="FIELD", help="print counts per value (repeatable)")
    mode.add_argument("--top-errors", type=positive, metavar="N", help="print the N (>= 1) most frequent error groups")
    p.add_argument("--limit", type=non_negative, help="print at most N records (the last N without --follow)")
    mode.add_argument("--follow", "-F", action="store_true", help="keep printing new records (Ctrl-C to stop)")
    p.add_argument("--format", choices=("table", "jsonl"), default="table")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    log_dir = args.log_dir or default_log_dir()
    streams = args.stream or ["combined"]
    if not args.file and not log_dir.is_dir():
        print(f"ai-diary-logs: log directory not found: {log_dir} (set {LOG_DIR} or --log-dir)", file=sys.stderr)
        return 2
    keep = build_filter(args)
    if args.follow:
        paths = args.file or [log_dir / f"{s}.log" for s in streams]
        try:
            for e in follow(paths):
                if keep(e):
                    emit(e, args.format, out)
        except KeyboardInterrupt:
            pass
        return 0
    if args.file:
        source: Iterable[Entry] = (e for f in args.file for e in read_file(f))
    else:
        source = entries(log_dir, streams)
    selected = sorted((e for e in source if keep(e)), key=lambda e: e.time_ns)  # stable: file order on ties
    if args.group_by or args.top_errors is not None:
        rows: Sequence[Mapping[str, object]] = (
            group_counts(selected, args.group_by)
            if args.group_by
            else top_errors(selected, args.top_errors, args.severity or SEVERITY_BY_NAME["ERROR"])
        )
        if not rows:
            print("ai-diary-logs: no matching records", file=sys.stderr)
        if args.format == "jsonl":
            for r in rows:
                out.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        else:
            print_table(rows, out)
        return 0
    if args.limit is not None:
        selected = selected[-args.limit :] if args.limit else []
    for e in selected:
        emit(e, args.format, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
