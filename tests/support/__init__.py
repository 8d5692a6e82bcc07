"""Test helpers shared by every area (imported as ``tests.support``; fixtures live in the conftest.py files).

- ``ROOT``: the repository checkout.
- ``exact(values, q)``: the percentile oracle, the nearest rank every estimator here is compared with.
- ``free_port()``: a free TCP port on loopback (re-exported from the demo's process helpers).
- ``wait_until(check, timeout, what)``: poll against a deadline instead of sleeping a fixed time.
- ``Clock``: a settable clock for the code that takes a ``clock=`` seam (no sleeping until a time of day).
- ``silent_server()``: a loopback TCP server that accepts connections and never answers (a hung endpoint) until
  the test ``release()``s them.
- ``LineReader(pipe)``: a child process's output lines with a timeout on each (no unbounded ``readline()``).
- ``chat_reply``, ``metric_points``, ``TEST_SECRET``: small builders and readers of the service tests.
"""

from __future__ import annotations

import contextlib
import math
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Self, TypeVar

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from app.demo.procs import free_port
from otel_wandb import records

__all__ = [
    "ROOT",
    "TEST_SECRET",
    "Clock",
    "LineReader",
    "SilentServer",
    "chat_reply",
    "exact",
    "free_port",
    "metric_points",
    "silent_server",
    "wait_until",
]

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
TEST_SECRET = "test-pseudonym-secret"  # PSEUDONYM_SECRET of the test apps


def exact(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by nearest rank: the value at 1-based position ``ceil(q * n)``."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def wait_until(
    check: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``check`` until it returns something truthy (returned) or ``timeout`` seconds pass (AssertionError
    naming ``what`` and the last value seen). Exceptions of the ``retry_on`` types count as "not yet" (a service
    restarting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value: Any = check()
        except retry_on as exc:
            value = f"{type(exc).__name__}: {exc}"
        else:
            if value:
                return value  # type: ignore[no-any-return]  # check's own T
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {value!r:.2000})")
        time.sleep(interval)


class Clock:
    """A clock that stands still until a test moves it (``clock.t += 5``)."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class SilentServer:
    """A TCP server on loopback that accepts every connection, reads nothing and answers nothing (``silent_server``).
    ``accepted``: connections so far; ``release()`` closes the open ones (their clients see the connection drop)."""

    def __init__(self) -> None:
        self._srv = socket.create_server(("127.0.0.1", 0))
        self._srv.settimeout(0.1)
        self.port: int = self._srv.getsockname()[1]
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._srv.accept()[0]
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
                self.accepted += 1

    def release(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.release()
        self._srv.close()


@contextlib.contextmanager
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


class LineReader:
    """The lines of a pipe (a child's stdout), read by a daemon thread into a queue: ``next(timeout)`` waits at most
    ``timeout`` seconds, where a ``readline()`` on the pipe itself could block the suite forever."""

    _EOF = object()

    def __init__(self, pipe: IO[str]) -> None:
        self._lines: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(pipe,), name="line-reader", daemon=True)
        self._thread.start()

    def _pump(self, pipe: IO[str]) -> None:
        try:
            for line in pipe:
                self._lines.put(line)
        except (OSError, ValueError):  # the pipe was closed under us
            pass
        finally:
            self._lines.put(self._EOF)

    def next(self, timeout: float, what: str = "a line") -> str:
        """The next line (with its newline); AssertionError after ``timeout`` seconds or at end of file."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}") from None
        if line is self._EOF:
            self._lines.put(self._EOF)
            raise AssertionError(f"end of output while waiting for {what}")
        return line


def chat_reply(content: str, usage: dict[str, Any] | None = None, model: str = "gpt-4o-mini") -> dict[str, Any]:
    """A chat.completion body with ``content`` and ``usage``."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": usage if usage is not None else {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    points: list[Any] = []
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


def server_span(
    i: int, code: int = 200, route: str = "/x", duration_ns: int = 1_000_000, method: str | None = None
) -> records.SpanRecord:
    """A plain server span record with ids derived from ``i`` (distinct spans for distinct ``i``)."""
    attributes: dict[str, Any] = {"http.route": route, "http.response.status_code": code}
    if method:
        attributes["http.request.method"] = method
    name = f"{method or 'GET'} {route}"
    return records.SpanRecord(name, records.SERVER, 0, duration_ns, f"{i:032x}", f"{i:016x}", attributes=attributes)


class ClientThreads:
    """``clients`` threads running ``self.client(i)`` while the ``with`` block lasts: on exit ``stop`` is set and each
    thread is joined within ``join_s`` seconds. Subclasses write ``client``, which loops until ``stop`` is set."""

    join_s = 60.0

    def __init__(self, clients: int) -> None:
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(clients)]

    def client(self, i: int) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(self.join_s)
