"""Reports: one self-contained, offline HTML dashboard (``ai-diary-report``) from an offline W&B run or the
collector's logs, and the W&B workspace (dashboard) as code.

Python API (used by ``app.demo`` at the end of ``make demo``)::

    from otel_wandb.report import write_report
    path = write_report(source, out_path)   # -> Path of the written HTML file
    path = write_report([run_dir_1, run_dir_2], out_path)   # several runs (one per worker) merged

``source`` is a W&B run directory (``offline-run-*``), a ``run-*.wandb`` file, a wandb directory (``$WANDB_DIR``
or its ``wandb/`` child: the newest run is used) or the collector's log directory (``$LOG_DIR`` with
``combined.log`` and its rotated backups). The page has inline CSS and SVG only: no scripts, no remote resources.

The page says what its source knows: a figure the source cannot tell (requests, tokens or cost in log files that do
not carry them; audit events in a W&B run) is "—" with the reason, never 0; a measured nothing is 0 ("no AI calls
in this run"). Severities take one palette in every chart and table (``_svg.SEVERITY_COLORS``: ERROR/FATAL red,
WARN amber, INFO blue, DEBUG/TRACE grey). From log files: log volume per severity over time, ERROR/FATAL records per
logger and per route, the top messages (content-free) with first / last seen, audit actions and failed
authentications over time.

Command line::

    ai-diary-report [SOURCE] [-o report.html]      # SOURCE defaults to the newest run in $WANDB_DIR, else $LOG_DIR
    ai-diary-report RUN_DIR RUN_DIR ... -o all.html  # several runs merged
    ai-diary-report --publish-dashboard            # save the W&B workspace (needs WANDB_API_KEY)
"""

from __future__ import annotations

from otel_wandb.report._cli import DEFAULT_OUT, load, main, resolve, write_report
from otel_wandb.report._html import render
from otel_wandb.report._live import DashboardServer
from otel_wandb.report._merge import merge
from otel_wandb.report._model import ReportData, from_logs, from_run
from otel_wandb.report._workspace import (
    MARKER,
    PanelSpec,
    SectionSpec,
    build_workspace,
    check_keys,
    publish,
    publish_once,
    publish_wanted,
    referenced_keys,
    spec,
)

__all__ = [
    "DEFAULT_OUT",
    "MARKER",
    "DashboardServer",
    "PanelSpec",
    "ReportData",
    "SectionSpec",
    "build_workspace",
    "check_keys",
    "from_logs",
    "from_run",
    "load",
    "main",
    "merge",
    "publish",
    "publish_once",
    "publish_wanted",
    "referenced_keys",
    "render",
    "resolve",
    "spec",
    "write_report",
]
