"""Discovery in a running exporter, end to end: a simulated account's projects are polled;
a project added in the simulator is polled after the next refresh, a disabled or removed
one leaves /metrics, all without a restart, observed on /metrics over real HTTP; a project
configured statically is polled once, as configured; shards split what they discover; a
reload that removes discovery drops the discovered projects.

| change to the code (tried, seen red) | failing test |
|---|---|
| `Exporter.start()` does not start discovery | test_projects_come_and_go_without_a_restart |
| `set_discovered` keeps the old list | test_projects_come_and_go_without_a_restart |
| discovered twin of a static project kept | test_a_static_project_is_polled_as_configured |
| readiness ignores discovery's first refresh | test_ready_waits_for_the_first_refresh |
| shards keep every discovered target | test_shards_split_the_discovered_projects |
| reload without discovery keeps its targets | test_a_reload_without_discovery_drops_its_projects |
| reload without discovery keeps its metrics | test_a_reload_without_discovery_drops_its_projects |
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from exporter.lists import REGISTRY
from exporter.service import Exporter
from exporter.settings import Config
from exporter.sharding import Sharding
from exporter.simulator import Fault, World, run_simulator
from exporter.simulator.iam import IamDirectory, IamProject
from tests.support import (
    TOKEN,
    RunningExporter,
    RunningSimulator,
    Samples,
    discovery_config,
    make_simulator,
    serving,
)


@pytest.fixture
async def account() -> AsyncIterator[RunningSimulator]:
    world = World.generate(seed=9, project_ids=["p1", "p2", "p3"], tasks_per_project=30)
    sim = make_simulator(world)
    sim.iam = IamDirectory(
        [
            IamProject("p1", "cn-north-4"),
            IamProject("p2", "cn-north-4_video"),
            IamProject("p3", "cn-east-3_ops"),  # a region not watched
        ]
    )
    async with run_simulator(sim) as url:
        yield RunningSimulator(sim, url)


def config(url: str, *, targets: list[dict[str, Any]] | None = None, **discovery: Any) -> Config:
    """Discovery refreshed and polled fast (`discovery_config`)."""
    fast = {"refresh_interval_seconds": 0.05, "poll_interval_seconds": 0.2, **discovery}
    return discovery_config(url, targets=targets, **fast)


@contextlib.asynccontextmanager
async def started(config: Config, **options: Any) -> AsyncIterator[RunningExporter]:
    async with (
        Exporter(config, **options) as exporter,
        serving(exporter) as url,
        aiohttp.ClientSession() as session,
    ):
        exporter.start()
        yield RunningExporter(exporter, url, session)


def polled(samples: Samples) -> set[str]:
    """Projects with a successful poll on /metrics."""
    return {dict(labels)["project_id"] for labels, up in samples.series("vias_up").items() if up}


def exported(samples: Samples) -> set[str]:
    """Projects named by any series."""
    return {dict(labels)["project_id"] for (_, labels) in samples if dict(labels).get("project_id")}


async def metrics_until(
    running: RunningExporter, condition: Callable[[Samples], bool], what: str
) -> Samples:
    deadline = time.monotonic() + 15
    while True:
        samples = await running.metrics()
        if condition(samples):
            return samples
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def admin(sim: RunningSimulator, method: str, project_id: str, **body: Any) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, f"{sim.url}/_sim/iam/projects/{project_id}", json=body or None
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def test_projects_come_and_go_without_a_restart(account: RunningSimulator) -> None:
    async with started(config(account.url)) as running:
        samples = await metrics_until(running, lambda s: polled(s) == {"p1", "p2"}, "p1, p2")
        assert samples.value("vias_discovery_projects") == 2
        assert samples.value("vias_discovery_last_refresh_successful") == 1
        first_pollers = {id(p) for p in running.exporter.pollers}

        await admin(account, "PUT", "p7", name="cn-north-4_new", tasks=5)
        samples = await metrics_until(running, lambda s: "p7" in polled(s), "the new project")
        assert sum(samples.series("vias_tasks", project_id="p7").values()) == 5
        assert first_pollers <= {id(p) for p in running.exporter.pollers}  # p1, p2 kept

        await admin(account, "PUT", "p1", enabled=False)
        await metrics_until(running, lambda s: "p1" not in exported(s), "p1's series gone")
        await admin(account, "DELETE", "p7")
        samples = await metrics_until(running, lambda s: "p7" not in exported(s), "p7 gone")
        assert polled(samples) == {"p2"}
        assert samples.value("vias_discovery_projects") == 1


async def test_a_failing_iam_keeps_the_projects_polled(account: RunningSimulator) -> None:
    async with started(config(account.url)) as running:
        await metrics_until(running, lambda s: polled(s) == {"p1", "p2"}, "p1, p2")
        account.sim.faults.add(Fault("server_error_json", match="/v3/projects"))
        samples = await metrics_until(
            running,
            lambda s: s.value("vias_discovery_last_refresh_successful") == 0,
            "a failed refresh",
        )
        assert polled(samples) == {"p1", "p2"}
        assert samples.value("vias_discovery_refresh_failures_total", reason="server_error")


async def test_a_static_project_is_polled_as_configured(account: RunningSimulator) -> None:
    static = {  # the same project, another spelling of the endpoint, other sources
        "project_id": "p2",
        "endpoint": account.url.replace("127.0.0.1", "localhost"),
        "auth_token": TOKEN,
        "sources": ["batch_tasks"],
        "poll_interval_seconds": 0.2,
    }
    async with started(config(account.url, targets=[static])) as running:
        await metrics_until(running, lambda s: polled(s) == {"p1", "p2"}, "p1, p2")
        targets = {t.project_id: t for t in running.exporter.targets}
        assert sorted(targets) == ["p1", "p2"]
        assert targets["p2"].auth_mode == "token" and targets["p2"].sources == ("batch_tasks",)
        assert all(r.auth == "token" for r in account.sim.requests if "/p2/" in r.path)


async def test_ready_waits_for_the_first_refresh(account: RunningSimulator) -> None:
    account.sim.faults.add(Fault("latency", match="/v3/projects", seconds=0.5, times=1))
    async with started(config(account.url)) as running:
        assert (await running.get("/-/ready")).status == 503  # nothing to poll yet, IAM slow
        deadline = time.monotonic() + 15
        while (await running.get("/-/ready")).status != 200:
            assert time.monotonic() < deadline, "never ready"
            await asyncio.sleep(0.02)
        assert polled(await running.metrics()) == {"p1", "p2"}


async def test_shards_split_the_discovered_projects(account: RunningSimulator) -> None:
    for i in range(12):
        await admin(account, "PUT", f"s{i}", name=f"cn-north-4_s{i}")
    shares: list[set[str]] = []
    for shard in range(2):
        exporter = Exporter(config(account.url), sharding=Sharding(shard, 2))
        async with exporter:
            await exporter.discover()
            shares.append({t.project_id for t in exporter.targets})
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert shares[0] | shares[1] == {"p1", "p2", *(f"s{i}" for i in range(12))}


async def test_a_reload_without_discovery_drops_its_projects(account: RunningSimulator) -> None:
    static = {"project_id": "p3", "endpoint": account.url, "auth_token": TOKEN}
    async with started(config(account.url, targets=[static])) as running:
        await metrics_until(running, lambda s: polled(s) >= {"p1", "p2"}, "p1, p2")
        plain = Config.model_validate(
            {"global": {"request_timeout_seconds": 5, "max_retries": 0}, "targets": [static]},
            context=REGISTRY,
        )
        await running.exporter.reload(plain)
        samples = await metrics_until(running, lambda s: exported(s) == {"p3"}, "only p3")
        assert not [name for name, _ in samples if name.startswith("vias_discovery_")]
        sent = len(account.sim.requests)
        await metrics_until(running, lambda s: polled(s) == {"p3"}, "p3 polled")
        iam_after = [r for r in account.sim.requests[sent:] if r.path.startswith("/v3/")]
        assert iam_after == []
