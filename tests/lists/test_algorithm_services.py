"""The algorithm services list: statuses as sent (lower-cased), `total` not `count` as the
total, and its golden exposition."""

from __future__ import annotations

from exporter.lists.algorithm_services import ALGORITHM_SERVICES
from tests.lists.golden import assert_golden


async def test_golden() -> None:
    await assert_golden(ALGORITHM_SERVICES)
