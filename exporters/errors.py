"""Error fingerprints and bounded error groups (pure).

Fingerprint = sha1 of ``type | normalized message | top in-app frame``:
- the message is normalized: quoted strings -> ``<str>``, UUIDs -> ``<uuid>``, hex (0x.. or >= 8 hex digits) ->
  ``<hex>``, numbers -> ``<num>``, whitespace collapsed, truncated to 200 characters;
- the top in-app frame is the innermost ``File "...", line N, in func`` of a Python traceback that is not under
  ``site-packages``/``dist-packages``/the standard library, rendered as ``<file basename>:<func>`` (line numbers
  are left out so that an unrelated edit above the frame keeps the group).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b")
_NUM = re.compile(r"(?<![A-Za-z_<])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_WS = re.compile(r"\s+")
_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')
_NOT_IN_APP = ("site-packages", "dist-packages", "/lib/python", "<frozen", "\\lib\\")

MAX_MESSAGE = 200


def normalize_message(message: str) -> str:
    m = _UUID.sub("<uuid>", message[:2000])
    m = _QUOTED.sub("<str>", m)
    m = _HEX.sub("<hex>", m)
    m = _NUM.sub("<num>", m)
    return _WS.sub(" ", m).strip()[:MAX_MESSAGE]


def top_app_frame(stacktrace: str) -> str:
    best = ""
    for path, func in _FRAME.findall(stacktrace or ""):
        if any(marker in path for marker in _NOT_IN_APP):
            continue
        best = f"{path.replace(chr(92), '/').rsplit('/', 1)[-1]}:{func}"
    return best


def fingerprint(exc_type: str, message: str, stacktrace: str = "") -> tuple[str, str, str]:
    """Return ``(fingerprint, normalized message, top in-app frame)``."""
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

    def as_dict(self) -> dict:
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

    def record(self, exc_type: str, message: str, stacktrace: str, trace_id: str | None, time_ns: int
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
