"""Project discovery on its own, over real HTTP against the simulator's IAM: which projects
become targets (enabled, not a domain, watched region, include/exclude), the targets'
shape for AK/SK and password login, paging of `/v3/projects`, failures that keep the
previous targets, and the refresh loop.

| change to the code (tried, seen red) | failing test |
|---|---|
| disabled projects kept | test_which_projects_become_targets |
| `is_domain` entries kept | test_which_projects_become_targets |
| region = the whole name (sub-projects lost) | test_which_projects_become_targets |
| include/exclude with `search`, not `fullmatch` | test_include_and_exclude_match_whole_names |
| password targets without its iam_endpoint | test_password_login_lists_the_users_projects |
| paging stops after the first page | test_v3_projects_is_read_page_by_page |
| a repeated page accepted as the end of the listing | test_a_listing_that_does_not_add_up_fails |
| a failed refresh returns an empty list | test_a_failed_refresh_keeps_the_previous_targets |
| failures not counted | test_a_failed_refresh_keeps_the_previous_targets |
| `run` calls on_targets after every refresh | test_the_loop_hands_over_changes_only |
| `run` gives up after an exception in on_targets | test_the_loop_survives_a_failing_callback |
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import generate_latest

from exporter.discovery import Discovery
from exporter.lists import REGISTRY
from exporter.service import poll_interval
from exporter.settings import DiscoveryConfig, GlobalConfig, TargetConfig
from exporter.simulator import Fault, World, run_simulator
from exporter.simulator.iam import DOMAIN_ID, IamDirectory, IamProject
from exporter.telemetry import Telemetry
from tests.support import (
    ACCESS_KEY,
    DOMAIN,
    PASSWORD,
    SECRET_KEY,
    SECRETS,
    USER,
    RunningSimulator,
    Samples,
    make_simulator,
    telemetry_registry,
)

ACCOUNT = [
    IamProject("p1", "cn-north-4"),
    IamProject("p2", "cn-north-4_video", parent_id="p1"),
    IamProject("p3", "cn-east-3_ops"),
    IamProject("p4", "cn-north-4_retired", enabled=False),
    IamProject("p5", "ap-southeast-1"),
    IamProject("mos", "MOS"),
    IamProject(DOMAIN_ID, "cn-north-4_domain", is_domain=True),
]
SETTINGS = GlobalConfig(request_timeout_seconds=5, max_retries=0)


@pytest.fixture
async def account() -> AsyncIterator[RunningSimulator]:
    world = World.generate(seed=5, project_ids=["p1", "p2", "p3", "p5"], tasks_per_project=20)
    sim = make_simulator(world)
    sim.iam = IamDirectory([IamProject(**vars_of(p)) for p in ACCOUNT])
    async with run_simulator(sim) as url:
        yield RunningSimulator(sim, url)


def vars_of(project: IamProject) -> dict[str, Any]:
    return {name: getattr(project, name) for name in IamProject.__slots__}


def discovery_config(url: str, auth: str = "aksk", **fields: Any) -> DiscoveryConfig:
    credentials = {
        "aksk": {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY},
        "password": {"username": USER, "password": PASSWORD, "domain_name": DOMAIN},
    }[auth]
    settings = {"iam_endpoint": url, "endpoint": url, "regions": ["cn-north-4"], **fields}
    return DiscoveryConfig.model_validate({**credentials, **settings}, context=REGISTRY)


async def discover(config: DiscoveryConfig, **options: Any) -> list[TargetConfig]:
    async with Discovery(config, SETTINGS, Telemetry(), **options) as discovery:
        return await discovery.refresh()


def ids(targets: list[TargetConfig]) -> list[str]:
    return [target.project_id for target in targets]


def discovery_samples(telemetry: Telemetry) -> Samples:
    return Samples.parse(generate_latest(telemetry_registry(telemetry)).decode())


async def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_which_projects_become_targets(account: RunningSimulator) -> None:
    config = discovery_config(
        account.url,
        regions=["cn-north-4", "cn-east-3"],
        sources=["tasks", "infer_tasks"],
        poll_interval_seconds=30,
        poll_intervals={"infer_tasks": 120},
    )
    targets = await discover(config)
    assert ids(targets) == ["p1", "p2", "p3"]  # not disabled p4, ap-southeast-1, MOS, domain
    assert [t.region for t in targets] == ["cn-north-4", "cn-north-4", "cn-east-3"]
    first = targets[0]
    assert first.auth_mode == "aksk" and first.access_key == ACCESS_KEY
    assert first.api_url == account.url
    assert first.sources == ("tasks", "infer_tasks")
    assert poll_interval(first, "tasks") == 30 and poll_interval(first, "infer_tasks") == 120


async def test_the_default_endpoint_and_a_region_template(account: RunningSimulator) -> None:
    plain = discovery_config(account.url, endpoint=None)
    assert {t.api_url for t in await discover(plain)} == {
        "https://vias.cn-north-4.myhuaweicloud.com"
    }
    templated = discovery_config(
        account.url, endpoint="https://vias.{region}.corp.example/", regions=["cn-east-3"]
    )
    assert [t.api_url for t in await discover(templated)] == ["https://vias.cn-east-3.corp.example"]


async def test_include_and_exclude_match_whole_names(account: RunningSimulator) -> None:
    url = account.url
    assert ids(await discover(discovery_config(url, include=["cn-north-4_.*"]))) == ["p2"]
    assert ids(await discover(discovery_config(url, include=["video"]))) == []  # not a search
    assert ids(await discover(discovery_config(url, include=[".*video", "cn-north-4"]))) == [
        "p1",
        "p2",
    ]
    assert ids(await discover(discovery_config(url, exclude=[".*_video"]))) == ["p1"]


async def test_password_login_lists_the_users_projects(account: RunningSimulator) -> None:
    config = discovery_config(account.url, auth="password")
    targets = await discover(config)
    assert ids(targets) == ["p1", "p2"]
    assert {(t.auth_mode, t.iam_url, t.domain_name, t.username) for t in targets} == {
        ("password", account.url, DOMAIN, USER)
    }
    paths = [(r.method, r.path) for r in account.sim.requests]
    assert paths == [("POST", "/v3/auth/tokens"), ("GET", "/v3/auth/projects")]


async def test_v3_projects_is_read_page_by_page(account: RunningSimulator) -> None:
    for i in range(10):
        account.sim.iam.projects[f"n{i}"] = IamProject(f"n{i}", f"cn-north-4_n{i}")
    config = discovery_config(account.url, domain_id=DOMAIN_ID)
    targets = await discover(config, per_page=4)  # 17 projects: pages of 4, 4, 4, 4, 1
    assert ids(targets) == ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "p1", "p2"]
    queries = [r.query for r in account.sim.requests]
    assert queries == [
        {"domain_id": DOMAIN_ID, "page": str(page), "per_page": "4"} for page in range(1, 6)
    ]


async def test_a_listing_that_does_not_add_up_fails(account: RunningSimulator) -> None:
    account.sim.faults.add(Fault("repeat_page", match="/v3/projects"))
    telemetry = Telemetry()
    settings = SETTINGS.model_copy(update={"max_pages": 50})
    async with Discovery(discovery_config(account.url), settings, telemetry, per_page=2) as d:
        assert await d.refresh_or_keep() is None
    assert len(account.sim.requests) == 2  # page 2 repeated page 1: stopped there
    samples = discovery_samples(telemetry)
    assert samples.value("vias_discovery_refresh_failures_total", reason="bad_response") == 1


async def test_a_failed_refresh_keeps_the_previous_targets(account: RunningSimulator) -> None:
    telemetry = Telemetry()
    clock = iter([1000.0, 2000.0]).__next__
    async with Discovery(discovery_config(account.url), SETTINGS, telemetry, clock=clock) as d:
        first = await d.refresh_or_keep()
        assert first is not None and ids(first) == ["p1", "p2"]
        account.sim.faults.add(Fault("server_error_json", match="/v3/projects", times=1))
        assert await d.refresh_or_keep() is None
        assert d.targets == first
        samples = discovery_samples(telemetry)
        assert samples.value("vias_discovery_last_refresh_successful") == 0
        assert samples.value("vias_discovery_last_refresh_success_timestamp_seconds") == 1000
        assert samples.value("vias_discovery_projects") == 2
        assert samples.value("vias_discovery_refresh_failures_total", reason="server_error") == 1

        account.sim.faults.add(Fault("unauthorized", match="/v3/projects", times=1))
        assert await d.refresh_or_keep() is None  # refused: no retry, a pause begins
        sent = len(account.sim.requests)
        assert await d.refresh_or_keep() is None  # within the pause: nothing sent
        assert len(account.sim.requests) == sent
        samples = discovery_samples(telemetry)
        for reason in ("auth", "auth_cooldown"):
            assert samples.value("vias_discovery_refresh_failures_total", reason=reason) == 1
    text = "\n".join(str(v) for v in samples) + repr(samples)
    assert not any(secret in text for secret in SECRETS)


async def test_discovery_metrics_exist_only_with_discovery() -> None:
    text = generate_latest(telemetry_registry(Telemetry())).decode()
    assert "vias_discovery_" not in text


async def test_the_loop_hands_over_changes_only(account: RunningSimulator) -> None:
    handed: list[list[str]] = []

    async def on_targets(targets: list[TargetConfig]) -> None:
        handed.append(ids(targets))

    config = discovery_config(account.url, refresh_interval_seconds=0.02)
    async with Discovery(config, SETTINGS, Telemetry()) as discovery:
        task = asyncio.create_task(discovery.run(on_targets))
        try:
            await wait_for(lambda: handed == [["p1", "p2"]], "the first targets")
            assert discovery.settled.is_set()
            requests = len(account.sim.requests)
            await wait_for(lambda: len(account.sim.requests) >= requests + 3, "3 more refreshes")
            assert handed == [["p1", "p2"]]  # unchanged: not handed over again
            account.sim.iam.projects["p9"] = IamProject("p9", "cn-north-4_new")
            await wait_for(lambda: len(handed) == 2, "the new project")
            assert handed[1] == ["p1", "p2", "p9"]
            account.sim.iam.projects["p1"].enabled = False
            await wait_for(lambda: len(handed) == 3, "the disabled project gone")
            assert handed[2] == ["p2", "p9"]
        finally:
            task.cancel()


async def test_the_loop_survives_a_failing_callback(account: RunningSimulator) -> None:
    calls: list[list[str]] = []

    async def on_targets(targets: list[TargetConfig]) -> None:
        calls.append(ids(targets))
        if len(calls) == 1:
            raise RuntimeError("applying failed")

    config = discovery_config(account.url, refresh_interval_seconds=0.02)
    async with Discovery(config, SETTINGS, Telemetry()) as discovery:
        task = asyncio.create_task(discovery.run(on_targets))
        try:  # not applied the first time: handed over again at the next refresh
            await wait_for(lambda: len(calls) == 2, "a second hand-over")
            assert not task.done()
        finally:
            task.cancel()
