#!/usr/bin/env python3
"""Log one CI run's test results (JUnit XML) and coverage (Cobertura XML) to a W&B run with job_type=ci.

    python scripts/ci_wandb_report.py --junit junit.xml --coverage coverage.xml

W&B is configured by its own variables: WANDB_API_KEY, WANDB_PROJECT (default ai-diary), WANDB_ENTITY,
WANDB_MODE (``offline`` writes the run under $WANDB_DIR/wandb/ with no network; ``wandb sync`` uploads it later).
The GitHub Actions context (GITHUB_SHA, GITHUB_REF_NAME, GITHUB_RUN_ID, ...) goes into the run config.
One ``run.log`` row + the summary: tests.{total,passed,failed,errors,skipped,duration_s}, coverage.{line,branch}_rate,
coverage.lines_{valid,covered}; tables ``tests`` (failed/errored cases first, capped) and ``coverage_files``.
A missing report file is a warning (the other one is still logged); exit 1 only when neither can be read or
W&B fails. ``run=`` in :func:`report` is a seam for tests (any object with log/summary/finish).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Mapping

logger = logging.getLogger("ci_wandb_report")

MAX_TEST_ROWS = 500
MAX_MESSAGE_CHARS = 300
GITHUB_KEYS = ("GITHUB_REPOSITORY", "GITHUB_SHA", "GITHUB_REF_NAME", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT",
               "GITHUB_WORKFLOW", "GITHUB_JOB", "GITHUB_EVENT_NAME", "RUNNER_OS")


@dataclass
class JUnit:
    total: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    duration_s: float = 0.0
    cases: list[tuple[str, str, float, str]] = field(default_factory=list)  # (test id, outcome, seconds, message)

    @property
    def passed(self) -> int:
        return self.total - self.failed - self.errors - self.skipped


def parse_junit(path: str) -> JUnit:
    """pytest's --junitxml (a <testsuites> root or a single <testsuite>)."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    out = JUnit()
    for suite in suites:
        out.duration_s += float(suite.get("time") or 0.0)
        for case in suite.iter("testcase"):
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                child = case.find(tag)
                if child is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    message = (child.get("message") or "")[:MAX_MESSAGE_CHARS]
                    break
            out.total += 1
            out.failed += outcome == "failed"
            out.errors += outcome == "error"
            out.skipped += outcome == "skipped"
            test_id = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
            out.cases.append((test_id, outcome, float(case.get("time") or 0.0), message))
    order = {"failed": 0, "error": 0, "skipped": 1, "passed": 2}
    out.cases.sort(key=lambda c: (order[c[1]], -c[2]))
    return out


def parse_coverage(path: str) -> tuple[dict[str, float], list[tuple[str, float, int]]]:
    """coverage.py's Cobertura XML: totals and (file, line rate, statements) per file."""
    root = ET.parse(path).getroot()
    totals = {
        "coverage.line_rate": float(root.get("line-rate") or 0.0),
        "coverage.branch_rate": float(root.get("branch-rate") or 0.0),
        "coverage.lines_valid": int(root.get("lines-valid") or 0),
        "coverage.lines_covered": int(root.get("lines-covered") or 0),
    }
    files = [(cls.get("filename", ""), float(cls.get("line-rate") or 0.0), len(cls.findall("lines/line")))
             for cls in root.iter("class")]
    return totals, sorted(files)


def github_context(env: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): env[k] for k in GITHUB_KEYS if env.get(k)}


def report(junit_path: str | None, coverage_path: str | None, *, run: Any = None,
           env: dict[str, str] | None = None) -> dict[str, float | int]:
    """Parse the reports, log them to ``run`` (default: a new wandb run, job_type=ci), finish it; return the row."""
    env = dict(os.environ) if env is None else env
    row: dict[str, float | int] = {}
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    if junit_path and os.path.exists(junit_path):
        ju = parse_junit(junit_path)
        row.update({"tests.total": ju.total, "tests.passed": ju.passed, "tests.failed": ju.failed,
                    "tests.errors": ju.errors, "tests.skipped": ju.skipped, "tests.duration_s": ju.duration_s})
        tables["tests"] = (["test", "outcome", "duration_s", "message"],
                           [list(c) for c in ju.cases[:MAX_TEST_ROWS]])
    elif junit_path:
        logger.warning("no JUnit report at %s", junit_path)
    if coverage_path and os.path.exists(coverage_path):
        totals, files = parse_coverage(coverage_path)
        row.update(totals)
        tables["coverage_files"] = (["file", "line_rate", "lines"], [list(f) for f in files])
    elif coverage_path:
        logger.warning("no coverage report at %s", coverage_path)
    if not row:
        raise FileNotFoundError("neither a JUnit nor a coverage report could be read")

    ctx = github_context(env)
    if run is None:
        import wandb

        sha = ctx.get("github_sha", "")[:7]
        name = "-".join(p for p in ("ci", ctx.get("github_ref_name", "").replace("/", "-"), sha,
                                    ctx.get("github_run_id", "")) if p)
        run = wandb.init(project=env.get("WANDB_PROJECT") or "ai-diary", entity=env.get("WANDB_ENTITY") or None,
                         job_type="ci", name=name, group=env.get("WANDB_RUN_GROUP") or "ci", config=ctx,
                         tags=["ci", ctx.get("github_event_name", "local")])
    try:
        logged: dict[str, Any] = dict(row)
        for key, (columns, rows) in tables.items():
            logged[key] = _table(columns, rows)
        run.log(logged)
        for key, value in row.items():
            run.summary[key] = value
    finally:
        run.finish(exit_code=0)
    return row


def _table(columns: list[str], rows: list[list[Any]]) -> Any:
    import wandb

    return wandb.Table(columns=columns, data=rows)


def _step_summary(row: dict[str, float | int], path: str | None) -> None:
    if not path:
        return
    lines = ["### W&B CI report", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(row.items())]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--junit", default="junit.xml", help="pytest --junitxml output (default junit.xml)")
    parser.add_argument("--coverage", default="coverage.xml", help="coverage XML (default coverage.xml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="ci_wandb_report: %(levelname)s %(message)s")
    try:
        row = report(args.junit, args.coverage)
    except FileNotFoundError as exc:
        logger.error("%s", exc)
        return 1
    except Exception as exc:  # W&B unreachable, bad key...: say so, fail the step
        logger.error("logging to W&B failed: %s: %s", type(exc).__name__, exc)
        return 1
    _step_summary(row, os.environ.get("GITHUB_STEP_SUMMARY"))
    logger.info("logged %s", ", ".join(f"{k}={v}" for k, v in sorted(row.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
