"""The demo's privacy check: grep every telemetry sink under DEMO_OUT for the canary, the users' API tokens and
names, and the service's secrets (PSEUDONYM_SECRET, OPENAI_API_KEY).

Sinks are the collector's log files, its queue storage, the W&B run directories (raw bytes, and the records decoded
with ``otel_wandb.runfile``, because a record may straddle a 32 KiB block of the ``.wandb``
file), the stdout captures of every child process and the HTML report. The database is not a sink: it stores the
diary entries by design.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from otel_wandb import runfile

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass
class Hit:
    sink: str
    path: Path
    secret: str  # "canary", or the kind of another secret ("API token", "user name", "service secret")
    context: str


@dataclass
class ScanResult:
    sinks: dict[str, int] = field(default_factory=dict)  # sink -> files scanned
    bytes_scanned: int = 0
    hits: list[Hit] = field(default_factory=list)
    decoded_runs: int = 0
    control_hits: int = 0  # canary occurrences in the database: proof the canary was really sent

    @property
    def sinks_with_canary(self) -> list[str]:
        return sorted({h.sink for h in self.hits if h.secret == "canary"})

    @property
    def sinks_with_other(self) -> list[str]:
        """Sinks holding a token, a user name or a service secret."""
        return sorted({h.sink for h in self.hits if h.secret != "canary"})


def needles(text: str) -> list[bytes]:
    """The forms a string takes on disk: UTF-8, and JSON-escaped (non-ASCII as \\uXXXX)."""
    forms = {text.encode(), json.dumps(text)[1:-1].encode(), json.dumps(text, ensure_ascii=False)[1:-1].encode()}
    return [f for f in forms if f]


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            log.warning("skipping %s: larger than %d bytes", path, MAX_FILE_BYTES)
            return b""
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        return data
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return b""


def _context(data: bytes, at: int) -> str:
    return data[max(0, at - 60) : at + 60].decode("utf-8", "replace").replace("\n", " ")


def sink_files(out_dir: Path, extra: Mapping[str, Sequence[Path]] | None = None) -> dict[str, list[Path]]:
    """Every file of every sink under ``out_dir``, grouped by sink name."""
    groups = {
        "collector log files": out_dir / "logs",
        "collector queue storage": out_dir / "queue",
        "W&B run files": out_dir / "wandb",
        "process stdout captures": out_dir / "stdout",
        "W&B debug logs and staging (cache, tmp)": out_dir / "cache",
        "temporary files": out_dir / "tmp",
    }
    found: dict[str, list[Path]] = {}
    for sink, root in groups.items():
        if root.exists():
            found[sink] = sorted(p for p in root.rglob("*") if p.is_file())
    for sink, paths in (extra or {}).items():
        found.setdefault(sink, []).extend(p for p in paths if p.is_file())
    return found


def _decoded_runs(wandb_dir: Path) -> Iterable[tuple[Path, bytes]]:
    """Each offline run read back through otel_wandb.runfile, serialised, so straddling records are seen whole."""
    for run_dir in runfile.find_runs(wandb_dir):
        try:
            run = runfile.read_run(run_dir)
        except Exception as exc:  # a reader bug must not hide the raw-byte scan
            log.warning("could not decode %s: %s", run_dir, exc)
            continue
        doc = {
            "history": run.history,
            "summary": run.summary,
            "alerts": run.alerts,
            "config": run.config,
            "tables": run.tables,
        }
        yield run_dir, json.dumps(doc, default=str, ensure_ascii=False).encode()


def scan(
    out_dir: Path,
    canary: str,
    others: Mapping[str, Sequence[str]] | None = None,
    extra: Mapping[str, Sequence[Path]] | None = None,
) -> ScanResult:
    """``others`` maps a kind ("API token", ...) to the strings of that kind that must not appear either."""
    result = ScanResult()
    secrets = [("canary", n) for n in needles(canary)]
    secrets += [(kind, n) for kind, values in (others or {}).items() for v in values if v for n in needles(v)]

    def check(sink: str, path: Path, data: bytes) -> None:
        result.bytes_scanned += len(data)
        for kind, needle in secrets:
            at = data.find(needle)
            if at >= 0:
                result.hits.append(Hit(sink, path, kind, _context(data, at)))

    for sink, paths in sink_files(out_dir, extra).items():
        result.sinks[sink] = len(paths)
        for path in paths:
            check(sink, path, _read(path))
    db = out_dir / "db"
    if db.exists():
        result.control_hits = sum(_read(p).count(canary.encode()) for p in db.rglob("*") if p.is_file())
    for path, data in _decoded_runs(out_dir / "wandb"):
        result.decoded_runs += 1
        check("W&B run files", path, data)
    return result
