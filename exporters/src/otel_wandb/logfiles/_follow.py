"""``ai-diary-logs --follow``: tail the collector's log files across rotations without losing a line."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from otel_wandb.logfiles._files import Entry, parse_line


class _Tail:
    """One followed path: an open handle and the partial last line. The collector rotates by renaming, so the old
    handle stays readable after a rotation: it is drained to EOF before the new file is opened (from its start)."""

    def __init__(self, path: Path) -> None:
        self.path, self.partial = path, b""
        self.fh: BinaryIO | None = None
        self._open(at_end=True)

    def _open(self, at_end: bool) -> None:
        try:
            self.fh = open(self.path, "rb")
        except FileNotFoundError:
            self.fh = None
            return
        if at_end:
            self.fh.seek(0, 2)

    def lines(self) -> list[str]:
        """Complete lines appended since the last call (a rotation's last lines first, then the new file's)."""
        if self.fh is None:
            self._open(at_end=False)  # appeared after start (or after a rotation): read it from its start
            if self.fh is None:
                return []
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None  # renamed, the new file not created yet: keep draining the old handle
        own = os.fstat(self.fh.fileno())
        if current is not None and current.st_ino == own.st_ino and own.st_size < self.fh.tell():
            self.fh.seek(0)  # truncated in place: start over
            self.partial = b""
        out = self._split(self.fh.read())
        if current is not None and current.st_ino != own.st_ino:  # rotated: the old file is complete now
            out += self._split(self.fh.read())
            if self.partial.strip():
                out.append(self.partial.decode("utf-8", "replace"))
            self.fh.close()
            self.partial = b""
            self._open(at_end=False)
            out += self.lines() if self.fh is not None else []
        return out

    def _split(self, chunk: bytes) -> list[str]:
        if not chunk:
            return []
        parts = (self.partial + chunk).split(b"\n")
        self.partial = parts.pop()
        return [p.decode("utf-8", "replace") for p in parts]

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def follow(paths: list[Path], poll_s: float = 0.25, stop: Callable[[], bool] = lambda: False) -> Iterator[Entry]:
    """Yield records appended to ``paths`` from now on. Across a rotation (rename, then a new file) nothing is lost:
    the renamed file is read to its end before the new one is read from its start; a truncated file is reread."""
    tails = [_Tail(p) for p in paths]
    try:
        while not stop():
            got = False
            for tail in tails:
                for line in tail.lines():
                    if line.strip():
                        got = True
                        try:
                            yield from parse_line(line, tail.path.name)
                        except (ValueError, TypeError, AttributeError):
                            pass
            if not got:
                time.sleep(poll_s)
    finally:
        for tail in tails:
            tail.close()
