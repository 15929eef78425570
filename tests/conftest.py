"""Shared fixtures: the simulator on loopback and a running exporter to scrape."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from exporter.service import Exporter
from exporter.settings import Config
from exporter.simulator import World, run_simulator
from tests.support import (
    RunningExporter,
    RunningSimulator,
    StartExporter,
    exposition_with_every_metric,
    make_simulator,
    serving,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    # Only the rootdir conftest may add options; tests/reliability/test_soak.py reads it.
    parser.addoption(
        "--soak-full",
        action="store_true",
        default=False,
        help="run the reliability soak tests at full size (30 s of scrapes, 10,000 polls)",
    )


@pytest.fixture
def world() -> World:
    return World.generate(
        seed=7,
        project_ids=["p1", "p2"],
        tasks_per_project=300,
        batch_tasks_per_project=4,
        face_edge_tasks_per_project=12,
        scenario="demo",
    )


@pytest.fixture
async def simulator(world: World) -> AsyncIterator[RunningSimulator]:
    sim = make_simulator(world)
    async with run_simulator(sim, host="127.0.0.1", port=0) as url:
        yield RunningSimulator(sim, url)


@pytest.fixture
def start_exporter() -> StartExporter:
    """Start an exporter (pollers not started: tests drive polls with poll_all_once)."""

    @contextlib.asynccontextmanager
    async def start(config: Config) -> AsyncIterator[RunningExporter]:
        async with (
            Exporter(config) as exporter,
            serving(exporter) as url,
            aiohttp.ClientSession() as session,
        ):
            yield RunningExporter(exporter, url, session)

    return start


@pytest.fixture(scope="session")
def every_metric_exposition() -> str:
    """A real exporter's text exposition in which every metric has samples (made once)."""
    return asyncio.run(exposition_with_every_metric())
