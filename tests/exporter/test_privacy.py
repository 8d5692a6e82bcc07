"""Privacy canary for the W&B side: exception messages, span status messages and error-log bodies that carry the
user's text (short and long quoted literals, database DETAIL lines, newlines, parenthesized rows) -> the pure core
and a real offline W&B run (rows, error tables, alerts) read back from disk -> the canary is nowhere.

Policy under test (``otel_wandb.core.normalize_message``): the tables' message is the normalized one -- quoted literals,
parenthesized
and bracketed literals replaced, only the first line, nothing from ``DETAIL:``/``[SQL:``/``[parameters:`` on,
truncation last."""

from __future__ import annotations

import uuid

import pytest

from otel_wandb import records as r
from otel_wandb.core import Aggregator, CoreConfig
from otel_wandb.core._errors import normalize_message, scrub_message, strip_literals
from otel_wandb.pipeline import Pipeline
from otel_wandb.runfile import find_runs, read_run, wait_complete

CANARY = f"CANARY{uuid.uuid4().hex[:10]}"
S = 1_000_000_000

MESSAGES = [
    f"cannot summarize '{CANARY} secret day'",  # short quoted: was written verbatim to recent_errors
    "cannot summarize '" + f"{CANARY} walked by the river " * 90 + "' for user",  # quoted, > 2000 characters
    f'"{CANARY} a double-quoted one with an escaped \\" quote inside {CANARY}" is too long',
    f'null value in column "text" of relation "entries" violates not-null constraint\n'
    f"DETAIL:  Failing row contains (7, {CANARY} walked, null).",  # psycopg, DETAIL on its own line
    f"(psycopg.errors.CheckViolation) new row violates check constraint DETAIL: Failing row contains "
    f"(7, {CANARY}, 2026-11-29).",  # the same on one line
    f"(sqlite3.IntegrityError) NOT NULL constraint failed: entries.mood\n[SQL: INSERT INTO entries VALUES (?, ?)]\n"
    f"[parameters: (7, '{CANARY} walked by the river')]",  # SQLAlchemy's wrapped form
    f"bad entry\n{CANARY} on the next line",  # newline-containing, unquoted
    f"\n  \nbad entry\r\n{CANARY} after a CRLF",  # leading blank lines, CRLF
    f"cannot parse 'first line\n{CANARY} second line' here",  # a quoted literal spanning lines
    f"rejected [{CANARY}, tags (nested {CANARY})] and (open {CANARY}",  # bracketed, nested, left open
    f"can't summarize {CANARY}",  # a stray apostrophe opens a quote that never closes
]
STACK = (
    'Traceback (most recent call last):\n  File "/srv/app/api/ai.py", line 9, in summarize\n'
    f"ValueError: cannot summarize '{CANARY}'\n"
)


def spans() -> list[r.SpanRecord]:
    out = []
    for i, msg in enumerate(MESSAGES):
        tid = f"{i + 1:032x}"
        exc = (r.ExceptionInfo(f"ValueError{i}", msg, STACK),)
        out.append(
            r.SpanRecord(
                "POST /api/entries/<int:id>/ai/summarize",
                r.SERVER,
                0,
                10**6,
                tid,
                f"{i + 1:016x}",
                is_error=True,
                attributes={
                    "http.route": "/api/entries/<int:id>/ai/summarize",
                    "http.request.method": "POST",
                    "http.response.status_code": 500,
                },
                exceptions=exc,
            )
        )
    # an error span without an exception event: its status message becomes the row's message
    out.append(
        r.SpanRecord(
            "POST /x",
            r.SERVER,
            0,
            10**6,
            "f" * 32,
            "e" * 16,
            is_error=True,
            status_message=f"failed for '{CANARY}'",
            attributes={"http.route": "/x"},
        )
    )
    return out


def logs() -> list[r.LogRecord]:
    return [
        r.LogRecord(1, 17, "ERROR", body=f"summarize failed for '{CANARY}" + "x" * 300 + "'", scope="app.ai"),
        r.LogRecord(2, 17, "ERROR", body=f"db error\nDETAIL: Failing row contains ({CANARY})", scope="app.db"),
    ]


@pytest.mark.parametrize("message", MESSAGES, ids=range(len(MESSAGES)))
def test_normalized_message_drops_the_canary(message):
    assert CANARY not in normalize_message(message)
    assert CANARY not in strip_literals(message)
    assert normalize_message(message)  # something is left to tell the errors apart


def test_normalization_keeps_what_names_the_error():
    assert normalize_message(MESSAGES[0]) == "cannot summarize <str>"
    assert normalize_message(MESSAGES[1]) == "cannot summarize <str> for user"
    assert normalize_message(MESSAGES[3]) == "null value in column <str> of relation <str> violates not-null constraint"
    assert normalize_message(MESSAGES[5]) == "(sqlite3.IntegrityError) NOT NULL constraint failed: entries.mood"
    assert normalize_message("Error code: 429 (rate_limit_exceeded)") == "Error code: <num> (rate_limit_exceeded)"
    assert scrub_message("Error code: 429 (rate_limit_exceeded)") == "Error code: 429 (rate_limit_exceeded)"
    assert normalize_message(f"rejected ({CANARY}) and (my row)") == "rejected <lit> and <lit>"
    assert strip_literals("smuggled \x02(a, b)\x03 (x)") == "smuggled <lit> <lit>"  # no forged placeholders
    assert (
        normalize_message("invalid literal for int() with base 10: 'x'")
        == "invalid literal for int() with base <num>: <str>"
    )
    assert (
        normalize_message("Expecting value: line 1 column 1 (char 0)")
        == "Expecting value: line <num> column <num> <lit>"
    )


@pytest.mark.parametrize(
    "name",
    [
        "sqlite3.IntegrityError",
        "psycopg.errors.UniqueViolation",
        "ValueError",
        "sqlalchemy.exc.OperationalError",
        "requests.exceptions.HTTPError",
        "psycopg.errors.DeadlockDetected",
        "invalid_request_error",
        "rate_limit_exceeded",
        "insufficient_quota",
        "context_length_exceeded",
        "authentication_error",
    ],
)
def test_parenthesized_type_names_and_api_error_codes_stay(name):
    assert strip_literals(f"failed ({name}) at once") == f"failed ({name}) at once"


@pytest.mark.parametrize(
    "literal",
    [
        "john.smith",
        "my_diary.txt",
        "user_12345",
        "john_smith",
        "alice.Walker",
        "Smith",
        "mary.jane.Watson",
        "diary.entries.Secret",
        "walked_by_the_river",
        "errors.john",
        "JohnError.txt",
    ],
)
def test_parenthesized_names_a_person_could_write_are_literals(literal):
    assert strip_literals(f"failed for ({literal}) today") == "failed for <lit> today"


def test_core_tables_rows_and_signals_hold_no_canary():
    agg = Aggregator(CoreConfig(), start_ns=0)
    agg.add_spans(spans())
    agg.add_logs(logs())
    res = agg.flush(S)
    errors = res.tables["recent_errors"]
    assert len(errors.rows) == len(MESSAGES) + 3 and res.tables["error_groups"].rows
    assert errors.rows[0][3:5] == ["ValueError0", "cannot summarize <str>"]
    text = repr(res.row) + repr(res.tables) + repr(res.signals)
    assert CANARY not in text


def test_offline_run_rows_tables_and_alerts_hold_no_canary(tmp_path):
    env = {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path / "wandb"),
        "WANDB_PROJECT": "privacy",
        "WANDB_EXPORT_INTERVAL": "3600",
    }
    pipe = Pipeline.from_env(env)  # with the alert rules: a new error group is a W&B alert
    try:
        pipe.add_spans(spans())
        pipe.add_logs(logs())
        assert pipe.force_flush(60)
    finally:
        assert pipe.shutdown(60)
    runs = find_runs(tmp_path / "wandb")
    assert len(runs) == 1
    assert wait_complete(runs[0], 30)
    run = read_run(runs[0])
    messages = [row["message"] for row in run.tables["tables/recent_errors"]]
    assert "cannot summarize <str>" in messages and len(messages) == len(MESSAGES) + 3
    assert run.tables["tables/error_groups"] and run.alerts  # the sinks the canary could have reached were written
    files = [p for p in (tmp_path / "wandb").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), path
