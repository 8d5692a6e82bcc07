"""Read an offline W&B run back from disk (wandb 0.31 has no Python reader for ``.wandb`` files).

Format: a 7-byte header (``:W&B``, 2 bytes magic, 1 byte version), then LevelDB-log framing: 32 KiB blocks of
records ``crc32 (4) | length (2, LE) | type (1: full, 2: first, 3: middle, 4: last)`` whose payloads are
``wandb.proto.wandb_internal_pb2.Record`` messages. History items and summary updates carry ``key`` or a
``nested_key`` path with JSON values. Logged tables are files: the history value is
``{"_type": "table-file", "path": "media/table/<key>_<step>_<hash>.table.json", ...}`` and the file under the
run's ``files/`` directory holds ``{"columns": [...], "data": [[...], ...]}``.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias

logger = logging.getLogger(__name__)

HEADER_LEN = 7
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
JsonObject: TypeAlias = dict[str, Any]  # a decoded JSON object (values of any JSON type)


class _Item(Protocol):
    """A history item, summary or config update of a record (``wandb_internal_pb2``)."""

    key: str
    nested_key: Sequence[str]
    value_json: str


@dataclass
class RunData:
    run_dir: Path
    run_id: str = ""
    project: str = ""
    history: list[JsonObject] = field(default_factory=list)
    summary: JsonObject = field(default_factory=dict)
    alerts: list[JsonObject] = field(default_factory=list)
    config: JsonObject = field(default_factory=dict)
    tables: dict[str, list[JsonObject]] = field(default_factory=dict)  # key -> rows of every logged table, in order
    exit_code: int | None = None

    def series(self, key: str) -> list[Any]:
        """Values of one history key, in step order (rows without the key skipped)."""
        return [row[key] for row in self.history if key in row]


def iter_payloads(path: str | Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a .wandb file (bad header)")
    pos, buf = HEADER_LEN, b""
    n = len(data)
    while pos + 7 <= n:
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, rtype = struct.unpack_from("<IHB", data, pos)
        if rtype == 0 and length == 0:
            pos += 7
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if rtype == FULL:
            yield chunk
        elif rtype == FIRST:
            buf = chunk
        elif rtype == MIDDLE:
            buf += chunk
        elif rtype == LAST:
            yield buf + chunk
            buf = b""


def _set(target: JsonObject, item: _Item) -> None:
    path = list(item.nested_key) or [item.key]
    try:
        value = json.loads(item.value_json)
    except ValueError:
        value = item.value_json
    node = target
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return
    node[path[-1]] = value


def read_run(run_dir: str | Path) -> RunData:
    """Parse ``run-*.wandb`` in ``run_dir`` (an ``offline-run-*`` or ``run-*`` directory)."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    data = RunData(run_dir)
    for payload in iter_payloads(files[0]):
        rec = pb.Record()  # type: ignore[attr-defined]  # wandb's pb2 star-imports per protobuf version: unseen
        try:
            rec.ParseFromString(payload)
        except Exception:
            logger.warning("skipping an unreadable record in %s", files[0])
            continue
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            row: JsonObject = {}
            for item in rec.history.item:
                _set(row, item)
            data.history.append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _set(data.summary, item)
        elif kind == "alert":
            a = rec.alert
            data.alerts.append(
                {"title": a.title, "text": a.text, "level": a.level, "wait_duration": a.wait_duration / 1000.0}
            )
        elif kind == "config":
            for item in rec.config.update:
                _set(data.config, item)
        elif kind == "run":
            data.run_id, data.project = rec.run.run_id, rec.run.project
            for item in rec.run.config.update:
                _set(data.config, item)
        elif kind == "exit":
            data.exit_code = rec.exit.exit_code
    files_dir = run_dir / "files"
    for row in data.history:
        for key, value in row.items():
            if isinstance(value, dict) and value.get("_type") in ("table-file", "table") and value.get("path"):
                data.tables.setdefault(key, []).extend(_table_rows(files_dir / value["path"]))
    return data


def _table_rows(path: Path) -> list[JsonObject]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        logger.warning("table file %s missing or unreadable", path)
        return []
    cols = doc.get("columns", [])
    return [dict(zip(cols, row)) for row in doc.get("data", [])]


def is_complete(run_dir: str | Path) -> bool:
    """True once wandb has written the run's final ``exit`` record (it writes offline files asynchronously,
    after ``run.finish()`` returns)."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        return False
    last = None
    try:
        for payload in iter_payloads(files[0]):
            last = payload
    except (OSError, ValueError):
        return False
    if last is None:
        return False
    rec = pb.Record()  # type: ignore[attr-defined]  # wandb's pb2 star-imports per protobuf version: unseen
    try:
        rec.ParseFromString(last)
    except Exception:
        return False
    kind: str | None = rec.WhichOneof("record_type")
    return kind == "exit"


def wait_complete(run_dir: str | Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if is_complete(run_dir):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def find_runs(wandb_dir: str | Path) -> list[Path]:
    """Run directories under ``wandb_dir`` (``$WANDB_DIR`` or its ``wandb/`` child), oldest first."""
    base = Path(wandb_dir)
    roots = [base, base / "wandb"]
    found = {p.parent for root in roots if root.is_dir() for p in root.glob("*run-*/run-*.wandb")}
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))
