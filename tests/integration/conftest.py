"""Everything under tests/integration/ starts real processes (gunicorn, the collector, the bridge, the compose
topology, Docker-free image builds): all of it is marked ``integration``, which ``make test-fast`` leaves out."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)
