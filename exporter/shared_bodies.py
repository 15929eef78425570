"""The exposition's bodies shared by every scrape: one bytes object per variant (format and
encoding) until what it shows changes. A fleet's body is 60 MB; a copy per scrape made 150
slow scrapers cost 5.8 GB (issue 21). Joined in a worker thread once for all the scrapes
asking meanwhile, and at most `MAX_CONCURRENT_JOINS` at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

MAX_CONCURRENT_JOINS = 2
Variant = tuple[bool, bool]  # (openmetrics, gzipped)
State = tuple[object, int]  # the rendered lines (compared by identity), telemetry changes


def _same(known: State, now: State) -> bool:
    return known[0] is now[0] and known[1] == now[1]


class SharedBodies:
    def __init__(self, join: Callable[[bool, bool], bytes]) -> None:
        self._join_body = join
        self._kept: dict[Variant, tuple[State, bytes]] = {}
        self._joining: dict[Variant, tuple[State, asyncio.Task[bytes]]] = {}
        self._joins = asyncio.Semaphore(MAX_CONCURRENT_JOINS)

    async def get(self, variant: Variant, state: State) -> bytes:
        """The body of `variant` showing `state`: kept, being joined, or joined now."""
        kept = self._kept.get(variant)
        if kept is not None and _same(kept[0], state):
            return kept[1]
        joining = self._joining.get(variant)
        if joining is None or not _same(joining[0], state):
            joining = (state, asyncio.create_task(self._join(variant, state)))
            self._joining[variant] = joining
        return await asyncio.shield(joining[1])  # a scrape cut short leaves the join be

    async def _join(self, variant: Variant, state: State) -> bytes:
        try:
            async with self._joins:
                joined = await asyncio.to_thread(self._join_body, *variant)
        finally:
            if variant in self._joining and self._joining[variant][0] is state:
                del self._joining[variant]
        # The bodies of one state only: older ones are dropped once no scrape holds them.
        self._kept = {key: kept for key, kept in self._kept.items() if _same(kept[0], state)}
        self._kept[variant] = (state, joined)
        return joined
