"""Delivery off the telemetry path: one worker thread and one bounded queue per network channel.

``Dispatcher.submit(event)`` never blocks on the network and never raises: it fans the event out to the channel
workers (Slack, email, SMS). The W&B channel is ``inline``: ``sink.alert`` is recorded right away on the calling
(pipeline flusher) thread, like ``sink.log``, so the final interval's alerts land before ``sink.finish``.
A slow or dead channel only delays its own queue. Each attempt is logged; failures are retried with exponential
backoff a bounded number of times, then dropped with an error log. A channel with one request per recipient (SMS,
``send_to``) is retried per recipient: recipient 1 never gets a duplicate because recipient 2 failed.

Every send runs with OpenTelemetry instrumentation suppressed: in the app process (``OTEL_*_EXPORTER=wandb``) the
global httpx instrumentation would otherwise record each webhook POST as a span whose ``url.full`` carries the
webhook's secret path (Slack) back into the telemetry it alerts on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from otel_wandb.alerts._channels import Channel, ChannelError
from otel_wandb.alerts._evaluator import AlertEvent

logger = logging.getLogger(__name__)

_STOP = object()

try:
    from opentelemetry.instrumentation.utils import suppress_instrumentation as _untraced
except ImportError:  # pragma: no cover - without OpenTelemetry instrumentation there is nothing to suppress

    def _untraced() -> Any:
        return contextlib.nullcontext()


def send_untraced(channel: Channel, event: AlertEvent, recipient: str | None = None) -> None:
    """One delivery attempt with no spans of its own (see the module docstring); ``recipient``: ``send_to``."""
    with _untraced():
        if recipient is None:
            channel.send(event)
        else:
            channel.send_to(event, recipient)  # type: ignore[attr-defined]  # per-recipient channels only (see _attempts)


class ChannelWorker:
    def __init__(
        self,
        channel: Channel,
        *,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        queue_size: int = 100,
    ) -> None:
        self.channel = channel
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"alerts-{channel.name}", daemon=True)
        self._thread.start()

    def submit(self, event: AlertEvent) -> bool:
        if self._closing.is_set():
            return False
        try:
            self._queue.put_nowait(event)
            return True
        except queue.Full:
            self.dropped += 1
            logger.warning(
                "alert queue for channel %s full: dropped %r (%s)", self.channel.name, event.title, event.kind
            )
            return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, AlertEvent)
                self._deliver(item)
            finally:
                self._queue.task_done()

    def _deliver(self, event: AlertEvent) -> None:
        """All attempts for one event. A per-recipient channel (``send_to``) is retried recipient by recipient:
        the event counts as sent when every recipient got it, else as failed."""
        ch = self.channel
        recipients = tuple(getattr(ch, "recipients", ()) or ()) if hasattr(ch, "send_to") else ()
        if not recipients:
            ok = self._attempts(event, lambda: send_untraced(ch, event), "")
        else:
            n = len(recipients)
            ok = all(
                [
                    self._attempts(
                        event,
                        functools.partial(send_untraced, ch, event, to),
                        f" to recipient {i}/{n}" if n > 1 else "",
                    )
                    for i, to in enumerate(recipients, 1)
                ]
            )
        if ok:
            self.sent += 1
        else:
            self.failed += 1

    def _attempts(self, event: AlertEvent, attempt_once: Callable[[], None], who: str) -> bool:
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            started = time.monotonic()
            try:
                attempt_once()
            except Exception as exc:  # ChannelError, or a bug in a channel: both are logged, never raised
                reason = str(exc) if isinstance(exc, ChannelError) else f"{type(exc).__name__}: {exc}"
                last = attempt == attempts
                logger.log(
                    logging.ERROR if last else logging.WARNING,
                    "alert %r (%s) via %s%s: attempt %d/%d failed after %.2fs: %s%s",
                    event.title,
                    event.kind,
                    self.channel.name,
                    who,
                    attempt,
                    attempts,
                    time.monotonic() - started,
                    reason,
                    "; giving up" if last else "",
                )
                if last:
                    return False
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                self._closing.wait(delay)  # shutdown cuts the backoff short
                continue
            logger.info(
                "alert %r (%s) via %s%s: delivered on attempt %d/%d in %.2fs",
                event.title,
                event.kind,
                self.channel.name,
                who,
                attempt,
                attempts,
                time.monotonic() - started,
            )
            return True
        return False

    def close(self) -> None:
        """Stop taking events; the worker delivers what is queued (backoff cut short), then exits. Never blocks."""
        self._closing.set()
        while True:
            try:
                self._queue.put_nowait(_STOP)
                return
            except queue.Full:
                try:
                    lost = self._queue.get_nowait()
                    self._queue.task_done()
                except queue.Empty:
                    continue
                self.dropped += 1
                logger.warning(
                    "alert channel %s closing with a full queue: dropped %r",
                    self.channel.name,
                    getattr(lost, "title", lost),
                )

    def join(self, timeout: float) -> bool:
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()


class Dispatcher:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        *,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        queue_size: int = 100,
        unconfigured: Iterable[str] = (),
    ) -> None:
        self.inline = {name: ch for name, ch in channels.items() if getattr(ch, "inline", False)}
        self.workers = {
            name: ChannelWorker(ch, retries=retries, backoff=backoff, max_backoff=max_backoff, queue_size=queue_size)
            for name, ch in channels.items()
            if name not in self.inline
        }
        self._skipped: set[str] = set()
        self._closed = False
        for name, ch in channels.items():
            logger.info("alert channel %s: %s", name, ch.describe())
        for name in sorted(set(unconfigured) - set(channels)):
            self._skip(name)

    def _skip(self, name: str) -> None:
        if name not in self._skipped:
            self._skipped.add(name)
            logger.info("alert channel %s not configured: its alerts are skipped", name)

    def submit(self, event: AlertEvent, channels: Iterable[str]) -> None:
        if self._closed:
            return
        for name in channels:
            worker = self.workers.get(name)
            if worker is not None:
                worker.submit(event)
            elif name in self.inline:
                self._send_inline(self.inline[name], event)
            else:
                self._skip(name)

    def _send_inline(self, channel: Channel, event: AlertEvent) -> None:
        try:
            send_untraced(channel, event)
        except Exception as exc:
            logger.warning("alert %r (%s) via %s: attempt 1/1 failed: %s", event.title, event.kind, channel.name, exc)
        else:
            logger.info("alert %r (%s) via %s: recorded", event.title, event.kind, channel.name)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Deliver what is queued within ``timeout`` seconds; idempotent. True when every worker finished."""
        if self._closed:
            return True
        self._closed = True
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            worker.close()
        done = all([w.join(deadline - time.monotonic()) for w in self.workers.values()])
        if not done:
            logger.warning("alert dispatcher: channels still busy after %.1fs shutdown timeout", timeout)
        return done

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Test/demo helper: wait until every queue is empty and no delivery is in progress."""
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            while worker._queue.unfinished_tasks and time.monotonic() < deadline:
                time.sleep(0.01)
        return all(not w._queue.unfinished_tasks for w in self.workers.values())
