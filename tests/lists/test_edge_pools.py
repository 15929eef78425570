"""The edge pools list and its nodes from the pool details, and its golden exposition (one
pool's details answer 404: the pool is counted, its nodes are unknown)."""

from __future__ import annotations

from exporter.lists.edge_pools import EDGE_POOLS
from tests.lists.golden import assert_golden


async def test_golden() -> None:
    await assert_golden(EDGE_POOLS)
