"""Fixtures of the reliability suite: captured logs, the soak size switch, and the
simulator on loopback (the `world` and `simulator` fixtures of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs
from structlog.typing import EventDict


@pytest.fixture
def logs() -> Iterator[list[EventDict]]:
    """Every structlog entry emitted during the test, as dicts (event plus fields)."""
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def soak_full(request: pytest.FixtureRequest) -> bool:
    """True with `--soak-full` (the option is declared in tests/conftest.py)."""
    try:
        return bool(request.config.getoption("--soak-full"))
    except ValueError:  # run without the root conftest
        return False
