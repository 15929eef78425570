"""Fixtures for the simulator's own tests: a small world served on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from exporter.simulator import World, run_simulator

from .helpers import Live, make_sim, small_world


@pytest.fixture
def sim_world() -> World:
    return small_world()


@pytest.fixture
async def live(sim_world: World) -> AsyncIterator[Live]:
    sim = make_sim(sim_world)
    async with run_simulator(sim) as url, aiohttp.ClientSession() as http:
        yield Live(sim, url, http)
