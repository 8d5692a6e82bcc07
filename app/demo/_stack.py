"""The telemetry side of the demo: the collector and the W&B bridge (full topology), where their output lands,
and the HTML report at the end.

The environment of both comes from ``app.demo.topology`` (the same settings tests and benchmarks use); the
processes themselves are started through the demo's own helper so their output is captured under DEMO_OUT/stdout.
"""

from __future__ import annotations

import gzip
import importlib
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine

from app.audit import read_audit_log, verify
from app.demo import topology as topo
from app.demo._config import DASHBOARD_LINE, DASHBOARD_PORT, DemoConfig
from app.demo._services import run_dirs
from app.demo._summary import Outcome
from app.demo.procs import DemoError, Proc, Procs, port_or_any
from otel_wandb import runfile

log = logging.getLogger(__name__)

__all__ = [
    "Stack",
    "audit_verify",
    "log_files",
    "rotation_line",
    "run_dirs",
    "save_dashboard",
    "start",
    "write_report",
]

# The demo's log files rotate small, so a longer run shows backups: 1 MB per file, 3 backups per log. Batches stay
# far below 1 MB (a file line is one batch; the rotating writer refuses a line larger than a file), as in the
# rotation tests (tests/integration/collector/test_files.py).
ROTATE_MB, ROTATE_BACKUPS = 1, 3
ROTATION_ENV = {
    "LOG_MAX_MEGABYTES": str(ROTATE_MB),
    "LOG_MAX_BACKUPS": str(ROTATE_BACKUPS),
    "AUDIT_LOG_MAX_MEGABYTES": str(ROTATE_MB),
    "AUDIT_LOG_MAX_BACKUPS": str(ROTATE_BACKUPS),
    "OTEL_COLLECTOR_BATCH_SIZE": "200",
    "OTEL_COLLECTOR_BATCH_MAX_SIZE": "400",
}


@dataclass
class Stack:
    otlp_endpoint: str | None = None
    collector: Proc | None = None
    bridge: Proc | None = None
    bridge_url: str = ""
    dashboard_url: str = ""


def start(procs: Procs, cfg: DemoConfig, topology: str) -> Stack:
    if topology != "collector":
        return Stack()
    bridge = procs.python(
        "wandb-bridge",
        "otel_wandb.bridge",
        env={
            "WANDB_BRIDGE_HOST": "127.0.0.1",
            "WANDB_BRIDGE_PORT": "0",
            "WANDB_BRIDGE_SHUTDOWN_TIMEOUT_S": "20",
            "WANDB_BRIDGE_DASHBOARD_PORT": str(port_or_any(DASHBOARD_PORT)),
        },
    )
    bridge_url = bridge.wait_for_output(r"listening on (http://\S+)", timeout=60).group(1).rstrip("/")
    dashboard_url = bridge.wait_for_output(DASHBOARD_LINE, timeout=5).group(1)
    bridge.wait_http(bridge_url + "/healthz", timeout=30)

    ports = topo.CollectorPorts()
    env = topo.collector_env(
        cfg.out / "logs",
        ports,
        cfg.out / "queue",
        {
            **procs.base_env,
            "WANDB_BRIDGE_ENDPOINT": bridge_url,
            "DEPLOYMENT_ENVIRONMENT": "demo",
            "OTEL_COLLECTOR_BATCH_TIMEOUT": "1s",
            "LOG_FLUSH_INTERVAL": "1s",
            "SPAN_METRICS_FLUSH_INTERVAL": "5s",
            **ROTATION_ENV,
        },
    )
    collector = procs.start(
        "collector", [str(topo.COLLECTOR_BINARY), f"--config=file:{topo.COLLECTOR_CONFIG}"], env=env
    )
    collector.wait_http(f"http://127.0.0.1:{ports.health}/", timeout=30, ok=lambda r: r.status_code == 200)
    return Stack(
        otlp_endpoint=f"http://127.0.0.1:{ports.http}",
        collector=collector,
        bridge=bridge,
        bridge_url=bridge_url,
        dashboard_url=dashboard_url,
    )


def save_dashboard(url: str, path: Path) -> tuple[Path | None, float | None]:
    """Save the live dashboard's page (whole run) and return it with the request total it shows; (None, None) when
    it does not answer (the demo goes on: the page is a view, the run is the record)."""
    try:
        page = httpx.get(url, params={"range": "all"}, timeout=10)
        data = httpx.get(url + ".json", params={"range": "all"}, timeout=10)
        page.raise_for_status()
        data.raise_for_status()
        total = data.json()["totals"].get("requests")
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        log.warning("the live dashboard at %s did not answer: %s", url, exc)
        return None, None
    path.write_text(page.text, encoding="utf-8")
    return path, total


def log_files(log_dir: Path) -> list[Path]:
    if not log_dir.exists():
        return []
    return sorted(p for p in log_dir.rglob("*") if p.is_file())


def rotation_line(log_dir: Path, requests: int) -> str:
    """What the collector's rotation did in this run: backups per log (``<name>-<timestamp>.log``), or why none."""
    files = log_files(log_dir)
    backups = {base: [p for p in files if p.name.startswith(base + "-")] for base in ("combined", "error", "audit")}
    cut = sum(len(b) for b in backups.values())
    head = (
        f"rotation: each log rotates at {ROTATE_MB} MB and keeps {ROTATE_BACKUPS} backups (LOG_MAX_MEGABYTES, "
        f"LOG_MAX_BACKUPS, AUDIT_LOG_*): "
    )
    if cut:
        return head + ", ".join(f"{base}.log {len(b)} backup(s)" for base, b in backups.items() if b)
    live = log_dir / "combined.log"
    size = live.stat().st_size if live.exists() else 0
    hint = ""
    if size and requests:
        hint = f"; about {ROTATE_MB * 1024 * 1024 * requests // size + 1} DEMO_REQUESTS would cut the first one"
    return head + f"no backup yet: combined.log holds {size / 1024 / 1024:.2f} MB{hint}"


def write_report(cfg: DemoConfig, topology: str, oc: Outcome) -> list[Path]:
    """Self-contained HTML reports under DEMO_OUT: ``report.html`` from the W&B run (with several in-process runs,
    one ``report-<run>.html`` each as well) and, in the full topology, ``report-logs.html`` from the log files."""
    try:
        report = importlib.import_module("otel_wandb.report")
    except ImportError as exc:
        raise DemoError(f"report: otel_wandb.report is not available ({exc})") from None
    jobs: list[tuple[Path, Path]] = []
    runs = oc.run_dirs
    if runs:
        jobs.append((runs[-1], cfg.out / "report.html"))
        if len(runs) > 1:
            jobs += [(d, cfg.out / f"report-{d.name.rsplit('-', 1)[-1]}.html") for d in runs]
    if topology == "collector" and (cfg.out / "logs" / "combined.log").exists():
        jobs.append((cfg.out / "logs", cfg.out / "report-logs.html"))
    written = []
    for source, out_path in jobs:
        try:
            path = Path(report.write_report(source, out_path))
        except Exception as exc:  # someone else's module: report it, keep the rest of the summary
            log.debug("write_report(%s) failed", source, exc_info=True)
            raise DemoError(f"report: write_report({source}) failed: {type(exc).__name__}: {exc}") from None
        if not path.exists() or path.stat().st_size == 0:
            raise DemoError(f"report: {path} was not written")
        written.append(path)
    return written


def describe_runs(dirs: list[Path]) -> tuple[list[str], int | None]:
    """One line per W&B run read back from disk, and the requests the runs counted (None if unreadable)."""
    lines, seen = [], 0
    for run_dir in dirs:
        try:
            run = runfile.read_run(run_dir)
        except Exception as exc:  # noqa: BLE001 - a reader problem is reported, not fatal
            lines.append(f"{run_dir.name}: unreadable ({type(exc).__name__}: {exc})")
            return lines, None
        totals = run.series("http/requests_total")
        seen += int(totals[-1]) if totals else 0
        titles = ", ".join(a["title"] for a in run.alerts[:6]) or "none"
        lines.append(
            f"{run_dir.name}: {len(run.history)} history rows, http/requests_total "
            f"{int(totals[-1]) if totals else 0}, {len(run.tables)} tables, alerts recorded: {titles}, "
            f"exit code {run.exit_code}"
        )
    return lines, seen


_PROBLEM = re.compile(
    r"Traceback \(most recent call last\)|\[ERROR\]|\bERROR\b|\terror\t"
    r"|\"level\": ?\"(ERROR|CRITICAL)\""
)


def child_problems(files: list[Path]) -> list[str]:
    """Tracebacks and error-level lines in the children's output, one note per file (none on a clean run)."""
    notes = []
    for path in files:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        bad = [ln for ln in lines if _PROBLEM.search(ln)]
        if bad:
            notes.append(f"{path.name}: {len(bad)} error line(s), first: {bad[0][:160]}")
    return notes


def audit_counts(log_dir: Path) -> Counter[str]:
    """``audit.action`` counts in the collector's audit log (OTLP/JSON lines, rotated backups included)."""
    counts: Counter[str] = Counter()
    for path in sorted(log_dir.glob("audit*")):
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    for action in _AUDIT_ACTION.findall(line):
                        counts[action] += 1
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
    return counts


_AUDIT_ACTION = re.compile(r'"audit\.action","value":\{"stringValue":"([^"]+)"')


def audit_verify(db: Path, log_dir: Path | None) -> tuple[bool, str]:
    """``ai-diary-audit verify`` on the demo's database (and, with the collector, against its audit log): the
    tamper-evident chain must be intact and hold every record the audit log has."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        expected, unchained = read_audit_log(str(log_dir)) if log_dir and log_dir.is_dir() else ([], [])
        verdict = verify(engine, expected)
    finally:
        engine.dispose()
    against = f", all {len(expected)} audit.log links present" if expected else ""
    if verdict.ok and unchained:
        return False, f"INCOMPLETE: {len(unchained)} audit record(s) without a chain link"
    return verdict.ok, (
        verdict.message + against if verdict.ok else f"BROKEN at seq {verdict.broken_seq}: {verdict.message}"
    )
