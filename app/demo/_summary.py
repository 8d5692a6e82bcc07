"""The demo's console output: the start banner and the end summary (what was sent, where telemetry went)."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from app.demo._config import DemoConfig
from app.demo._services import workers
from app.demo._sinks import ScanResult
from app.demo._traffic import Tally

CLASSES = ("2xx", "4xx", "5xx", "err")
TOPOLOGY_TEXT = {
    "collector": "full: service --OTLP--> collector --> log files (combined/error/audit) + W&B bridge --> one W&B run",
    "inprocess": "in-process: service with OTEL_*_EXPORTER=wandb --> one W&B run per gunicorn worker",
}


def say(text: str = "", out: TextIO | None = None) -> None:
    """Print a line without breaking a running progress bar."""
    tqdm.write(text, file=out or sys.stdout)


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def banner(cfg: DemoConfig, topology: str, llm_text: str) -> str:
    lines = [
        "=" * 78,
        "ai-diary demo",
        f"  topology : {TOPOLOGY_TEXT[topology]}",
        f"  service  : gunicorn, {workers(cfg, topology)} worker(s) x 4 threads",
        f"  LLM      : {llm_text}",
        f"  W&B      : WANDB_MODE={cfg.wandb_mode}"
        + ("  (no WANDB_API_KEY: offline run, no account, no network)" if cfg.wandb_mode == "offline" else ""),
        f"  requests : {cfg.requests} from {cfg.users} users   alerts phase: {'on' if cfg.alerts else 'off'}",
        f"  canary   : {cfg.canary}" + ("" if cfg.canary_given else "  (generated; set DEMO_CANARY to choose)"),
        f"  output   : {rel(cfg.out)}/",
        "=" * 78,
    ]
    return "\n".join(lines)


def traffic_table(tally: Tally) -> str:
    endpoints = sorted({ep for ep, _ in tally.counts}, key=lambda e: (e.split(" ", 1)[1].replace("{", "~"), e))
    width = max([len(e) for e in endpoints] + [len("endpoint")])
    head = f"  {'endpoint':<{width}}" + "".join(f"{c:>7}" for c in CLASSES) + f"{'total':>8}"
    rows = [head, "  " + "-" * (len(head) - 2)]
    totals: Counter[str] = Counter()
    for ep in endpoints:
        cells = [tally.counts.get((ep, c), 0) for c in CLASSES]
        totals.update(dict(zip(CLASSES, cells, strict=True)))
        rows.append(f"  {ep:<{width}}" + "".join(f"{n:>7}" for n in cells) + f"{sum(cells):>8}")
    rows.append("  " + "-" * (len(head) - 2))
    rows.append(f"  {'all':<{width}}" + "".join(f"{totals[c]:>7}" for c in CLASSES) + f"{sum(totals.values()):>8}")
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items(), key=lambda kv: str(kv[0])))
    rows.append(f"  statuses: {statuses}")
    return "\n".join(rows)


@dataclass
class Outcome:
    """Everything the summary reports; filled in by the phases as they run."""

    topology: str = ""
    llm_text: str = ""
    llm_stats: Counter[str] = field(default_factory=Counter)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    phase_requests: dict[str, int] = field(default_factory=dict)
    run_dirs: list[Path] = field(default_factory=list)
    run_lines: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    log_files: list[Path] = field(default_factory=list)
    rotation: str = ""
    stdout_files: list[Path] = field(default_factory=list)
    reports: list[Path] = field(default_factory=list)
    dashboard_url: str = ""  # the live dashboard while the demo ran
    dashboard: Path | None = None  # its last view, saved before the processes stopped
    dashboard_requests: float | None = None  # the request total it showed then
    alert_lines: list[str] = field(default_factory=list)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    scan: ScanResult | None = None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def summary(cfg: DemoConfig, tally: Tally, oc: Outcome) -> str:
    total_s = sum(oc.phase_seconds.values())
    traffic_s = oc.phase_seconds.get("traffic", 0.0) + oc.phase_seconds.get("alerts", 0.0)
    lines = [
        "",
        "=" * 78,
        "ai-diary demo: summary",
        "=" * 78,
        f"topology: {TOPOLOGY_TEXT.get(oc.topology, oc.topology)}",
        f"LLM: {oc.llm_text}",
    ]
    if oc.llm_stats:
        s = oc.llm_stats
        lines.append(
            f"  the endpoint served {s['requests']} completions, injected {s['failures_429']} x 429, "
            f"{s['failures_500']} x 500, {s['timeouts']} timeouts"
        )
    lines.append(f"\nrequests sent: {tally.total} ({cfg.requests} asked) in {traffic_s:.1f}s of traffic phases")
    lines.append("  per phase: " + ", ".join(f"{k} {v}" for k, v in oc.phase_requests.items()))
    lines.append(traffic_table(tally))
    if tally.unexpected_count:
        lines.append(f"  UNEXPECTED responses: {tally.unexpected_count}")
        lines.extend(f"    - {u}" for u in tally.unexpected)
    if oc.alert_lines:
        lines.append("\nalerts:")
        lines.extend(f"  {a}" for a in oc.alert_lines)
    lines.append("\nwhere the telemetry went:")
    if oc.run_dirs:
        writer = "the W&B bridge" if oc.topology == "collector" else "the service's W&B exporters"
        for d in oc.run_dirs:
            lines.append(f"  W&B run ({cfg.wandb_mode}, written by {writer}): {rel(d)}")
        lines.extend(f"    {d}" for d in oc.run_lines)
        if cfg.wandb_mode == "offline":
            lines.append(f"    upload later with: wandb sync {' '.join(rel(d) for d in oc.run_dirs)}")
    else:
        lines.append("  W&B run: none found under " + rel(cfg.out / "wandb"))
    for f in oc.log_files:
        lines.append(f"  log file: {rel(f)} ({_size(f)})")
    if oc.rotation:
        lines.append(f"  {oc.rotation}")
    if oc.topology == "collector" and not any(f.name.startswith("error") for f in oc.log_files):
        lines.append(
            f"  log file: {rel(cfg.out / 'logs' / 'error.log')} not created: no ERROR-severity record "
            "(the LLM failures behind the 502s are logged as WARNING)"
        )
    if oc.stdout_files:
        lines.append(f"  process output: {', '.join(rel(f) for f in oc.stdout_files)}")
    lines.append(f"  database (not a sink; holds the entries): {rel(cfg.out / 'db')}")
    for report in oc.reports:
        lines.append(f"  HTML report: {rel(report)}")
    if oc.dashboard_url:
        shown = f", {oc.dashboard_requests:.0f} requests shown" if oc.dashboard_requests is not None else ""
        saved = f"; its last view{shown}: {rel(oc.dashboard)}" if oc.dashboard else ""
        lines.append(f"  live dashboard (served while the demo ran): {oc.dashboard_url}{saved}")
    if oc.checks:
        lines.append("\ncross-checks (sinks vs what was sent):")
        lines.extend(f"  {c}" for c in oc.checks)
    if oc.scan is not None:
        lines.append("\nprivacy: " + canary_line(cfg, oc.scan))
    if oc.exit_codes:
        lines.append("\nprocesses stopped: " + ", ".join(f"{k} exit {v}" for k, v in oc.exit_codes.items()))
    lines.append(
        "timing: " + ", ".join(f"{k} {v:.1f}s" for k, v in oc.phase_seconds.items()) + f"; total {total_s:.1f}s"
    )
    lines.extend(f"note: {n}" for n in oc.notes)
    if oc.failures:
        lines.append("\nDEMO FAILED:")
        lines.extend(f"  - {f}" for f in oc.failures)
    else:
        lines.append("\ndemo completed: every phase passed")
    if oc.reports:
        lines.append(f"open the report: {rel(oc.reports[0])}")
    return "\n".join(lines)


def canary_line(cfg: DemoConfig, scan: ScanResult) -> str:
    files = sum(scan.sinks.values())
    text = (
        f"canary found in {len(scan.sinks_with_canary)} sinks "
        f"({len(scan.sinks)} sinks, {files} files, {scan.bytes_scanned / 1e6:.1f} MB scanned"
        f"{f', {scan.decoded_runs} W&B runs decoded' if scan.decoded_runs else ''}); "
        f"API tokens, user names and service secrets found in {len(scan.sinks_with_other)} sinks; "
        f"positive control: the canary is in the "
        f"database {scan.control_hits} times"
    )
    for hit in scan.hits[:10]:
        text += f"\n  LEAK: {hit.secret} in {hit.sink}: {rel(hit.path)}: ...{hit.context}..."
    return text


def _size(path: Path) -> str:
    try:
        n = path.stat().st_size
    except OSError:
        return "missing"
    return f"{n / 1024:.1f} KiB"


def cross_checks(tally: Tally, audit: Counter[str], wandb_requests: int | None) -> list[str]:
    """What the sinks recorded against what the demo sent (the collector queue is at-least-once: duplicates are
    possible, losses are not)."""

    def ok(ep: str, cls: str = "2xx") -> int:
        return tally.counts.get((ep, cls), 0)

    lines = []
    if wandb_requests is not None:
        lines.append(_check("W&B http/requests_total", wandb_requests, tally.total))
    if audit:
        pairs = [
            ("entry.create", ok("POST /api/entries")),
            ("entry.update", ok("PATCH /api/entries/{id}")),
            ("entry.delete", ok("DELETE /api/entries/{id}")),
            ("user.register", ok("POST /api/users")),
            ("auth.failed", tally.statuses.get(401, 0)),
        ]
        for feature in ("summarize", "reflect", "mood"):
            ep = f"POST /api/entries/{{id}}/ai/{feature}"
            pairs.append((f"ai.{feature}", ok(ep) + ok(ep, "5xx")))
        lines.extend(_check(f"audit.log {action}", audit.get(action, 0), sent) for action, sent in pairs)
    return lines


def _check(what: str, seen: int, sent: int) -> str:
    verdict = "ok" if seen == sent else ("duplicates (at-least-once)" if seen > sent else "MISSING")
    return f"{what}: {seen} recorded / {sent} sent: {verdict}"
