"""One ``new_error_group`` rule's memory: seen fingerprints (bounded) and groups held back during the rule's wait.

Contract: a fingerprint is announced at most once per rule (until it falls out of the bounded memory of
``MAX_FINGERPRINTS``). With ``wait > 0`` a group that arrives less than ``wait`` seconds after the rule's last
notification is *held*, not dropped: the first evaluation once the wait has passed announces the held groups (oldest
first) together with that interval's new ones. Each evaluation names at most the rule's ``max_per_interval`` groups;
the rest -- and held groups beyond ``MAX_HELD`` -- are only counted (the last event says how many more there were)
and never named later. Held groups are part of the persisted state, stored content-free, so a restart does not lose
them either.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from otel_wandb.core import strip_literals

MAX_FINGERPRINTS = 2000  # seen error groups remembered
MAX_HELD = 200  # groups kept in full while a wait holds them back; beyond that only counted
_KEPT_KEYS = ("fingerprint", "type", "message", "count", "frame", "first_seen", "first_seen_ns", "sample_trace_ids")


def _kept(group: Mapping[str, Any]) -> dict[str, Any]:
    """What an announcement needs, content-free (held groups are written to the state file). Messages are
    stripped of literals again (``otel_wandb.core._errors``): error groups may come from elsewhere, and alerts leave the
    telemetry system."""
    out = {k: group[k] for k in _KEPT_KEYS if k in group}
    if "message" in out:
        out["message"] = strip_literals(str(out["message"]))[:500]
    if "sample_trace_ids" in out:
        out["sample_trace_ids"] = [str(t) for t in list(out["sample_trace_ids"] or ())[:3]]
    return out


class ErrorGroupMemory:
    def __init__(self) -> None:
        self.fingerprints: OrderedDict[str, None] = OrderedDict()
        self.held: list[dict[str, Any]] = []
        self.held_more = 0  # held groups beyond MAX_HELD (counted, not kept)

    def snapshot(self) -> dict[str, Any]:
        return {"fingerprints": list(self.fingerprints), "held_groups": list(self.held), "held_more": self.held_more}

    def restore(self, state: Mapping[str, Any]) -> None:
        for fp in list(state.get("fingerprints") or [])[-MAX_FINGERPRINTS:]:
            self.fingerprints[str(fp)] = None
        self.held = [_kept(g) for g in list(state.get("held_groups") or [])[:MAX_HELD] if isinstance(g, dict)]
        self.held_more = int(state.get("held_more") or 0)

    def fresh(self, groups: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The groups whose fingerprint was never seen, now marked seen."""
        out = []
        for group in groups:
            fp = str(group.get("fingerprint") or "")
            if not fp or fp in self.fingerprints:
                continue
            self.fingerprints[fp] = None
            while len(self.fingerprints) > MAX_FINGERPRINTS:
                self.fingerprints.popitem(last=False)
            out.append(_kept(group))
        return out

    def take(self, groups: Iterable[Mapping[str, Any]], *, waiting: bool) -> tuple[list[dict[str, Any]], int]:
        """Fold in an interval's groups; return (groups to announce now, held groups not kept in full).

        ``waiting``: the rule's wait has not passed yet; new groups are held, nothing is announced.
        """
        new = self.fresh(groups)
        if waiting:
            room = max(0, MAX_HELD - len(self.held))
            self.held.extend(new[:room])
            self.held_more += len(new) - len(new[:room])
            return [], 0
        out, more = self.held + new, self.held_more
        self.held, self.held_more = [], 0
        return out, more


def _when(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1e9 if value > 1e14 else float(value)  # nanoseconds or seconds since the epoch
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")
    return str(value)


def group_text(group: Mapping[str, Any]) -> str:
    fp = str(group.get("fingerprint"))
    kind = str(group.get("type") or "Error")[:100]
    message = " ".join(strip_literals(str(group.get("message") or "")).split())[:200]
    traces = ", ".join(str(t) for t in list(group.get("sample_trace_ids") or ())[:3])
    parts = [
        f"New error group {kind}: {message}" if message else f"New error group {kind}",
        f"fingerprint {fp[:16]}",
        f"count {group.get('count', 1)}",
    ]
    if group.get("frame"):
        parts.append(f"at {str(group['frame'])[:120]}")
    first = group.get("first_seen", group.get("first_seen_ns"))
    if first is not None:
        parts.append(f"first seen {_when(first)}")
    if traces:
        parts.append(f"traces {traces}")
    return "; ".join(parts)
