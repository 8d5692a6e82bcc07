"""bench/bench_layers.py's arithmetic and report on made-up rounds (no server is started: nothing here is timed)."""

from __future__ import annotations

from typing import Any

from bench.bench_layers import PROFILE_HOOK, group_of, per_round, section, verdicts


def rounds(**cpu: list[float]) -> dict[str, Any]:
    """A measurement of variants whose whole-tree CPU µs/request per round is given (all in the app tree)."""
    return {
        "seconds": 10,
        "rounds": len(next(iter(cpu.values()))),
        "warmup": 3,
        "rps": {v: [1e6 / x for x in xs] for v, xs in cpu.items()},
        "cores": {v: [0.9] * len(xs) for v, xs in cpu.items()},
        "cpu": {v: [{"app": x, "app.wandb": 0.0} for x in xs] for v, xs in cpu.items()},
    }


def test_ratios_are_per_round_throughput_equivalents_of_off() -> None:
    m = rounds(off=[2000, 1000], instr=[3000, 1600])
    assert per_round(m, "instr", "off") == [2000 / 3000, 1000 / 1600]


def test_verdicts_compare_the_medians_with_the_goals() -> None:
    m = rounds(off=[2000] * 3, instr=[3000] * 3, wandb=[3200] * 3, otlp=[3600] * 3)
    got = verdicts(m)
    assert got["wandb/off"] == (2000 / 3200, True)
    assert got["otlp/off"] == (2000 / 3600, False)
    assert abs(got["wandb/instr"][0] - (3200 / 3000 - 1)) < 1e-12 and got["wandb/instr"][1]
    assert abs(got["otlp/instr"][0] - 0.2) < 1e-12 and not got["otlp/instr"][1]


def test_the_section_states_each_goal_plainly() -> None:
    text = section(rounds(off=[2000] * 3, instr=[3000] * 3, wandb=[3200] * 3, otlp=[3600] * 3), None, None)
    assert "| C. full, in-process W&B | 0.62× (0.62–0.62) | ≥ 0.60× | met |" in text
    assert "| D. full, OTLP -> collector -> bridge | 0.56× (0.56–0.56) | ≥ 0.60× | **missed** |" in text
    assert "our layers add +7 % over instrumentation only — the ≤ +15 % goal is met" in text
    assert "our layers add +20 % over instrumentation only — the ≤ +15 % goal is missed" in text
    assert "the upstream instrumentation (B − A) is 1.00 ms" in text


def test_a_variant_below_instrumentation_only_is_called_noise_not_a_negative_share() -> None:
    text = section(rounds(off=[2000] * 3, instr=[3000] * 3, wandb=[2900] * 3), None, None)
    assert "C's median is 0.10 ms a request *below* B's" in text
    assert "(C − B)" not in text  # no share of the gap for our layers


def test_a_ratio_at_the_goals_rounding_shows_the_deciding_digit() -> None:
    text = section(rounds(off=[1000] * 3, wandb=[1676] * 3), None, None)  # 0.5967 -> would print 0.60
    assert "0.597×" in text and "**missed**" in text


def test_code_is_grouped_by_where_it_lives() -> None:
    assert group_of("/x/exporters/src/otel_wandb/sdk/_convert.py").startswith("ours: otel_wandb")
    assert group_of("/x/app/telemetry/_otlp.py") == "ours: app/telemetry"
    assert group_of("/x/site-packages/opentelemetry/instrumentation/flask/__init__.py").startswith("OpenTelemetry")
    assert group_of("/x/site-packages/wandb/sdk/wandb_run.py") == "wandb (in process)"
    assert group_of("~").startswith("C builtins")
    assert group_of("/usr/lib/python3.11/threading.py") == "stdlib and other packages"


def test_the_profile_hook_is_valid_python() -> None:
    compile(PROFILE_HOOK, "sitecustomize.py", "exec")
