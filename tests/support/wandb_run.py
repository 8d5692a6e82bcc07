"""``RecorderRun``: what the tests hand to ``WandbSink(run=...)`` (or return from ``init_fn``) instead of a wandb Run.

It records every call and accepts exactly what a real ``wandb.Run`` accepts, so the sink cannot behave differently
with it than with a real run: the arguments are bound to the real methods' signatures, ``define_metric`` and
``alert`` validate like wandb 0.31 does (types, glob suffixes, summary ops, alert levels and waits), ``log`` takes
wandb data types (``wandb.Table``) or plain JSON values only, and a finished run refuses further calls.
"""

from __future__ import annotations

import inspect
import math
from datetime import timedelta
from typing import Any

import wandb
from wandb.sdk.wandb_run import Run

_SIGNATURES = {name: inspect.signature(getattr(Run, name)) for name in ("log", "define_metric", "alert", "finish")}
_SUMMARY_OPS = {"min", "max", "mean", "last", "copy", "none", "first"}
_LEVELS = {level.value for level in wandb.AlertLevel}


def _bind(method: str, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments as the real method would receive them (TypeError for a call it would refuse)."""
    bound = _SIGNATURES[method].bind(None, *args, **kwargs)
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k != "self"}


def _loggable(value: Any) -> bool:
    if isinstance(value, wandb.data_types.WBValue) or value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return True  # NaN and inf included: wandb stores them
    if isinstance(value, (list, tuple)):
        return all(_loggable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _loggable(v) for k, v in value.items())
    return False


class RecorderRun:
    """Stands in for a wandb Run: validates each call like the real one, then records it."""

    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []
        self.defined: list[tuple[str, dict[str, Any]]] = []  # (name, the keyword arguments given)
        self.alerts: list[dict[str, Any]] = []
        self.finished = 0

    def _check_open(self, method: str) -> None:
        if self.finished:
            raise wandb.Error(f"You must call wandb.init() before wandb.{method}() (the run is finished)")

    def log(self, *args: Any, **kwargs: Any) -> None:
        call = _bind("log", args, kwargs)
        self._check_open("log")
        data = call["data"]
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise TypeError("wandb.log must be passed a dictionary with string keys")
        bad = {k: type(v).__name__ for k, v in data.items() if not _loggable(v)}
        if bad:
            raise TypeError(f"not loggable by wandb (use wandb data types or JSON values): {bad}")
        self.logged.append(data)

    def define_metric(self, *args: Any, **kwargs: Any) -> None:
        call = _bind("define_metric", args, kwargs)
        self._check_open("define_metric")
        name = call["name"]
        if not name or not isinstance(name, str):
            raise wandb.Error("define_metric() requires non-empty name argument")
        for arg, typ in (
            ("step_metric", str),
            ("step_sync", bool),
            ("hidden", bool),
            ("summary", str),
            ("overwrite", bool),
        ):
            if call[arg] is not None and not isinstance(call[arg], typ):
                raise wandb.Error(f"Unhandled define_metric() arg: {arg} type: {type(call[arg]).__name__}")
        if "*" in (name[:-1] if name.endswith("*") else name):
            raise wandb.Error(f"Unhandled define_metric() arg: name (glob suffixes only): {name}")
        for op in (call["summary"] or "").split(",") if call["summary"] else ():
            if op.lower() not in _SUMMARY_OPS:
                raise wandb.Error(f"Unhandled define_metric() arg: summary op: {op}")
        given = _SIGNATURES["define_metric"].bind(None, *args, **kwargs).arguments  # as given, no defaults
        self.defined.append((name, {k: v for k, v in given.items() if k not in ("self", "name")}))

    def alert(self, *args: Any, **kwargs: Any) -> None:
        call = _bind("alert", args, kwargs)
        self._check_open("alert")
        if not isinstance(call["title"], str) or len(call["title"]) >= 64 or not isinstance(call["text"], str):
            raise ValueError("alert title must be a string of less than 64 characters, text a string")
        level = call["level"] or wandb.AlertLevel.INFO
        if (level.value if isinstance(level, wandb.AlertLevel) else level) not in _LEVELS:
            raise ValueError("level must be one of 'INFO', 'WARN', or 'ERROR'")
        wait = call["wait_duration"]
        if (wait is not None and not isinstance(wait, (int, float, timedelta))) or (
            isinstance(wait, float) and not math.isfinite(wait)
        ):
            raise TypeError("wait_duration must be an int, float, or datetime.timedelta")
        self.alerts.append(call)

    def finish(self, *args: Any, **kwargs: Any) -> None:
        _bind("finish", args, kwargs)
        self.finished += 1


def table_rows(table: Any) -> list[list[Any]]:
    """The rows of a logged ``wandb.Table`` (what the run stores), as lists."""
    assert isinstance(table, wandb.Table), f"expected a wandb.Table, got {type(table).__name__}"
    return [list(row) for row in table.data]
