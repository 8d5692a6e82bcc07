"""scripts/ci_wandb_report.py writes a real offline W&B run (job_type=ci), read back from disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from otel_wandb.runfile import find_runs, iter_payloads, read_run
from tests.support import ROOT

SCRIPT = ROOT / "scripts" / "ci_wandb_report.py"

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="2.5">
<testcase classname="tests.test_a" name="test_ok" time="0.010"/>
<testcase classname="tests.test_a" name="test_ok_2" time="0.020"/>
<testcase classname="tests.test_a" name="test_fails" time="1.500"><failure message="assert 1 == 2">trace</failure>
</testcase>
<testcase classname="tests.test_b" name="test_errors" time="0.100"><error message="fixture broke">trace</error>
</testcase>
<testcase classname="tests.test_b" name="test_skip" time="0.000"><skipped message="no gpu"/></testcase>
</testsuite></testsuites>
"""

COVERAGE = """<?xml version="1.0" ?>
<coverage version="7.17.5" line-rate="0.8" branch-rate="0.5" lines-valid="10" lines-covered="8">
<packages><package name="app" line-rate="0.8"><classes>
<class name="a.py" filename="app/a.py" line-rate="1"><lines><line number="1" hits="1"/><line number="2" hits="1"/>
</lines></class>
<class name="b.py" filename="app/b.py" line-rate="0.75"><lines><line number="1" hits="1"/><line number="2" hits="0"/>
</lines></class>
</classes></package></packages></coverage>
"""


def run_report(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "GITHUB_"))}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path),
        WANDB_SILENT="true",
        WANDB_PROJECT="ai-diary-ci",
        GITHUB_SHA="0123456789abcdef",
        GITHUB_REF_NAME="main",
        GITHUB_RUN_ID="42",
        GITHUB_EVENT_NAME="push",
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
    )
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )


def run_record(run_dir: Path) -> tuple[str, dict]:
    """(job_type, init config) from the run record (read_run does not surface them)."""
    from wandb.proto import wandb_internal_pb2 as pb

    for payload in iter_payloads(next(run_dir.glob("run-*.wandb"))):
        rec = pb.Record()
        rec.ParseFromString(payload)
        if rec.WhichOneof("record_type") == "run":
            config = {i.key: json.loads(i.value_json) for i in rec.run.config.update}
            return rec.run.job_type, config
    raise AssertionError("no run record")


def test_offline_run_holds_tests_and_coverage(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT)
    (tmp_path / "coverage.xml").write_text(COVERAGE)
    proc = run_report(tmp_path, "--junit", "junit.xml", "--coverage", "coverage.xml")
    assert proc.returncode == 0, proc.stderr
    runs = find_runs(tmp_path)
    assert len(runs) == 1
    run = read_run(runs[0])
    job, config = run_record(runs[0])
    assert job == "ci"
    assert run.project == "ai-diary-ci"
    assert run.exit_code == 0
    assert config["github_sha"] == "0123456789abcdef" and config["github_run_id"] == "42"
    assert len(run.history) == 1  # one row, not one call per metric
    row = run.history[0]
    assert (
        row["tests.total"],
        row["tests.passed"],
        row["tests.failed"],
        row["tests.errors"],
        row["tests.skipped"],
    ) == (5, 2, 1, 1, 1)
    assert row["tests.duration_s"] == pytest.approx(2.5)
    assert row["coverage.line_rate"] == pytest.approx(0.8) and row["coverage.lines_covered"] == 8
    assert run.summary["tests.failed"] == 1 and run.summary["coverage.branch_rate"] == pytest.approx(0.5)
    tests = run.tables["tests"]
    assert [t["outcome"] for t in tests[:2]] == ["failed", "error"]  # problems first
    assert tests[0]["test"] == "tests.test_a::test_fails" and tests[0]["message"] == "assert 1 == 2"
    files = {f["file"]: f["line_rate"] for f in run.tables["coverage_files"]}
    assert files == {"app/a.py": 1.0, "app/b.py": 0.75}
    assert "| tests.failed | 1 |" in (tmp_path / "summary.md").read_text()


def test_missing_coverage_still_logs_the_tests(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT)
    proc = run_report(tmp_path, "--junit", "junit.xml", "--coverage", "nope.xml")
    assert proc.returncode == 0, proc.stderr
    assert "no coverage report at nope.xml" in proc.stderr
    run = read_run(find_runs(tmp_path)[0])
    assert run.history[0]["tests.total"] == 5 and "coverage.line_rate" not in run.history[0]


def test_no_report_at_all_fails_without_a_run(tmp_path: Path) -> None:
    proc = run_report(tmp_path, "--junit", "a.xml", "--coverage", "b.xml")
    assert proc.returncode == 1
    assert "neither a JUnit nor a coverage report" in proc.stderr
    assert find_runs(tmp_path) == []
