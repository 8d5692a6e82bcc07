"""The API against its own OpenAPI document, from outside: schemathesis (its CLI, ``st run``) fuzzes the real service
-- gunicorn, a SQLite file, the real local LLM behind the AI features -- from ``/api/openapi.json``.

Every check schemathesis has (``--checks all``: no 5xx, documented statuses, content types, headers and bodies,
schema-valid requests accepted, schema-invalid ones rejected, unsupported methods 405, deleted entries gone, the
token not ignored, ...) over all four phases: the documented examples, the coverage phase's boundary values, fuzzing,
and the stateful phase that follows the document's links (an entry's id to its operations, next_cursor to the next
page). Authenticated with a registered user's bearer token; fixed seed, one worker, bounded by ``MAX_EXAMPLES``.
Nothing is excluded: every finding is fixed in the API or the schema (app/schemas.py), none suppressed here.

The service runs with its telemetry on, every signal to the console exporter (its stdout, a file here), so the
privacy invariant is checked on everything the fuzzing produced: no diary text -- a canary entry's, and every longer
text, tag or name schemathesis sent or stored -- appears in any span, metric point, log record or log line.
"""

from __future__ import annotations

import collections
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gunicorn import gunicorn_app

pytestmark = pytest.mark.integration

ST = Path(sys.executable).with_name("st")  # the schemathesis CLI of this venv (a dev dependency)
SEED = 20261203
MAX_EXAMPLES = 150  # per operation and phase: ~1,400 test cases, ~45 s on one of two shared cores
ST_TIMEOUT = 240
TELEMETRY_TO_STDOUT = {
    "OTEL_SDK_DISABLED": "false",
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_METRICS_EXPORTER": "console",
    "OTEL_LOGS_EXPORTER": "console",
    "OTEL_METRIC_EXPORT_INTERVAL": "5000",
    "LOG_LEVEL": "INFO",
}


def st_command(base_url: str, token: str, reports: Path) -> list[str]:
    return [
        str(ST),
        "run",
        f"{base_url}/api/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--mode",
        "all",  # schema-valid and schema-invalid data
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--continue-on-failure",  # report every failure, not only the first of each operation
        "--generation-database",
        "none",  # no example database carried between runs: the seed alone decides
        "--request-timeout",
        "30",
        "--report",
        "json,ndjson",
        "--report-json-path",
        str(reports / "report.json"),
        "--report-ndjson-path",
        str(reports / "events.ndjson"),
        "--no-color",
    ]


def recorded(ndjson: Path, part: str) -> Iterator[Any]:
    """Every test case's ``part`` ("checks", "cases") in the run's ndjson event stream (none for skipped ones)."""
    with ndjson.open() as events:
        for line in events:
            finished = json.loads(line).get("ScenarioFinished")
            if finished:
                yield from finished.get("recorder", {}).get(part, {}).values()


def check_counts(ndjson: Path) -> collections.Counter[tuple[str, str]]:
    """(check name, status) -> how often, over every test case of the run."""
    return collections.Counter((r["name"], r["status"]) for results in recorded(ndjson, "checks") for r in results)


def followed_links(ndjson: Path) -> collections.Counter[str]:
    """Stateful test cases per link followed ("POST /api/entries -> [201] GetEntry -> GET /api/entries/{entry_id}")."""
    return collections.Counter(
        case["transition"]["id"] for case in recorded(ndjson, "cases") if (case.get("transition") or {}).get("id")
    )


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def sent_texts(ndjson: Path) -> set[str]:
    """Every string value schemathesis sent in a request body (texts, tags, names; valid or not, kept or not)."""
    return {
        text for case in recorded(ndjson, "cases") if "body" in case["value"] for text in strings(case["value"]["body"])
    }


def spellings(text: str) -> set[str]:
    """How ``text`` can appear in the exporters' output: as is, JSON-escaped (ASCII or not), stripped."""
    return {
        form
        for t in (text, text.strip())
        if len(t) >= 16
        for form in (t, json.dumps(t)[1:-1], json.dumps(t, ensure_ascii=False)[1:-1])
    }


def stored_texts(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [t for (t,) in conn.execute("SELECT text FROM entries")] + [
            t for (tags,) in conn.execute("SELECT tags FROM entries") for t in json.loads(tags or "[]")
        ]


@pytest.mark.timeout(ST_TIMEOUT + 60)
def test_schemathesis_finds_no_failure_in_the_running_service(tmp_path, llm_server, capsys):
    database, log, reports = tmp_path / "diary.sqlite3", tmp_path / "app.log", tmp_path / "schemathesis"
    canary = "canary-" + "q7Zx" * 6
    with gunicorn_app(
        tmp_path,
        llm_server.base_url,
        workers=1,
        database=database,
        timeout=30,
        stdout=log,
        tcp=True,
        env=TELEMETRY_TO_STDOUT,
    ) as client:
        token = client.post("/api/users", json={"name": "schemathesis"}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        entry = client.post(
            "/api/entries", json={"text": f"dear diary {canary}", "tags": [canary[:40]]}, headers=headers
        )
        assert entry.status_code == 201
        assert client.post(f"/api/entries/{entry.json()['id']}/ai/summarize", headers=headers).status_code == 200

        started = time.monotonic()
        run = subprocess.run(
            st_command(str(client.base_url).rstrip("/"), token, reports),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=ST_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        elapsed = time.monotonic() - started
        assert client.get("/readyz").status_code == 200  # still serving

    output = run.stdout + run.stderr
    report = json.loads((reports / "report.json").read_text())
    checks = check_counts(reports / "events.ndjson")
    cases = report["test_cases"]
    failed_checks = sum(n for (_, status), n in checks.items() if status == "failure")
    links = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", output)
    summary = (
        f"schemathesis {report['schemathesis_version']}, seed {SEED}, --max-examples {MAX_EXAMPLES}: "
        f"{cases['generated']} test cases, {sum(checks.values())} checks "
        f"({len({name for name, _ in checks})} kinds), {cases['unique_failures']} failures, "
        f"{failed_checks} failed checks, links {links and links.group(1)}/{links and links.group(2)} "
        f"followed, {elapsed:.0f} s"
    )
    per_check = ", ".join(f"{name} {n}" for (name, status), n in sorted(checks.items()) if status == "success")
    with capsys.disabled():  # the figures show in every run's output, not only when the test fails
        print(f"\n{summary}\n  passed checks: {per_check}")
    assert run.returncode == 0 and report["exit_code"] == 0, f"{summary}\n{output[-12000:]}"
    assert cases["unique_failures"] == 0 and report["failures"] == [] and report["errors"] == [], output[-12000:]
    assert failed_checks == 0, output[-12000:]
    assert cases["generated"] >= 1000, summary  # the bound did not silently shrink the run
    assert all(report["phases"][phase]["status"] == "success" for phase in ("coverage", "fuzzing", "stateful"))
    # the stateful phase followed the document's links: the new entry's id to each of its four operations
    followed = followed_links(reports / "events.ndjson")
    for target in ("GetEntry -> GET", "UpdateEntry -> PATCH", "DeleteEntry -> DELETE", "RunFeature -> POST"):
        assert any(link.startswith(f"POST /api/entries -> [201] {target} ") for link in followed), followed
    assert links and int(links.group(2)) >= 13, summary  # 13 declared (id: 4 links x 3 responses; next_cursor)

    telemetry = log.read_text(errors="replace")  # gunicorn has stopped: every exporter has flushed
    assert '"http.server.request.duration"' in telemetry and '"span_id"' in telemetry  # signals were exported
    assert "Traceback" not in telemetry and "unhandled" not in telemetry  # no 500 on the way
    # long and varied enough that finding one in the output can only be a leak, not a coincidence
    texts = sorted(
        t
        for t in {*stored_texts(database), *sent_texts(reports / "events.ndjson")}
        if len(t) >= 16 and len(set(t)) >= 8
    )
    assert any(canary in t for t in texts)
    leaked = [t[:60] for t in texts if any(form in telemetry for form in spellings(t))]
    assert leaked == [], f"diary text in the service's telemetry: {leaked[:5]}"
    with capsys.disabled():
        print(
            f"  privacy: {len(texts)} distinct texts, tags and names (sent or stored) searched in "
            f"{len(telemetry) // 1024} KiB of telemetry: none found"
        )
