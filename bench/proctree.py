"""CPU of whole process trees from ``/proc`` (Linux), for benchmarks that must count every process a layer adds.

A tree is a root pid and every process whose parent chain leads to it (children of any thread count: wandb starts
wandb-core from a background thread). Each sample lists the processes again, so a process started since the last
sample is found. A process's CPU is utime + stime + cutime + cstime: when a child exits and its parent reaps it,
the child's CPU moves into the parent's cutime/cstime, so the sum over a tree never loses an exited member (a
process reparented away from the tree, a daemon's double fork, would be lost: none of ours does that).

    before = sample({"app": gunicorn_pid, "bridge": bridge_pid})
    ...load...
    cpu_s = window(before, sample({"app": gunicorn_pid, "bridge": bridge_pid}))
    # {"app": 3.1, "app.wandb": 0.2, "bridge": 0.4, "bridge.wandb": 0.05}: seconds per part

``<name>.wandb`` is the part of a tree under a ``wandb-core`` process (wandb's service), ``<name>`` the rest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
HELPER = "wandb-core"  # the name wandb's service process has in /proc/<pid>/stat


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    comm: str
    own: int  # utime + stime, in clock ticks
    children: int  # cutime + cstime: reaped children (process-wide: a thread's stat repeats its process's)

    @property
    def ticks(self) -> int:
        return self.own + self.children


def parse_stat(text: str) -> ProcStat:
    """One ``/proc/<pid>/stat`` (or ``/proc/<pid>/task/<tid>/stat``) line. The command name may hold spaces and
    parentheses: it ends at the last ')'."""
    head, _, rest = text.rpartition(")")
    pid, _, comm = head.partition(" (")
    f = rest.split()
    # fields after the name, 0-based: state 0, ppid 1, ..., utime 11, stime 12, cutime 13, cstime 14
    return ProcStat(int(pid), int(f[1]), comm, int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))


def read_procs(proc: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process now (one that exits while the list is read is skipped)."""
    out = {}
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            st = parse_stat((d / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        out[st.pid] = st
    return out


def descendants(procs: Mapping[int, ProcStat], root: int) -> set[int]:
    """``root`` and every process below it; empty when ``root`` is not running."""
    children: dict[int, list[int]] = {}
    for st in procs.values():
        children.setdefault(st.ppid, []).append(st.pid)
    found: set[int] = set()
    todo = [root] if root in procs else []
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_ticks(procs: Mapping[int, ProcStat], root: int, helper: str = HELPER) -> tuple[int, int]:
    """Ticks of the tree under ``root``: (everything outside the ``helper`` subtrees, the ``helper`` subtrees)."""
    pids = descendants(procs, root)
    helpers: set[int] = set()
    for pid in pids:
        if procs[pid].comm == helper:
            helpers |= descendants(procs, pid)
    return sum(procs[p].ticks for p in pids - helpers), sum(procs[p].ticks for p in helpers)


def sample(roots: Mapping[str, int], procs: Mapping[int, ProcStat] | None = None) -> dict[str, int]:
    """Ticks per part, ``<name>`` and ``<name>.wandb`` for each named root, from a fresh process list."""
    procs = read_procs() if procs is None else procs
    out = {}
    for name, pid in roots.items():
        out[name], out[f"{name}.wandb"] = tree_ticks(procs, pid)
    return out


def window(before: Mapping[str, int], after: Mapping[str, int], tick: int = TICK) -> dict[str, float]:
    """CPU seconds per part between two samples (a part absent before started within the window: all of it)."""
    return {k: (v - before.get(k, 0)) / tick for k, v in after.items()}


def thread_ticks(pid: int, proc: Path = Path("/proc")) -> dict[str, int]:
    """utime + stime per thread name of one process (threads of the same name summed)."""
    out: dict[str, int] = {}
    for task in (proc / str(pid) / "task").iterdir():
        try:
            st = parse_stat((task / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        out[st.comm] = out.get(st.comm, 0) + st.own
    return out
