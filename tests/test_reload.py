"""Reload without a restart: the live target set of `Exporter.reload`, and SIGHUP and
`POST /-/reload` through the console script.

| change to the code (tried, seen red) | failing test |
|---|---|
| `Exporter._apply`: drop every running target | test_unchanged_targets_keep_their_pollers... |
| `Exporter._drop`: `store.remove` left out | test_unchanged_targets_keep_their_pollers... |
| `Exporter._drop`: `forget` always False | test_unchanged_targets_keep_their_pollers... |
| `Exporter._apply`: `!=` replaced by a key check | test_a_changed_target_restarts... |
| `Exporter.reload`: global settings not compared | test_a_changed_target_restarts... |
| `Exporter.ready`: not sticky | test_readiness_survives_a_reload_that_adds_targets |
| `Reloader.reload`: failure metric not set | test_sighup_and_lifecycle_reload_... |
| `cli._serve`: no SIGHUP handler | test_sighup_and_lifecycle_reload_... |
| `web.reload`: no 403 without the flag | test_the_lifecycle_api_is_off_by_default |
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exporter.service import Exporter
from exporter.simulator import World
from exporter.web import create_app
from tests.support import (
    TOKEN,
    RunningSimulator,
    Samples,
    free_port,
    make_config,
    serving,
    serving_app,
    target,
)
from tests.test_cli_web import exporter_process, wait_for_port

HOUR = 3600.0  # intervals long enough that no second poll happens during a test
EXPORTER = Path(sys.executable).parent / "vias-exporter"


@pytest.fixture
def world() -> World:
    return World.generate(seed=3, project_ids=["p1", "p2", "p3"], tasks_per_project=50)


def projects(samples: Samples, name: str = "vias_up") -> set[str]:
    return {dict(labels)["project_id"] for (n, labels) in samples if n == name}


def project_series(samples: Samples, project_id: str) -> list[str]:
    return sorted({n for (n, labels) in samples if ("project_id", project_id) in labels})


async def until(check: Callable[[], Any], what: str, seconds: float = 20) -> None:
    """Wait for an async condition with a deadline (no fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def metrics(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url + "/metrics") as response:
        assert response.status == 200
        return Samples.parse(await response.text())


def config_of(url: str, *project_ids: str, **global_settings: Any) -> Any:
    targets = [target(url, p, sources=["tasks"], poll_interval_seconds=HOUR) for p in project_ids]
    return make_config(targets, **global_settings)


async def test_unchanged_targets_keep_their_pollers_removed_ones_leave_metrics(
    simulator: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    """p1 stays, p2 goes, p3 comes: p1 is not polled again (same poller, same data), p2's
    series (its job counts and its self-metrics) are gone, p3 is polled at once."""
    async with Exporter(config_of(simulator.url, "p1", "p2")) as exporter, serving(exporter) as url:
        exporter.start()
        await until(lambda: _ready(session, url), "the first polls")
        kept = next(p for p in exporter.pollers if p.project_id == "p1")
        before = await metrics(session, url)
        assert projects(before) == {"p1", "p2"}
        assert "vias_api_requests_total" in project_series(before, "p2")

        await exporter.reload(config_of(simulator.url, "p1", "p3"))
        after = await _polled(session, url, "p3")

        assert kept in exporter.pollers and kept.polls == 1
        assert projects(after) == {"p1", "p3"}
        assert project_series(after, "p2") == []
        for name in ("vias_tasks", "vias_poll_duration_seconds_count", "vias_up"):
            assert after.series(name, project_id="p1") == before.series(name, project_id="p1")
        assert after.value("vias_config_last_reload_successful") == 1


async def test_a_changed_target_restarts_and_new_globals_restart_all(
    simulator: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    """A target whose settings changed gets new pollers (its counters go on); new global
    settings shape every transport, so every target restarts."""
    async with Exporter(config_of(simulator.url, "p1", "p2")) as exporter, serving(exporter) as url:
        exporter.start()
        await until(lambda: _ready(session, url), "the first polls")
        first = {p.project_id: p for p in exporter.pollers}

        changed = config_of(simulator.url, "p1", "p2")
        changed.targets[0].sources = ("tasks", "batch_tasks")
        await exporter.reload(changed)
        await _polled(session, url, "p1", "batch_tasks")
        second = {p.project_id + p.source: p for p in exporter.pollers}
        assert second["p1tasks"] is not first["p1"]
        assert second["p2tasks"] is first["p2"]
        samples = await metrics(session, url)
        assert samples.value("vias_poll_duration_seconds_count", project_id="p1", source="tasks")

        await exporter.reload(config_of(simulator.url, "p1", "p2", max_retries=1))
        assert not set(exporter.pollers) & set(second.values())
        assert exporter.config.global_.max_retries == 1


async def test_readiness_survives_a_reload_that_adds_targets(
    simulator: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    """A replica that was ready stays in its Service while new targets are polled."""
    async with Exporter(config_of(simulator.url, "p1")) as exporter, serving(exporter) as url:
        await until(lambda: _status(session, url + "/-/ready", 503), "not ready before a poll")
        await exporter.poll_all_once()
        assert await _status(session, url + "/-/ready", 200)
        await exporter.reload(config_of(simulator.url, "p1", "p2"))  # p2 not polled: not started
        assert await _status(session, url + "/-/ready", 200)


async def test_the_lifecycle_api_is_off_by_default(simulator: RunningSimulator) -> None:
    async with (
        Exporter(config_of(simulator.url, "p1")) as exporter,
        serving_app(create_app(exporter)) as url,
        aiohttp.ClientSession() as session,
        session.post(url + "/-/reload") as response,
    ):
        assert response.status == 403
        assert "not enabled" in await response.text()


async def test_sighup_and_lifecycle_reload_through_the_console_script(
    tmp_path: Path, simulator: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    """As an SRE runs it: edit the file, then `curl -X POST /-/reload` or `kill -HUP`.
    A bad file is refused with a reason that names where it is bad, never its content;
    the running configuration stays and the failure shows in the metrics."""
    config = tmp_path / "config.yml"
    write_targets(config, simulator.url, "p1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ("--config.file", str(config), "--web.listen-address", f"127.0.0.1:{port}")
    async with exporter_process(*args, "--web.enable-lifecycle") as process:
        await wait_for_port(port, process, seconds=30)
        await until(lambda: _ready(session, url), "the first polls")
        loaded_at = (await metrics(session, url)).value(
            "vias_config_last_reload_success_timestamp_seconds"
        )

        write_targets(config, simulator.url, "p1", "p2")
        async with session.post(url + "/-/reload") as response:
            assert (response.status, await response.text()) == (200, "OK\n")
        await _polled(session, url, "p2")

        config.write_text(f"targets:\n  - auth_token: {TOKEN}\n  project_id: [", encoding="utf-8")
        async with session.post(url + "/-/reload") as response:
            body = await response.text()
        assert response.status == 500
        assert "malformed YAML at line" in body and TOKEN not in body
        samples = await metrics(session, url)
        assert samples.value("vias_config_last_reload_successful") == 0
        assert projects(samples) == {"p1", "p2"}  # the running configuration stays

        write_targets(config, simulator.url, "p2")
        assert process.pid is not None
        os.kill(process.pid, signal.SIGHUP)
        await until(lambda: _without(session, url, "p1"), "p1 dropped after SIGHUP")
        samples = await metrics(session, url)
        assert samples.value("vias_config_last_reload_successful") == 1
        reloaded_at = samples.value("vias_config_last_reload_success_timestamp_seconds")
        assert loaded_at is not None and reloaded_at is not None and reloaded_at > loaded_at
        async with session.get(url + "/-/reload") as response:
            assert response.status == 405
    assert process.stderr is not None
    logs = (await process.stderr.read()).decode()
    assert "reload failed" in logs and TOKEN not in logs


def write_targets(path: Path, url: str, *project_ids: str) -> None:
    lines = ["targets:"]
    for project_id in project_ids:
        lines.append(
            f"  - {{project_id: {project_id}, endpoint: '{url}', auth_token: {TOKEN},"
            f" sources: [tasks], poll_interval_seconds: {HOUR}}}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def _status(session: aiohttp.ClientSession, url: str, status: int) -> bool:
    async with session.get(url) as response:
        return response.status == status


async def _ready(session: aiohttp.ClientSession, url: str) -> bool:
    return await _status(session, url + "/-/ready", 200)


async def _polled(
    session: aiohttp.ClientSession, url: str, project_id: str, source: str = "tasks"
) -> Samples:
    found: list[Samples] = []

    async def polled() -> bool:
        samples = await metrics(session, url)
        found[:] = [samples]
        return samples.value("vias_up", project_id=project_id, source=source) == 1

    await until(polled, f"{project_id}/{source} polled")
    return found[0]


async def _without(session: aiohttp.ClientSession, url: str, project_id: str) -> bool:
    return project_id not in projects(await metrics(session, url))
