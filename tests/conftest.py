"""Shared fixtures: the simulator on loopback and a running exporter to scrape; and, where
every suite must run (CI), skips turned into failures.

A suite that needs a tool (promtool, amtool, kubectl, Prometheus, Alertmanager) skips
without it on a developer's machine. With REQUIRE_ALL_SUITES=1, or CI set (as CI sets it)
and REQUIRE_ALL_SUITES not 0, a skipped test fails and a skipped module fails the run:
a missing tool can no longer leave the run green. (tests/test_strict_skips.py shows it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Generator, Iterator

import aiohttp
import pytest
from aioresponses import aioresponses

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

STRICT_VARIABLE = "REQUIRE_ALL_SUITES"
_TRUE = {"1", "true", "yes"}


def every_suite_must_run() -> bool:
    explicit = os.environ.get(STRICT_VARIABLE, "").strip().lower()
    if explicit:
        return explicit in _TRUE
    return os.environ.get("CI", "").strip().lower() in _TRUE


_skipped_modules: list[tuple[str, str]] = []


def _reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.skipped and not hasattr(report, "wasxfail") and every_suite_must_run():
        report.outcome = "failed"
        report.longrepr = (
            f"skipped where every suite must run ({STRICT_VARIABLE}/CI): {_reason(report.longrepr)}"
        )
    return report


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped and every_suite_must_run():
        _skipped_modules.append((report.nodeid, _reason(report.longrepr)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped_modules:
        terminalreporter.section(f"skipped where every suite must run ({STRICT_VARIABLE}/CI)")
        for nodeid, reason in _skipped_modules:
            terminalreporter.line(f"{nodeid}: {reason}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_modules and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with aioresponses() as mock:
        yield mock
