"""BENCHMARKS.md: `python -m bench` rewrites its own sections and carries over the ones measured elsewhere (marked),
such as the compose test's figures (tests/integration/deploy/test_compose_real.py)."""

from __future__ import annotations

from bench.__main__ import KEPT, kept_sections
from tests.support import ROOT


def test_marked_sections_are_kept_up_to_the_next_heading() -> None:
    text = (
        f"# Benchmarks\n\n## measured by bench\nx\n\n## elsewhere\n{KEPT}: by hand -->\nfigure\n\n## bench again\ny\n"
    )
    assert kept_sections(text) == [f"## elsewhere\n{KEPT}: by hand -->\nfigure\n"]
    assert kept_sections("## a\nno marker\n") == []


def test_the_compose_figures_survive_a_bench_run() -> None:
    kept = kept_sections((ROOT / "BENCHMARKS.md").read_text(encoding="utf-8"))
    assert any(section.startswith("## docker compose on a real engine") for section in kept)
