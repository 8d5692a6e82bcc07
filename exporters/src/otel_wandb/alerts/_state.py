"""A small JSON state file (daily AI cost, per-rule firing state, seen error fingerprints), written atomically.

A restart therefore neither zeroes the day's AI cost nor re-sends an alert that is still within its wait.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STATE_VERSION = 1


class StateStore:
    """Load and atomically save one JSON document (temp file in the same directory, fsync, ``os.replace``)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self._last: str | None = None

    def load(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("alert state file %s unreadable (%s): starting with empty state", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            logger.warning("alert state file %s has an unknown format: starting with empty state", self.path)
            return {}
        self._last = json.dumps(data, sort_keys=True)
        return data

    def save(self, data: Mapping[str, Any]) -> bool:
        """Write ``data`` if it changed; never raises (a failed write is logged and retried next time)."""
        if self.path is None:
            return False
        text = json.dumps({**data, "version": STATE_VERSION}, sort_keys=True)
        if text == self._last:
            return False
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".alerts-state-", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            tmp = None
            self._last = text
            return True
        except OSError as exc:
            logger.warning("could not write alert state file %s: %s", self.path, exc)
            return False
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
