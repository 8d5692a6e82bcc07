"""Read the collector's log files: OTLP/JSON lines, current file plus rotated (and gzip-compressed) backups.

The collector's ``file`` exporter writes one ``ExportLogsServiceRequest``-shaped JSON object per line
(``resourceLogs`` → ``scopeLogs`` → ``logRecords``). Rotation renames the current file to
``<base>-<timestamp><ext>`` (optionally ``.gz``). :func:`entries` flattens every record into a :class:`Entry`.
Shared by ``ai-diary-logs`` (exporters/src/otel_wandb/logfiles/) and the HTML report's log source.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger(__name__)

STREAMS = ("combined", "error", "audit")

_SEVERITY_NAMES = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))
SEVERITY_BY_NAME = {
    "TRACE": 1,
    "DEBUG": 5,
    "INFO": 9,
    "WARN": 13,
    "WARNING": 13,
    "ERROR": 17,
    "FATAL": 21,
    "CRITICAL": 21,
}


def severity_name(number: int) -> str:
    for low, name in _SEVERITY_NAMES:
        if number >= low:
            return name
    return "UNSET"


@dataclass(slots=True)
class Entry:
    """One flattened log record."""

    time_ns: int
    severity_number: int
    severity_text: str
    body: str
    scope: str = ""
    trace_id: str = ""
    span_id: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    file: str = ""

    @property
    def severity(self) -> str:
        return self.severity_text.upper() if self.severity_text else severity_name(self.severity_number)

    @property
    def time_iso(self) -> str:
        ts = datetime.fromtimestamp(self.time_ns / 1e9, tz=UTC)
        return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def get(self, name: str) -> Any:
        """A field by name: built-ins (time, severity, body, scope, trace_id, span_id, file), then attributes,
        then resource attributes (``resource.<key>`` forces the resource)."""
        builtin = {
            "time": self.time_iso,
            "severity": self.severity,
            "body": self.body,
            "scope": self.scope,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "file": self.file,
        }
        if name in builtin:
            return builtin[name]
        if name.startswith("resource."):
            return self.resource.get(name[len("resource.") :])
        if name in self.attributes:
            return self.attributes[name]
        return self.resource.get(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time_iso,
            "time_unix_nano": self.time_ns,
            "severity": self.severity,
            "severity_number": self.severity_number,
            "body": self.body,
            "scope": self.scope,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "attributes": self.attributes,
            "resource": self.resource,
            "file": self.file,
        }


def any_value(value: dict[str, Any] | None) -> Any:
    """Decode an OTLP/JSON ``AnyValue``."""
    if not value:
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"]).hex()
    return None


def attributes(kvs: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: any_value(kv.get("value")) for kv in kvs or () if "key" in kv}


def _severity_number(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        name = value.upper().removeprefix("SEVERITY_NUMBER_").rstrip("0123456789")
        return SEVERITY_BY_NAME.get(name, 0) + (int(value[-1]) - 1 if value[-1:].isdigit() else 0)
    return 0


def parse_line(line: str, file: str = "") -> list[Entry]:
    """Every log record in one JSON line (an ExportLogsServiceRequest). Raises ValueError on bad JSON."""
    doc = json.loads(line)
    out: list[Entry] = []
    for rl in doc.get("resourceLogs", ()):
        resource = attributes((rl.get("resource") or {}).get("attributes"))
        for sl in rl.get("scopeLogs", ()):
            scope = (sl.get("scope") or {}).get("name", "")
            for rec in sl.get("logRecords", ()):
                number = _severity_number(rec.get("severityNumber", 0))
                time_ns = int(rec.get("timeUnixNano") or 0) or int(rec.get("observedTimeUnixNano") or 0)
                body = any_value(rec.get("body"))
                out.append(
                    Entry(
                        time_ns=time_ns,
                        severity_number=number,
                        severity_text=rec.get("severityText", "") or "",
                        body=body if isinstance(body, str) else ("" if body is None else json.dumps(body)),
                        scope=scope,
                        trace_id=(rec.get("traceId") or "").lower(),
                        span_id=(rec.get("spanId") or "").lower(),
                        attributes=attributes(rec.get("attributes")),
                        resource=resource,
                        file=file,
                    )
                )
    return out


def stream_files(log_dir: str | os.PathLike[str], stream: str) -> list[Path]:
    """The files of one stream (``combined.log`` or a file name), oldest backup first, current file last."""
    log_dir = Path(log_dir)
    name = stream if "." in stream else f"{stream}.log"
    base = Path(name)
    stem, ext = base.stem, base.suffix
    backups = [p for p in log_dir.glob(f"{stem}-*{ext}*") if p.name.endswith(ext) or p.name.endswith(ext + ".gz")]
    backups.sort(key=lambda p: p.name)
    current = log_dir / name
    return backups + ([current] if current.exists() else [])


def open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_file(path: Path) -> Iterator[Entry]:
    bad = 0
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield from parse_line(line, path.name)
            except (ValueError, TypeError, AttributeError) as exc:
                bad += 1
                log.debug("%s:%d: skipping unreadable line: %s", path, lineno, exc)
    if bad:
        log.warning("%s: skipped %d unreadable line(s)", path, bad)


def entries(log_dir: str | os.PathLike[str], streams: Iterable[str] = ("combined",)) -> Iterator[Entry]:
    for stream in streams:
        for path in stream_files(log_dir, stream):
            yield from read_file(path)


def _to_any(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_to_any(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": _to_kvs(value)}}
    return {"stringValue": str(value)}


def _to_kvs(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _to_any(v)} for k, v in attrs.items()]


def to_line(items: Iterable[Entry]) -> str:
    """Encode entries as one collector-format JSON line (grouped by resource and scope): the inverse of
    :func:`parse_line`, used to write fixtures and sample files."""
    groups: dict[str, dict[str, list[Entry]]] = {}
    for e in items:
        groups.setdefault(json.dumps(e.resource, sort_keys=True, default=str), {}).setdefault(e.scope, []).append(e)
    resource_logs = []
    for res_key, scopes in groups.items():
        resource_logs.append(
            {
                "resource": {"attributes": _to_kvs(json.loads(res_key))},
                "scopeLogs": [
                    {
                        "scope": {"name": scope},
                        "logRecords": [
                            {
                                "timeUnixNano": str(e.time_ns),
                                "observedTimeUnixNano": str(e.time_ns),
                                "severityNumber": e.severity_number,
                                "severityText": e.severity_text,
                                "body": {"stringValue": e.body},
                                "attributes": _to_kvs(e.attributes),
                                "traceId": e.trace_id,
                                "spanId": e.span_id,
                            }
                            for e in recs
                        ],
                    }
                    for scope, recs in scopes.items()
                ],
            }
        )
    return json.dumps({"resourceLogs": resource_logs}, separators=(",", ":"))
