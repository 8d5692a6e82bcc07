"""The demo's traffic driver: realistic mixed diary requests, tallied per endpoint and status class.

Each worker thread plays one registered user and only touches that user's entries, so every outcome is
predictable: good requests must get 2xx, bad input must get 4xx, and only AI calls may get 5xx (the LLM endpoint
fails on purpose). Anything else is recorded as *unexpected* and fails the demo.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypedDict

import httpx

from app.demo.procs import DemoError

FEATURES = ("summarize", "reflect", "mood")
AI_FAILURE_STATUSES = {429, 502, 503, 504}  # what an LLM failure may legitimately turn into

# Operation weights: a steady mix and an AI-heavy mix used while the LLM endpoint is failing.
STEADY_MIX = {"create": 26, "list": 14, "get": 14, "patch": 8, "delete": 5, "ai": 25, "bad": 8}
AI_HEAVY_MIX = {"create": 10, "list": 5, "get": 5, "ai": 75, "bad": 5}
HEALTHY_MIX = {"create": 25, "list": 25, "get": 25, "patch": 10, "ai": 15}

_MOMENTS = (
    "Woke up early and watched the rain on the window",
    "Long walk by the river after work",
    "Cooked soup for the neighbours",
    "The meeting ran late again",
    "Finished the book I started in spring",
    "Called my sister, we laughed about the old flat",
    "Tried the new bakery on the corner",
    "Could not focus this afternoon",
    "Planted tomatoes on the balcony",
    "Train was cancelled, took the bus",
)
_FEELINGS = (
    "I feel calm tonight.",
    "A bit anxious about tomorrow.",
    "Grateful for small things.",
    "Tired but content.",
    "Restless, hard to say why.",
    "Proud of myself for once.",
)
_TAGS = ("work", "family", "health", "food", "books", "weather", "garden", "travel")


def status_class(status: int | None) -> str:
    return "err" if status is None else f"{status // 100}xx"


class _Budget(TypedDict):
    left: int | None  # requests still to send (None: no budget)
    done: int


@dataclass
class Tally:
    """Thread-safe counts of (endpoint, status class), plus every status and unexpected samples."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (endpoint, status class)
    statuses: Counter[int | str] = field(default_factory=Counter)  # HTTP status, or "err"
    unexpected: list[str] = field(default_factory=list)
    unexpected_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, endpoint: str, status: int | None, problem: str | None = None) -> None:
        with self.lock:
            self.counts[(endpoint, status_class(status))] += 1
            self.statuses[status if status is not None else "err"] += 1
            if problem:
                self.unexpected_count += 1
                if len(self.unexpected) < 10:
                    self.unexpected.append(problem)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def diary_text(rng: random.Random, canary: str) -> str:
    first, second = rng.sample(_MOMENTS, 2)
    return f"{first}. {rng.choice(_FEELINGS)} {canary} {second}."


class UserSession:
    """One diary user: its bearer token and the ids of its entries."""

    def __init__(self, client: httpx.Client, name: str, tally: Tally, canary: str, rng: random.Random) -> None:
        self.client, self.tally, self.canary, self.rng = client, tally, canary, rng
        self.entries: list[str] = []
        self.cursor: str | None = None
        resp = self._send("POST /api/users", "POST", "/api/users", json={"name": name}, ok=(200, 201))
        if resp is None or resp.status_code not in (200, 201):
            why = f"{resp.status_code}: {resp.text[:200]}" if resp is not None else "no answer"
            raise DemoError(f"traffic: could not register a user: {why}")
        body = resp.json()
        self.user_id, self.token = str(body["id"]), str(body["token"])
        self.client.headers["Authorization"] = f"Bearer {self.token}"

    # -- plumbing ------------------------------------------------------------------------------------------
    def _send(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        ok: Iterable[int] = (200,),
        bad: bool = False,
        ai: bool = False,
        **kw: Any,
    ) -> httpx.Response | None:
        try:
            resp = self.client.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self.tally.add(endpoint, None, f"{endpoint}: {type(exc).__name__}: {exc}")
            return None
        code = resp.status_code
        if bad:
            problem = None if 400 <= code < 500 else f"{endpoint} with bad input got {code}"
        elif ai and code in AI_FAILURE_STATUSES:
            problem = None
        else:
            problem = None if code in tuple(ok) else f"{endpoint} got {code}: {resp.text[:160]!r}"
        self.tally.add(endpoint, code, problem)
        return resp

    def _entry(self) -> str | None:
        return self.rng.choice(self.entries) if self.entries else None

    def _tags(self) -> list[str]:
        return self.rng.sample(_TAGS, self.rng.randint(0, 3))

    # -- operations ----------------------------------------------------------------------------------------
    def create(self) -> None:
        body = {"text": diary_text(self.rng, self.canary), "tags": self._tags()}
        resp = self._send("POST /api/entries", "POST", "/api/entries", json=body, ok=(200, 201))
        if resp is not None and resp.status_code in (200, 201):
            self.entries.append(str(resp.json()["id"]))

    def list(self) -> None:
        params: dict[str, Any] = {"limit": self.rng.choice((5, 10, 20))}
        if self.cursor and self.rng.random() < 0.5:
            params["cursor"] = self.cursor  # the next page of the previous listing
        self.cursor = _next_cursor(self._send("GET /api/entries", "GET", "/api/entries", params=params))

    def get(self) -> None:
        entry = self._entry()
        if entry is None:
            return self.create()
        self._send("GET /api/entries/{id}", "GET", f"/api/entries/{entry}")

    def patch(self) -> None:
        entry = self._entry()
        if entry is None:
            return self.create()
        body = {"text": diary_text(self.rng, self.canary), "tags": self._tags()}
        self._send("PATCH /api/entries/{id}", "PATCH", f"/api/entries/{entry}", json=body)

    def delete(self) -> None:
        if len(self.entries) < 3:
            return self.create()
        entry = self.entries.pop(self.rng.randrange(len(self.entries)))
        self._send("DELETE /api/entries/{id}", "DELETE", f"/api/entries/{entry}", ok=(200, 204))

    def ai(self) -> None:
        entry = self._entry()
        if entry is None:
            return self.create()
        feature = self.rng.choice(FEATURES)
        self._send(f"POST /api/entries/{{id}}/ai/{feature}", "POST", f"/api/entries/{entry}/ai/{feature}", ai=True)

    def bad(self) -> None:
        """Bad input: the service must answer 4xx naming the problem, never 5xx."""
        entry = self._entry() or "0"
        case = self.rng.randrange(8)
        if case == 0:
            self._send("POST /api/entries", "POST", "/api/entries", json={"text": ""}, bad=True)
        elif case == 1:
            self._send("POST /api/entries", "POST", "/api/entries", json={"text": 42, "tags": "x"}, bad=True)
        elif case == 2:
            self._send(
                "POST /api/entries",
                "POST",
                "/api/entries",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
                bad=True,
            )
        elif case == 3:
            self._send("GET /api/entries/{id}", "GET", "/api/entries/999999999", bad=True)
        elif case == 4:
            self._send("GET /api/entries", "GET", "/api/entries", params={"limit": -3}, bad=True)
        elif case == 5:
            self._send("POST /api/entries/{id}/ai/{feature}", "POST", f"/api/entries/{entry}/ai/horoscope", bad=True)
        elif case == 6:
            self._send("GET /api/entries", "GET", "/api/entries", headers={"Authorization": "Bearer nope"}, bad=True)
        else:
            self._send("POST /api/users", "POST", "/api/users", json={}, bad=True)


def _next_cursor(resp: httpx.Response | None) -> str | None:
    if resp is None or resp.status_code != 200:
        return None
    try:
        body = resp.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        cursor = body.get("next_cursor") or body.get("cursor") or body.get("next")
        return str(cursor) if cursor else None
    return None


class Traffic:
    """Drives requests against the service from one thread per user."""

    def __init__(
        self,
        base_url: str,
        *,
        users: int,
        canary: str,
        seed: int,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, self.canary, self.timeout, self.transport = base_url, canary, timeout, transport
        self.tally = Tally()
        self.rng = random.Random(seed)
        self.sessions: list[UserSession] = []
        self.tokens: list[str] = []
        self.names: list[str] = []
        self.n_users = users
        self.aborted = threading.Event()  # set on Ctrl-C / SIGTERM: every worker stops after its request

    def register(self) -> None:
        for i in range(self.n_users):
            client = httpx.Client(base_url=self.base_url, timeout=self.timeout, transport=self.transport)
            rng = random.Random(self.rng.random())
            name = f"Demo Writer {i + 1} {rng.getrandbits(32):08x}"  # unique, so the privacy scan can grep it
            session = UserSession(client, name, self.tally, self.canary, rng)
            self.sessions.append(session)
            self.tokens.append(session.token)
            self.names.append(name)

    def run(
        self,
        budget: int | None,
        mix: dict[str, int],
        *,
        on_request: Callable[[], None] = lambda: None,
        until: threading.Event | None = None,
        rate: float | None = None,
        deadline: float | None = None,
    ) -> int:
        """Send ``budget`` requests (or, if None, until ``until`` is set / ``deadline`` passes), paced at ``rate``
        requests per second overall if given. Returns how many operations ran."""
        ops, weights = list(mix), list(mix.values())
        lock = threading.Lock()
        state: _Budget = {"left": budget, "done": 0}
        interval = len(self.sessions) / rate if rate else 0.0

        def take() -> bool:
            with lock:
                if self.aborted.is_set() or (until is not None and until.is_set()):
                    return False
                if deadline is not None and time.monotonic() > deadline:
                    return False
                if state["left"] is not None:
                    if state["left"] <= 0:
                        return False
                    state["left"] -= 1
                state["done"] += 1
                return True

        def worker(session: UserSession) -> None:
            while take():
                t0 = time.monotonic()
                getattr(session, session.rng.choices(ops, weights)[0])()
                on_request()
                if interval:
                    time.sleep(max(0.0, interval - (time.monotonic() - t0)))

        threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in self.sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return state["done"]

    def close(self) -> None:
        for s in self.sessions:
            s.client.close()
