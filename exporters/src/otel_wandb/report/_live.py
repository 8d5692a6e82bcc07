"""The live dashboard: the report of the run a sink is writing, served while it runs (``GET /dashboard``).

It renders the rows the sink has already handed to W&B (``otel_wandb.sink.RunHistory``) with the same panels as
``ai-diary-report`` -- no second aggregation. The page carries one inline script that polls ``/dashboard.json`` each
export interval and swaps the page's body when the run has moved; it fetches from its own origin only (the page's
Content-Security-Policy says so) and loads nothing else. Read-only: GET only, nothing on it changes the run.

Who serves it: the W&B bridge (``WANDB_BRIDGE_DASHBOARD*``), or the exporter pipeline of one process
(``WANDB_EXPORT_DASHBOARD_PORT``). See ``otel_wandb.config``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from otel_wandb.report._html import LIVE_CSP, render, render_main, span_text
from otel_wandb.report._model import ReportData, from_rows

logger = logging.getLogger(__name__)

RANGES = {"15m": ("last 15 min", 900.0), "1h": ("last hour", 3600.0), "all": ("whole run", None)}
DEFAULT_RANGE = "1h"
_HTML, _JSON = "text/html; charset=utf-8", "application/json"
_HEADERS = {  # nothing cached, nothing sniffed, never framed, no referrer leaves the page, no script but the page's
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class LiveRun(Protocol):
    """What the dashboard reads: a ``WandbSink`` -- ``remember()`` starts its history (``RunHistory``: rows,
    tables, alerts, version), ``identity()`` says which run it is."""

    def remember(self) -> Any: ...

    def identity(self) -> dict[str, Any]: ...


class RangeError(ValueError):
    pass


def parse_range(query: str) -> str:
    """The ``range`` query parameter (15m, 1h or all; default 1h); RangeError names it otherwise."""
    values = parse_qs(query, keep_blank_values=True).get("range", [DEFAULT_RANGE])
    if len(values) != 1 or values[0] not in RANGES:
        raise RangeError(f"range must be one of {', '.join(RANGES)}")
    return values[0]


def data(run: LiveRun, range_name: str = DEFAULT_RANGE, now: float | None = None) -> tuple[ReportData, int]:
    """The report of the run's intervals that ended within the range (and the history's version)."""
    rows, tables, alerts, version = run.remember().snapshot()
    seconds = RANGES[range_name][1]
    note = ""
    if seconds is not None:
        cutoff = (time.time() if now is None else now) - seconds
        rows = [r for r in rows if _time(r.get("interval/time")) >= cutoff]
        alerts = [a for a in alerts if _time(a.get("time")) >= cutoff]
        groups = [g for g in tables.get("tables/error_groups", []) if _time(g.get("last_seen")) >= cutoff]
        tables = {**tables, "tables/error_groups": groups}
        note = "error groups seen in this range; their counts are for the whole run"
    ident = run.identity()
    d = from_rows(
        rows, tables, alerts, title=f"ai-diary - live W&B run {ident.get('name') or ''}".rstrip(), source=_where(ident)
    )
    if note and d.error_groups:
        d.notes.append(note)
    return d, version


def _time(v: object) -> float:
    return float(v) if isinstance(v, (int, float)) else float("-inf")


def _where(ident: dict[str, Any]) -> str:
    """The run's identity as one line: the URL of an online run, the ``wandb sync`` command of an offline one."""
    project = ident.get("project") or ""
    if ident.get("url"):
        return f"online run {ident['url']} ({ident.get('state')})"
    if ident.get("mode") == "offline":
        sync = f"wandb sync {ident['sync_dir']}" if ident.get("sync_dir") else "wandb sync <run directory>"
        return f"offline run, project {project} ({ident.get('state')}): to upload it, {sync}"
    return f"{ident.get('mode')} run, project {project} ({ident.get('state')})"


def _controls(range_name: str, interval_s: float) -> str:
    options = "".join(
        f'<option value="{k}"{" selected" if k == range_name else ""}>{escape(label)}</option>'
        for k, (label, _) in RANGES.items()
    )
    return (
        f'<form method="get" action="/dashboard"><label>range <select id="range" name="range">{options}</select>'
        f"</label> <noscript><button>show</button></noscript> &middot; refreshes every "
        f'<span id="every">{_every(interval_s):g}</span> s &middot; <span id="status">live</span></form>'
    )


def _every(interval_s: float) -> float:
    """How often the page polls: each export interval, between 1 s and 60 s."""
    return min(60.0, max(1.0, interval_s))


# One inline script: poll /dashboard.json, swap <main> and the header line when the run moved; the range select
# reloads through the same call and keeps the URL in step. Same-origin fetches only (CSP connect-src 'self').
_SCRIPT = """<script>
(function(){
var version=%(version)d, every=%(every_ms)d;
var sel=document.getElementById('range'), status=document.getElementById('status');
function poll(force){
  var r=sel.value;
  fetch('/dashboard.json?range='+encodeURIComponent(r),{cache:'no-store'}).then(function(res){
    if(!res.ok){throw new Error('HTTP '+res.status);}return res.json();
  }).then(function(p){
    if(force||p.version!==version){
      document.querySelector('main').innerHTML=p.main;
      document.getElementById('span').textContent=p.header;
      document.title=p.title;version=p.version;
    }
    status.textContent='live, updated '+new Date().toLocaleTimeString();
  }).catch(function(e){status.textContent='not updated: '+e.message;});
}
sel.addEventListener('change',function(){history.replaceState(null,'','/dashboard?range='+sel.value);poll(true);});
setInterval(function(){poll(false);},every);
})();
</script>"""


def page(run: LiveRun, range_name: str, interval_s: float) -> str:
    d, version = data(run, range_name)
    script = _SCRIPT % {"version": version, "every_ms": int(_every(interval_s) * 1000)}
    return render(d, live=_controls(range_name, interval_s), script=script)


def payload(run: LiveRun, range_name: str) -> dict[str, Any]:
    """What the page's script swaps in: the body, the header line, the title, and the version it shows."""
    d, version = data(run, range_name)
    return {
        "version": version,
        "range": range_name,
        "title": d.title,
        "header": f"source: {d.source} · {span_text(d)}",
        "main": render_main(d),
        "totals": d.totals,
        "identity": run.identity(),
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DashboardServer
    server_version = "ai-diary-dashboard"
    timeout = 30.0
    disable_nagle_algorithm = True

    def __getattr__(self, name: str) -> Any:
        """Read-only: every method but GET (POST, PUT, DELETE, HEAD, anything) is 405 with ``Allow: GET``."""
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self.close_connection = True  # a body, if any, is not read
        body = b"" if self.command == "HEAD" else json.dumps({"error": f"{self.command} not allowed: use GET"}).encode()
        self._send(405, body, _JSON, {"Allow": "GET"})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        srv = self.server
        try:
            if url.path in ("/", ""):
                self._send(302, b"", _HTML, {"Location": "/dashboard"})
            elif url.path == "/dashboard":
                body = srv.rendered("page", parse_range(url.query))
                self._send(200, body, _HTML, {"Content-Security-Policy": LIVE_CSP + "; frame-ancestors 'none'"})
            elif url.path == "/dashboard.json":
                self._send(200, srv.rendered("json", parse_range(url.query)), _JSON)
            elif url.path in ("/healthz", "/health"):
                self._send(200, b'{"status": "ok"}', _JSON)
            else:
                self._send(404, json.dumps({"error": "not found: the dashboard is at /dashboard"}).encode(), _JSON)
        except RangeError as exc:
            self._send(400, json.dumps({"error": str(exc), "field": "range"}).encode(), _JSON)
        except Exception:  # a page that cannot be drawn must not take the server (or the run) down
            logger.exception("dashboard: rendering failed")
            self._send(500, b'{"error": "the dashboard could not be rendered; see the server log"}', _JSON)


class DashboardServer(ThreadingHTTPServer):
    """Serves the live report of ``run`` (a ``WandbSink``, or anything with ``history`` and ``identity()``) on
    ``host:port``; ``interval_s`` is how often the page refreshes (the export interval)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, run: LiveRun, host: str = "127.0.0.1", port: int = 8088, interval_s: float = 60.0) -> None:
        self.run, self.interval_s = run, interval_s
        self.history = run.remember()  # from now on the sink keeps what it writes
        self._thread: threading.Thread | None = None
        self._cache: dict[tuple[Any, ...], bytes] = {}
        self._cache_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/dashboard"

    def rendered(self, kind: str, range_name: str) -> bytes:
        """The page ("page") or its JSON ("json") for a range, drawn once per change of the run and shared by every
        viewer: keyed by the history's version, the run's identity and, for the time-bound ranges, the half
        minute (their window moves even when nothing new arrives)."""
        clock = None if RANGES[range_name][1] is None else int(time.time() // 30)
        key = (kind, range_name, self.history.version, clock, tuple(sorted(self.run.identity().items())))
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        if kind == "page":
            body = page(self.run, range_name, self.interval_s).encode()
        else:
            body = json.dumps(payload(self.run, range_name), default=str).encode()
        with self._cache_lock:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = body
        return body

    def start(self) -> DashboardServer:
        self._thread = threading.Thread(target=self.serve_forever, args=(0.2,), name="wandb-dashboard", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Idempotent; bounded by ``timeout``."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self.server_close()
