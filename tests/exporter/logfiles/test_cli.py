"""ai-diary-logs over collector-format files: current + rotated + gzip backups, filters, grouping, follow."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from otel_wandb import logfiles as logq
from otel_wandb.logfiles._files import Entry, entries, stream_files, to_line
from tests.support import ROOT, LineReader

T0 = int(datetime(2026, 11, 29, 9, 0, tzinfo=UTC).timestamp() * 1e9)
MIN = 60 * 10**9
RES = {"service.name": "ai-diary", "service.version": "0.1.0"}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def rec(minute: int, sev: int, body: str, scope: str = "app", trace: str = "", **attrs: object) -> Entry:
    text = {9: "INFO", 13: "WARN", 17: "ERROR"}[sev]
    return Entry(
        T0 + minute * MIN, sev, text, body, scope, trace, "00f067aa0ba902b7" if trace else "", dict(attrs), dict(RES)
    )


def write(path: Path, lines: list[list[Entry]]) -> None:
    data = "".join(to_line(batch) + "\n" for batch in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(data)
    else:
        path.write_text(data, encoding="utf-8")


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    # Oldest backup compressed, a newer plain backup, then the current file (lumberjack-style names).
    write(
        d / "combined-2026-11-29T09-30-00.000.log.gz",
        [
            [
                rec(0, 9, "GET /api/entries 200", **{"http.route": "/api/entries", "enduser.pseudo.id": "u_aaa"}),
                rec(
                    1,
                    17,
                    "db timeout after 3000 ms",
                    **{
                        "http.route": "/api/entries",
                        "exception.type": "TimeoutError",
                        "exception.message": "db timeout after 3000 ms",
                    },
                ),
            ]
        ],
    )
    write(
        d / "combined-2026-11-29T10-00-00.000.log",
        [
            [rec(40, 13, "slow LLM call", trace=TRACE, **{"http.route": "/api/entries/<int:id>/summary"})],
            [
                rec(
                    41,
                    17,
                    "db timeout after 5012 ms",
                    trace=TRACE,
                    **{
                        "http.route": "/api/entries/<int:id>/summary",
                        "exception.type": "TimeoutError",
                        "exception.message": "db timeout after 5012 ms",
                        "enduser.pseudo.id": "u_bbb",
                    },
                )
            ],
        ],
    )
    write(
        d / "combined.log",
        [
            [
                rec(70, 9, "POST /api/entries 201", **{"http.route": "/api/entries", "enduser.pseudo.id": "u_bbb"}),
                rec(71, 17, "upstream 502 from llm", **{"http.route": "/api/entries/<int:id>/reflect"}),
            ]
        ],
    )
    (d / "combined.log").open("a").write("{not json\n")
    write(
        d / "audit.log",
        [
            [
                rec(
                    5, 9, "audit", "audit", **{"audit.action": "user.register", "audit.actor": "u_ccc", "audit.seq": 6}
                ),
                rec(
                    72, 9, "audit", "audit", **{"audit.action": "entry.delete", "audit.actor": "u_bbb", "audit.seq": 7}
                ),
                rec(
                    73, 9, "audit", "audit", **{"audit.action": "entry.create", "audit.actor": "u_aaa", "audit.seq": 8}
                ),
            ]
        ],
    )
    return d


def run(args: list[str], capsys) -> tuple[int, str]:
    rc = logq.main(args)
    return rc, capsys.readouterr().out


def jsonl(args: list[str], log_dir: Path, capsys) -> list[dict]:
    rc, out = run(["--log-dir", str(log_dir), "--format", "jsonl", *args], capsys)
    assert rc == 0
    return [json.loads(line) for line in out.splitlines()]


def test_backups_and_compressed_files_are_read_oldest_first(log_dir: Path):
    names = [p.name for p in stream_files(log_dir, "combined")]
    assert names == ["combined-2026-11-29T09-30-00.000.log.gz", "combined-2026-11-29T10-00-00.000.log", "combined.log"]
    got = list(entries(log_dir))
    assert [e.body for e in got][:2] == ["GET /api/entries 200", "db timeout after 3000 ms"]
    assert len(got) == 6  # the bad line is skipped, nothing else lost
    assert got[0].resource["service.name"] == "ai-diary"


def test_severity_and_time_filters(log_dir: Path, capsys):
    rows = jsonl(["--severity", "ERROR"], log_dir, capsys)
    assert [r["severity"] for r in rows] == ["ERROR"] * 3
    rows = jsonl(
        ["--severity", "warn", "--since", "2026-11-29T09:30:00Z", "--until", "2026-11-29T10:30Z"], log_dir, capsys
    )
    assert [r["body"] for r in rows] == ["slow LLM call", "db timeout after 5012 ms", "upstream 502 from llm"]
    assert jsonl(["--since", "1h"], log_dir, capsys) == []  # all records are from the past (2026-11-29 09:00..)


def test_route_trace_user_and_action_filters(log_dir: Path, capsys):
    assert len(jsonl(["--route", "/api/entries"], log_dir, capsys)) == 3
    assert len(jsonl(["--route", "/api/entries/*"], log_dir, capsys)) == 3
    rows = jsonl(["--trace-id", TRACE.upper()], log_dir, capsys)
    assert [r["trace_id"] for r in rows] == [TRACE, TRACE]
    assert [r["body"] for r in jsonl(["--user", "u_bbb"], log_dir, capsys)] == [
        "db timeout after 5012 ms",
        "POST /api/entries 201",
    ]
    rows = jsonl(["--stream", "audit", "--action", "entry.delete"], log_dir, capsys)
    assert [(r["attributes"]["audit.actor"], r["attributes"]["audit.seq"]) for r in rows] == [("u_bbb", 7)]
    assert len(jsonl(["--stream", "audit", "--stream", "combined", "--user", "u_bbb"], log_dir, capsys)) == 3


def test_group_by_counts(log_dir: Path, capsys):
    rows = jsonl(["--group-by", "http.route", "--group-by", "severity"], log_dir, capsys)
    assert rows[0] == {"http.route": "/api/entries", "severity": "INFO", "count": 2}  # most frequent first
    total = {(r["http.route"], r["severity"]): r["count"] for r in rows}
    assert total[("/api/entries", "INFO")] == 2
    assert total[("/api/entries/<int:id>/summary", "WARN")] == 1
    assert sum(total.values()) == 6
    _rc, out = run(["--log-dir", str(log_dir), "--group-by", "severity"], capsys)
    assert out.splitlines()[0].split() == ["SEVERITY", "COUNT"]
    assert [line.split() for line in out.splitlines()[1:]] == [["ERROR", "3"], ["INFO", "2"], ["WARN", "1"]]


def test_top_errors_groups_similar_messages(log_dir: Path, capsys):
    rows = jsonl(["--top-errors", "5"], log_dir, capsys)
    assert rows[0]["count"] == 2
    assert rows[0]["error"] == "TimeoutError: db timeout after <n> ms"
    assert rows[0]["first"].startswith("2026-11-29T09:01") and rows[0]["last"].startswith("2026-11-29T09:41")
    assert [r["count"] for r in rows] == [2, 1]


def test_table_output_and_limit(log_dir: Path, capsys):
    rc, out = run(["--log-dir", str(log_dir), "--limit", "2"], capsys)
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 2
    assert "POST /api/entries 201" in lines[0] and "ERROR" in lines[1] and "upstream 502" in lines[1]


def test_bad_arguments_get_clear_errors(tmp_path: Path, capsys):
    assert logq.main(["--log-dir", str(tmp_path / "nope")]) == 2
    assert "log directory not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        logq.main(["--log-dir", str(tmp_path), "--since", "yesterday-ish"])
    assert "not a time" in capsys.readouterr().err
    for option, least, values in (("--limit", 0, ("-2", "two")), ("--top-errors", 1, ("-2", "two", "0"))):
        for value in values:
            with pytest.raises(SystemExit):
                logq.main(["--log-dir", str(tmp_path), option, value])
            assert f"argument {option}: expected a whole number >= {least}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--group-by", "severity", "--top-errors", "3"],
        ["--top-errors", "3", "--group-by", "severity"],
        ["--follow", "--group-by", "severity"],
        ["--follow", "--top-errors", "2"],
    ],
)
def test_conflicting_output_modes_are_a_usage_error(log_dir: Path, capsys, args):
    with pytest.raises(SystemExit) as exit_:
        logq.main(["--log-dir", str(log_dir), *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "not allowed with argument" in err and "usage: ai-diary-logs" in err


def test_lines_written_just_before_a_rotation_are_not_lost(tmp_path: Path):
    import queue
    import threading

    from otel_wandb.logfiles import follow

    path = tmp_path / "combined.log"
    write(path, [[rec(0, 9, "before start")]])
    got: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=lambda: [got.put(e.body) for e in follow([path], 0.02, stop.is_set)], daemon=True)
    reader.start()
    try:
        body = None
        for i in range(500):  # until the follower is reading (it starts at the end of the file)
            with open(path, "a") as fh:
                fh.write(to_line([rec(1, 9, f"ping {i}")]) + "\n")
            try:
                body = got.get(timeout=0.05)
                break
            except queue.Empty:
                continue
        assert body is not None and body.startswith("ping")
        with open(path, "a") as fh:  # a marker: the follower reads in file order, so every ping comes before it
            fh.write(to_line([rec(1, 9, "caught up")]) + "\n")
        while got.get(timeout=10) != "caught up":
            pass
        seen = []
        for n in range(3):  # write, then rename at once (no pause), then a new file: as the collector rotates
            with open(path, "a") as fh:
                fh.write(to_line([rec(2, 17, f"last line of file {n}")]) + "\n")
                fh.write('{"resourceLogs": [')  # and a record cut off by the rotation: skipped, not fatal
            os.rename(path, tmp_path / f"combined-2026-11-29T10-3{n}-00.000.log")
            write(path, [[rec(3, 13, f"first line of file {n + 1}")]])
            seen += [got.get(timeout=10) for _ in range(2)]
    finally:
        stop.set()
        reader.join(5)
    assert seen == [x for n in range(3) for x in (f"last line of file {n}", f"first line of file {n + 1}")]
    assert "before start" not in seen


@pytest.mark.integration  # `python -m otel_wandb.logfiles --follow` in its own process
def test_follow_tails_new_lines_across_rotation(log_dir: Path):
    env = {**os.environ, "LOG_DIR": str(log_dir), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_wandb.logfiles", "--follow", "--severity", "WARN", "--format", "jsonl"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    out = LineReader(proc.stdout)

    def body(what: str) -> str:
        return json.loads(out.next(20, what))["body"]

    def append(*records: Entry) -> None:
        with open(log_dir / "combined.log", "a") as fh:
            fh.write(to_line(list(records)) + "\n")

    try:
        for i in range(600):  # until it is reading (it starts at the current end of file): no fixed start-up wait
            append(rec(79, 13, f"ping {i}"))
            try:
                first = out.next(0.1)
                break
            except AssertionError:
                assert proc.poll() is None, "ai-diary-logs --follow exited"
        else:
            raise AssertionError("ai-diary-logs --follow printed nothing for 60 s")
        assert json.loads(first)["body"].startswith("ping")
        append(rec(79, 13, "caught up"))
        while body("the marker") != "caught up":  # every ping written before the marker comes out before it
            pass
        append(rec(80, 9, "ignored info"), rec(81, 17, "new error one"))
        got = [body("the new error")]  # read before the rotation below
        os.rename(log_dir / "combined.log", log_dir / "combined-2026-11-29T10-30-00.000.log")
        write(log_dir / "combined.log", [[rec(82, 13, "after rotation")]])
        got.append(body("the first line after the rotation"))
        assert got == ["new error one", "after rotation"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_several_streams_come_out_in_time_order(log_dir: Path, capsys):
    rows = jsonl(["--stream", "combined", "--stream", "audit"], log_dir, capsys)
    times = [r["time"] for r in rows]
    assert times == sorted(times) and len(rows) == 9
    assert [r["scope"] for r in rows][:3] == ["app", "app", "audit"]  # the audit record at 09:05 sits in between


def test_top_errors_with_warnings_keeps_model_names(log_dir: Path, capsys):
    with open(log_dir / "combined.log", "a") as fh:
        fh.write(
            to_line(
                [
                    rec(90, 13, "AI call failed: model=gpt-4o-mini status=502"),
                    rec(91, 13, "AI call failed: model=gpt-4o-mini status=503"),
                ]
            )
            + "\n"
        )
    rows = jsonl(["--top-errors", "10", "--severity", "WARN"], log_dir, capsys)
    assert [(r["count"], r["error"]) for r in rows] == [
        (2, "AI call failed: model=gpt-4o-mini status=<n>"),
        (2, "TimeoutError: db timeout after <n> ms"),
        (1, "slow LLM call"),
        (1, "upstream <n> from llm"),
    ]
    assert logq.main(["--log-dir", str(log_dir), "--top-errors", "3", "--since", "2030-01-01"]) == 0
    assert "no matching records" in capsys.readouterr().err
