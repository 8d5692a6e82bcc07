"""bench/proctree.py: whole-process-tree CPU from /proc, on made-up stat lines and on this process's own tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.proctree import ProcStat, descendants, parse_stat, read_procs, sample, thread_ticks, tree_ticks, window


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    return f"{pid} ({comm}) S {ppid} 1 1 0 -1 4194560 10 0 0 0 {utime} {stime} {cutime} {cstime} 20 0 4 0 100 0 0\n"


def procs(*stats: ProcStat) -> dict[int, ProcStat]:
    return {s.pid: s for s in stats}


def test_parse_stat_reads_a_command_name_with_spaces_and_parentheses() -> None:
    st = parse_stat(stat_line(42, "gunicorn: worker (x) [app]", 7, 150, 30, 5, 2))
    assert st == ProcStat(42, 7, "gunicorn: worker (x) [app]", 180, 7)
    assert st.ticks == 187


def test_a_tree_is_every_descendant_and_wandb_core_is_its_own_part() -> None:
    table = procs(
        ProcStat(1, 0, "init", 999, 0),
        ProcStat(10, 1, "gunicorn", 5, 100),  # the master: 100 ticks of reaped children (an old worker)
        ProcStat(11, 10, "gunicorn", 300, 0),  # the worker
        ProcStat(12, 11, "wandb-core", 40, 0),  # started by one of the worker's threads
        ProcStat(13, 12, "helper", 2, 0),  # below wandb-core: counted with it
        ProcStat(20, 1, "otelcol", 50, 0),  # another tree
    )
    assert descendants(table, 10) == {10, 11, 12, 13}
    assert descendants(table, 99) == set()
    assert tree_ticks(table, 10) == (405, 42)
    assert sample({"app": 10, "collector": 20}, table) == {
        "app": 405,
        "app.wandb": 42,
        "collector": 50,
        "collector.wandb": 0,
    }


def test_a_child_that_exits_inside_the_window_is_not_lost_nor_counted_twice() -> None:
    before = procs(ProcStat(10, 1, "parent", 100, 0), ProcStat(11, 10, "child", 30, 0))
    # the child ran 20 more ticks, exited and was reaped: its 50 ticks are now the parent's cutime
    after = procs(ProcStat(10, 1, "parent", 110, 50))
    cpu = window(sample({"t": 10}, before), sample({"t": 10}, after), tick=10)
    assert cpu == {"t": 3.0, "t.wandb": 0.0}  # parent 10 + child 20 ticks, at 10 ticks a second


def test_a_part_that_appears_inside_the_window_counts_in_full() -> None:
    assert window({"app": 100}, {"app": 130, "app.wandb": 20}, tick=10) == {"app": 3.0, "app.wandb": 2.0}


def test_on_this_machine_a_child_counts_while_it_runs_and_after_it_is_reaped() -> None:
    me = os.getpid()
    before = sample({"me": me})
    burn = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nsys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and window(before, sample({"me": me}))["me"] < 0.3:
            time.sleep(0.05)
        assert child.pid in descendants(read_procs(), me)
        child.communicate(b"", timeout=10)  # exits and is reaped: its CPU moves to our cutime
        assert child.pid not in descendants(read_procs(), me)
        assert window(before, sample({"me": me}))["me"] >= 0.3
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_thread_ticks_names_this_process_threads() -> None:
    names = thread_ticks(os.getpid())
    assert names and all(isinstance(v, int) and v >= 0 for v in names.values())
