"""Report charts: y ticks on nice numbers (1, 2, 5 x 10^k), labels as precise as the step needs, and a left margin
that fits the longest label next to the rotated unit label -- measured in headless Chromium, not estimated."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess

import pytest

from otel_wandb.report import _svg as svg
from tests.support.chromium import chromium_cmd


@pytest.mark.parametrize(
    "vmax", [0.00187, 0.0008, 0.0025, 0.9, 1.0, 7.3, 42, 62.5, 188, 250, 1250, 3750, 4900, 12_345, 2.6e6]
)
def test_ticks_are_nice_numbers_covering_the_data(vmax):
    ticks, step = svg.nice_ticks(vmax)
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    assert round(mantissa, 9) in (1, 2, 5)
    assert ticks[0] == 0 and ticks[-1] >= vmax and ticks[-2] < vmax
    assert 2 <= len(ticks) - 1 <= 4
    assert all(math.isclose(b - a, step, rel_tol=1e-9) for a, b in itertools.pairwise(ticks))


def test_the_auditors_bad_ticks_are_gone():
    assert svg.nice_ticks(250) == ([0, 100, 200, 300], 100)  # was 0, 62.5, 125, 188, 250
    assert svg.nice_ticks(5000) == ([0, 2000, 4000, 6000], 2000)  # was 1.25k, 2.5k, 3.75k
    usd, step = svg.nice_ticks(0.00187)
    assert [svg.tick_label(v, step, "usd") for v in usd] == ["$0", "$0.0005", "$0.0010", "$0.0015", "$0.0020"]


@pytest.mark.parametrize(
    "vmax, axis, labels",
    [
        (0.78, "pct", ["0%", "20%", "40%", "60%", "80%"]),
        (0.031, "pct", ["0%", "1%", "2%", "3%", "4%"]),
        (0.9, "usd", ["$0", "$0.50", "$1.00"]),
        (180, "usd", ["$0", "$50", "$100", "$150", "$200"]),
        (4900, "num", ["0", "2k", "4k", "6k"]),
        (1600, "num", ["0", "500", "1000", "1500", "2000"]),
        (2.6e6, "num", ["0", "1M", "2M", "3M"]),
    ],
)
def test_tick_labels(vmax, axis, labels):
    ticks, step = svg.nice_ticks(vmax)
    assert [svg.tick_label(v, step, axis) for v in ticks] == labels


def test_margin_grows_with_the_longest_label():
    t = [0.0, 10.0, 20.0]
    short = svg.line_chart("a", "a", t, {"x": [1, 5, 9]}, "ms")
    long = svg.line_chart("b", "b", t, {"x": [0.0, 0.00187, 0.0004]}, "USD", axis="usd")
    left = lambda chart: float(re.search(r'<rect x="(\d+)" y="14"', chart).group(1))  # noqa: E731 - plot area
    assert left(long) > left(short) >= 30
    assert left(long) >= len("$0.0015") * svg.CHAR_W + 8 + 20


CASES = {  # chart id -> (values, unit, axis): the report's real kinds of axis, with long labels
    "usd_small": ([0.0, 0.00187, 0.0004, 0.0011], "USD", "usd"),
    "usd_tiny": ([0.0, 0.00008, 0.00002], "USD", "usd"),
    "usd_large": ([0.0, 1234.5, 987.0], "USD", "usd"),
    "tokens": ([0, 4900, 3750, 120], "tokens", "num"),
    "tokens_exact": ([0, 1600, 1450], "tokens", "num"),
    "pct": ([0.0, 0.78, 0.1], "", "pct"),
    "ms": ([3.0, 188.0, 62.5], "ms", "num"),
}
MEASURE = """<script>
const out = [];
for (const chart of document.querySelectorAll("svg.chart")) {
  const box = chart.getBoundingClientRect();
  const unit = chart.querySelector("text.unit");
  const u = unit ? unit.getBoundingClientRect() : null;
  for (const tick of chart.querySelectorAll("text.tick")) {
    const r = tick.getBoundingClientRect();
    out.push({chart: chart.dataset.chart, label: tick.textContent, left: r.left - box.left,
              gap: u ? r.left - u.right : null});
  }
}
document.getElementById("result").textContent = JSON.stringify(out);
</script>"""


@pytest.mark.integration  # a real Chromium
def test_tick_labels_are_neither_clipped_nor_touch_the_unit_label_in_chromium(tmp_path):
    charts = "".join(
        svg.line_chart(cid, cid, [0.0, 10.0, 20.0, 30.0][: len(vals)], {"s": vals}, unit, axis=axis)
        for cid, (vals, unit, axis) in CASES.items()
    )
    page = tmp_path / "ticks.html"
    page.write_text(
        f'<!doctype html><html><body style="margin:0">{charts}<pre id="result"></pre>{MEASURE}</body></html>'
    )
    dom = subprocess.run(
        chromium_cmd(tmp_path, "--virtual-time-budget=3000", "--dump-dom", page.as_uri()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="result">(.*?)</pre>', dom.stdout, re.S)
    assert found and found.group(1), dom.stdout[-2000:]
    ticks = json.loads(found.group(1))
    assert {t["chart"] for t in ticks} == set(CASES)
    assert {t["label"] for t in ticks if t["chart"] == "usd_small"} >= {"$0.0005", "$0.0015"}
    for t in ticks:
        assert t["left"] >= 0, f"{t['chart']}: tick {t['label']!r} is clipped at the left edge"
        if t["gap"] is not None:
            assert t["gap"] >= 2, f"{t['chart']}: tick {t['label']!r} runs into the unit label"
