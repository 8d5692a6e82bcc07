"""``python -m bench``: runs every benchmark module present and rewrites BENCHMARKS.md from their sections.

Each module exposes ``run() -> str`` (a markdown section). Order: telemetry (issue 2), exporters, bridge, layers, parts
and scale (issue 12: what our layers cost per request, some parts of it priced without a profiler; the bridge behind
agents and gateways).
A bench that fails gets a section saying so (with the error), and the exit code is 1; the others still run.
``python -m bench telemetry exporters`` runs a subset (the file then holds only those sections).
Sections measured elsewhere (a heading followed by a ``<!-- kept by python -m bench ... -->`` line, e.g. the figures of
tests/integration/deploy/test_compose_real.py) are carried over from the current file unchanged.
"""

from __future__ import annotations

import importlib
import logging
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("bench_telemetry", "bench_exporters", "bench_bridge", "bench_layers", "bench_parts", "bench_scale")
KEPT = "<!-- kept by python -m bench"
logger = logging.getLogger("bench")


def header() -> str:
    try:
        import os

        cores = os.cpu_count()
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        cores, load = None, float("nan")
    return "\n".join(
        [
            "# Benchmarks",
            "",
            f"Written by `python -m bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — Python "
            f"{platform.python_version()}, {cores} cores, load average {load:.1f} at start. Machines are noisy: every "
            "comparison below is interleaved within one run and quoted as medians.",
            "",
        ]
    )


def kept_sections(text: str) -> list[str]:
    """The ``## `` sections of ``text`` whose heading is followed by a KEPT marker line, each up to the next heading."""
    lines, out = text.splitlines(), []
    for i, line in enumerate(lines):
        if line.startswith("## ") and i + 1 < len(lines) and lines[i + 1].startswith(KEPT):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
            out.append("\n".join(lines[i:end]).rstrip() + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    wanted = [a if a.startswith("bench_") else f"bench_{a}" for a in (argv if argv is not None else sys.argv[1:])]
    sections, failed = [header()], False
    for name in MODULES:
        if wanted and name not in wanted:
            continue
        if not (ROOT / "bench" / f"{name}.py").exists():
            continue
        t0 = time.monotonic()
        logger.info("bench: running %s", name)
        try:
            mod = importlib.import_module(f"bench.{name}")
            sections.append(mod.run().rstrip() + "\n")
        except Exception as exc:  # noqa: BLE001 - one broken bench must not lose the others' figures
            failed = True
            logger.error("bench: %s failed: %s", name, exc)
            sections.append(
                f"## {name}\n\nFAILED in this run: `{type(exc).__name__}: {exc}`\n\n```\n"
                f"{traceback.format_exc()[-2000:]}\n```\n"
            )
        logger.info("bench: %s took %.0f s", name, time.monotonic() - t0)
    sections += kept_sections(
        (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8") if (ROOT / "BENCHMARKS.md").exists() else ""
    )
    (ROOT / "BENCHMARKS.md").write_text("\n".join(sections), encoding="utf-8")
    logger.info("bench: wrote %s", ROOT / "BENCHMARKS.md")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
