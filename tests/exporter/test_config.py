"""The one env-number / env-flag helper every component validates its settings with (errors name the variable)."""
from __future__ import annotations

import pytest

from otel_wandb.config import ConfigError, env_flag, env_number


class OwnError(ValueError):
    pass


def test_env_number_defaults_kinds_and_bounds():
    assert env_number({}, "N", 5, kind=int) == 5 and env_number({"N": "  "}, "N", 2.5) == 2.5
    assert env_number({}, "N", None) is None
    assert env_number({"N": " 7 "}, "N", 1, lo=0, hi=10, kind=int) == 7
    assert env_number({"N": "0.25"}, "N", 1.0, above=0) == 0.25
    cases = [({"N": "x"}, dict(kind=int), "N='x' is not an integer"),
             ({"N": "x"}, {}, "N='x' is not a number"),
             ({"N": "nan"}, {}, "N='nan' is not a finite number"),
             ({"N": "inf"}, dict(above=0), "N='inf' is not a finite number"),
             ({"N": "0"}, dict(above=0), "N must be greater than 0, got '0'"),
             ({"N": "11"}, dict(lo=0, hi=10, kind=int), "N must be between 0 and 10, got '11'"),
             ({"N": "-1"}, dict(lo=0.5), "N must be at least 0.5, got '-1'"),
             ({"N": "9"}, dict(hi=8), "N must be at most 8, got '9'")]
    for env, kw, msg in cases:
        with pytest.raises(ConfigError) as info:
            env_number(env, "N", 1, **kw)
        assert str(info.value) == msg


def test_env_flag_and_the_callers_error_class():
    assert [env_flag({"F": v}, "F") for v in ("1", "TRUE", "yes", "On")] == [True] * 4
    assert [env_flag({"F": v}, "F", True) for v in ("0", "false", "No", "off")] == [False] * 4
    assert env_flag({}, "F", True) is True and env_flag({"F": ""}, "F") is False
    with pytest.raises(OwnError, match="F must be true or false .* got 'maybe'"):
        env_flag({"F": "maybe"}, "F", error=OwnError)
    with pytest.raises(OwnError, match="^N="):
        env_number({"N": "x"}, "N", 1, error=OwnError)
