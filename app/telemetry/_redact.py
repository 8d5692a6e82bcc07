"""Text redaction for the privacy filter (app/telemetry/_privacy.py, whose docstring is the policy): query values,
bearer tokens and secret-like strings, free text we did not write, exception messages and Python tracebacks.

Pure functions over strings; every result is safe to export.
"""

from __future__ import annotations

import re

from otel_wandb.core import MAX_INPUT, scrub_message, strip_quoted

REDACTED = "REDACTED"

_QUERY_VALUE = re.compile(r"([?&;][^=&#\s\"']*=)[^&#\s\"']*")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{4,}")
_SECRET_LIKE = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}")
_TB_FRAME = re.compile(r'^\s*File "[^"]*", line \d+')
_TB_HEADERS = frozenset(
    {
        "Traceback (most recent call last):",
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    }
)
_EXC_TYPE = re.compile(r"^[A-Za-z_][\w.]*$")
_INPUT_VALUE = re.compile(r"input_value=.*?(?=, input_type=|\]|$)", re.M)


def redact_query(query: str) -> str:
    """``a=1&b`` -> ``a=REDACTED&REDACTED``: parameter names stay, values (and bare words) go."""
    if not query:
        return query
    return "&".join(p.split("=", 1)[0] + "=" + REDACTED if "=" in p else REDACTED for p in query.split("&"))


def redact_url(value: str) -> str:
    if "?" not in value:
        return value
    base, _, rest = value.partition("?")
    query, hash_, fragment = rest.partition("#")
    return base + "?" + redact_query(query) + (hash_ + REDACTED if fragment else "")


def redact_text(value: str) -> str:
    """For free text we did not write (third-party log lines): quoted literals of any length (newlines inside
    included) -> ``<str>``, everything from a quote left open on -> ``<str>`` (otel_wandb.core._errors.strip_quoted),
    pydantic ``input_value=...``, tokens and query values -> REDACTED."""
    value = _INPUT_VALUE.sub("input_value=" + REDACTED, value[:MAX_INPUT])
    value = _BEARER.sub(lambda m: m.group(1) + " " + REDACTED, value)
    value = _SECRET_LIKE.sub(REDACTED, value)
    value = strip_quoted(value)
    return _QUERY_VALUE.sub(lambda m: m.group(1) + REDACTED, value)


def redact_error(value: str) -> str:
    """Exception messages and span status descriptions: content-free by construction -- the W&B error tables'
    normalizer (otel_wandb.core._errors.scrub_message: literals of any length, everything after the first line,
    ``DETAIL:``/``[SQL:``/``[parameters:`` tails, parenthesized values go; numbers stay), after tokens and
    pydantic inputs."""
    value = _INPUT_VALUE.sub("input_value=" + REDACTED, value[:MAX_INPUT])
    value = _BEARER.sub(lambda m: m.group(1) + " " + REDACTED, value)
    return scrub_message(_SECRET_LIKE.sub(REDACTED, value))


def redact_stacktrace(value: str) -> str:
    """A Python traceback keeps its frames (``File "...", line N, in f`` and the source line under each) and the
    headers between chained exceptions; each exception line becomes ``Type: <redact_error(message)>`` and the
    message's further lines go (they hold DB rows, SQL, parameters)."""
    out: list[str] = []
    after_frame, expect_exc = False, True  # an exception line comes first, or right after the frames
    for line in value[:MAX_INPUT].splitlines():
        if _TB_FRAME.match(line):
            out.append(line)
            after_frame = expect_exc = True
        elif line.startswith("  ") and expect_exc:
            if after_frame or set(line.strip()) <= set("^~ "):
                out.append(line)  # the frame's source line, or the 3.11 caret markers under it
            after_frame = False
        elif line in _TB_HEADERS:
            out.append(line)
            after_frame, expect_exc = False, line.startswith("Traceback")
        elif not line.strip():
            out.append(line)
            after_frame = False
        elif expect_exc and not line.startswith(" "):
            kind, sep, msg = line.partition(": ")
            if _EXC_TYPE.match(kind):
                out.append(kind + (sep + redact_error(msg) if sep else ""))
            elif _EXC_TYPE.match(line):
                out.append(line)  # a bare type (no message)
            else:
                out.append(redact_error(line))
            after_frame = expect_exc = False
        # anything else: a further line of an exception message -> dropped
    return "\n".join(out)


def redact_message(value: str) -> str:
    """For log bodies written by the app: keep the text, strip secrets and query values."""
    value = _BEARER.sub(lambda m: m.group(1) + " " + REDACTED, value)
    value = _SECRET_LIKE.sub(REDACTED, value)
    return _QUERY_VALUE.sub(lambda m: m.group(1) + REDACTED, value)
