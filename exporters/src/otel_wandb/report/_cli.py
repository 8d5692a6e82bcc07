"""``write_report`` and the ``ai-diary-report`` command line (see the package docstring)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from otel_wandb.config import LOG_DIR, WANDB_DIR, env_str, environ
from otel_wandb.report._html import render
from otel_wandb.report._merge import merge
from otel_wandb.report._model import ReportData, from_logs, from_run
from otel_wandb.report._workspace import publish
from otel_wandb.runfile import find_runs

logger = logging.getLogger(__name__)
DEFAULT_OUT = "ai-diary-report.html"


def resolve(source: str | os.PathLike[str]) -> tuple[str, Path]:
    """("run" | "logs", path) for a source path; raises ValueError naming what was expected."""
    p = Path(source)
    if p.is_file() and p.suffix == ".wandb":
        return "run", p.parent
    if p.is_dir():
        if any(p.glob("run-*.wandb")):
            return "run", p
        runs = find_runs(p)
        if runs:
            return "run", runs[-1]
        if any(p.glob("*.log")) or any(p.glob("*.log.gz")):
            return "logs", p
    raise ValueError(
        f"{source}: not a W&B run (directory with run-*.wandb, a .wandb file, or a wandb dir) nor a "
        "collector log directory (combined.log)"
    )


Source = str | os.PathLike[str]


def load(source: Source | Sequence[Source]) -> ReportData:
    """Report data for one source, or several W&B runs merged (e.g. one run per gunicorn worker)."""
    if isinstance(source, (str, os.PathLike)):
        kind, path = resolve(source)
        return from_run(path) if kind == "run" else from_logs(path)
    resolved = [resolve(s) for s in source]
    if not resolved:
        raise ValueError("no source given")
    if len({kind for kind, _ in resolved}) > 1:
        raise ValueError("cannot merge W&B runs with log directories: give one kind of source")
    return merge([from_run(p) if kind == "run" else from_logs(p) for kind, p in resolved])


def write_report(source: Source | Sequence[Source], out_path: Source) -> Path:
    """Write the HTML report for ``source`` to ``out_path`` (parent directories created) and return its path.

    ``source``: a run directory, ``.wandb`` file, wandb directory (newest run) or log directory; or a list of
    run directories, merged into one report (counts, tokens and cost summed over the runs)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    html = render(load(source))
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    logger.info("report written: %s", out)
    return out


def default_source() -> str | None:
    """``$WANDB_DIR`` when it holds a run, else ``$LOG_DIR`` when it holds log files."""
    env = environ()
    for value in (env_str(env, WANDB_DIR), env_str(env, LOG_DIR)):
        if value:
            try:
                resolve(value)
                return value
            except ValueError:
                continue
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ai-diary-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "source",
        nargs="*",
        help="run dir, .wandb file, wandb dir or log dir (default: $WANDB_DIR, "
        "then $LOG_DIR); several run dirs are merged into one report",
    )
    parser.add_argument("-o", "--out", default=DEFAULT_OUT, help=f"HTML file to write (default {DEFAULT_OUT})")
    parser.add_argument(
        "--publish-dashboard",
        action="store_true",
        help="save the W&B workspace (exporters/src/otel_wandb/report/_workspace.py); needs WANDB_API_KEY",
    )
    parser.add_argument("--entity", help="W&B entity for --publish-dashboard (default $WANDB_ENTITY)")
    parser.add_argument("--project", help="W&B project for --publish-dashboard (default $WANDB_PROJECT or ai-diary)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.publish_dashboard:
        try:
            print(f"W&B dashboard: {publish(args.entity, args.project)}")
        except (RuntimeError, ImportError) as exc:
            print(f"ai-diary-report: {exc}", file=sys.stderr)
            return 2
        if not args.source:
            return 0
    source: Source | list[Source] | None = (
        args.source if len(args.source) > 1 else (args.source[0] if args.source else default_source())
    )
    if not source:
        print("ai-diary-report: no source: pass a run or log directory, or set WANDB_DIR / LOG_DIR", file=sys.stderr)
        return 2
    try:
        out = write_report(source, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"ai-diary-report: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
