"""Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: the browser reads
commands on its fd 3 and writes answers and events on its fd 4, NUL-terminated JSON) -- no websocket library and no
debugging port. What the dashboard tests need: open a page, evaluate an expression, the requests it made, what it
wrote to the console (script errors, Content-Security-Policy violations, failed loads)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.chromium import chromium_cmd


class CdpError(RuntimeError):
    pass


def _high(fd: int) -> int:
    """The fd moved above the range the shell redirections below write to (3, 4), close-on-exec in this process."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Browser:
    def __init__(self, tmp_path: Path) -> None:
        cmd_r, cmd_w = (_high(fd) for fd in os.pipe())  # we write commands, the browser reads them as fd 3
        out_r, out_w = (_high(fd) for fd in os.pipe())  # the browser writes as fd 4, we read
        args = chromium_cmd(tmp_path, "--remote-debugging-pipe", "about:blank")
        shell = f'exec "$0" "$@" 3<&{cmd_r} 4>&{out_w} {cmd_r}<&- {out_w}>&-'
        self._stderr = open(tmp_path / "chromium.stderr", "wb")
        self.proc = subprocess.Popen(
            ["bash", "-c", shell, *args],  # bash: dash takes single-digit fds only
            pass_fds=(cmd_r, out_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        os.close(cmd_r)
        os.close(out_w)
        self._w = os.fdopen(cmd_w, "wb", buffering=0)
        self._r = out_r
        self._next = 0
        self._cond = threading.Condition()
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._closed = False
        threading.Thread(target=self._read, name="cdp-reader", daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += chunk
            *messages, buf = buf.split(b"\0")
            with self._cond:
                for raw in messages:
                    msg = json.loads(raw)
                    if "id" in msg:
                        self._answers[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                self._cond.notify_all()

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        with self._cond:
            self._next += 1
            ident = self._next
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._w.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._answers:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise CdpError(f"{method}: no answer ({'browser gone' if self._closed else 'timeout'})")
                self._cond.wait(left)
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def wait_event(self, method: str, session: str, timeout: float = 30.0, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events[after:]:
                    if e.get("method") == method and e.get("sessionId") == session:
                        return e
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    raise CdpError(f"no {method} event ({'browser gone' if self._closed else 'timeout'})")
                self._cond.wait(left)

    def open(self, url: str, timeout: float = 30.0) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        mark = len(self.events)
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session, timeout, after=mark)
        return page

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except CdpError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._w.close()
        self._stderr.close()


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    def _events(self, method: str) -> list[dict[str, Any]]:
        with self.browser._cond:
            return [
                e["params"]
                for e in self.browser.events
                if e.get("sessionId") == self.session and e.get("method") == method
            ]

    def evaluate(self, expression: str) -> Any:
        result = self.browser.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=self.session
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def requests(self) -> list[str]:
        """Every URL the page asked for (navigation, fetches, anything a rendered element would load)."""
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]

    def failed_requests(self) -> list[str]:
        return [f"{e.get('errorText')} ({e.get('blockedReason', '')})" for e in self._events("Network.loadingFailed")]

    def console_errors(self) -> list[str]:
        """Script exceptions, console.error/warn calls, and the browser's own error and warning entries (CSP
        violations, failed loads)."""
        out = [
            e["exceptionDetails"].get("text", "")
            + " "
            + str(e["exceptionDetails"].get("exception", {}).get("description", ""))
            for e in self._events("Runtime.exceptionThrown")
        ]
        out += [
            " ".join(str(a.get("value", a.get("description", ""))) for a in e.get("args", []))
            for e in self._events("Runtime.consoleAPICalled")
            if e.get("type") in ("error", "warning", "assert")
        ]
        out += [
            f"{e['entry'].get('source')}: {e['entry'].get('text')}"
            for e in self._events("Log.entryAdded")
            if e["entry"].get("level") in ("error", "warning")
        ]
        return out


@contextmanager
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path)
    try:
        yield b
    finally:
        b.close()
