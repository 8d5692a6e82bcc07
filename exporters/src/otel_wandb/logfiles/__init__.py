"""The collector's log files: read them (rotated and ``.gz`` backups included), query them, follow them.

``entries(log_dir, streams)`` yields every record of ``combined``/``error``/``audit`` as an :class:`Entry`;
``follow(paths)`` tails files across rotations; ``main`` is the ``ai-diary-logs`` command:

Examples::

    ai-diary-logs --severity ERROR --since 1h                 # errors of the last hour, as a table
    ai-diary-logs --stream audit --action entry.delete --format jsonl
    ai-diary-logs --trace-id 4bf92f3577b34da6a3ce929d0e0e4736
    ai-diary-logs --group-by http.route --group-by severity   # counts
    ai-diary-logs --top-errors 10                             # (--severity WARN to include warnings)
    ai-diary-logs --follow --severity WARN                    # tail new lines
"""

from __future__ import annotations

from otel_wandb.logfiles._cli import error_group_key, main, top_errors
from otel_wandb.logfiles._files import (
    SEVERITY_BY_NAME,
    STREAMS,
    Entry,
    entries,
    parse_line,
    read_file,
    severity_name,
    stream_files,
    to_line,
)
from otel_wandb.logfiles._follow import follow

__all__ = [
    "SEVERITY_BY_NAME",
    "STREAMS",
    "Entry",
    "entries",
    "error_group_key",
    "follow",
    "main",
    "parse_line",
    "read_file",
    "severity_name",
    "stream_files",
    "to_line",
    "top_errors",
]
