"""The API client against the simulator over real HTTP: complete listings, every auth mode,
every fault recovered or reported as a typed error."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from exporter.auth import AkSkAuth, Auth, IamPasswordAuth, TokenAuth
from exporter.client import SOURCES, ClientOptions, ViasClient
from exporter.errors import ViasError, ViasHTTPError, ViasResponseError, ViasTimeoutError
from exporter.simulator import Fault, Simulator, World, run_simulator
from exporter.telemetry import Telemetry
from tests.support import ACCESS_KEY, DOMAIN, PASSWORD, SECRET_KEY, TOKEN, USER, make_simulator

OPTIONS = ClientOptions(
    rate_limit_per_second=10_000,
    max_concurrency=8,
    backoff_initial_seconds=0.001,
    backoff_max_seconds=0.01,
    timeout_seconds=0.5,
)


@contextlib.asynccontextmanager
async def client_for(
    world: World, auth: str = "token", options: ClientOptions = OPTIONS, **sim_options: Any
) -> AsyncIterator[tuple[ViasClient, Simulator, IamPasswordAuth | None]]:
    sim = make_simulator(world, **sim_options)
    async with run_simulator(sim) as url, aiohttp.ClientSession() as session:
        telemetry = Telemetry()
        iam = None
        credentials: Auth
        if auth == "token":
            credentials = TokenAuth(SecretStr(TOKEN))
        elif auth == "aksk":
            credentials = AkSkAuth(ACCESS_KEY, SecretStr(SECRET_KEY), "p1")
        else:
            credentials = iam = IamPasswordAuth(
                session=session,
                iam_endpoint=url,
                username=USER,
                password=SecretStr(PASSWORD),
                domain_name=DOMAIN,
                project_id="p1",
                telemetry=telemetry,
            )
        client = ViasClient(
            session=session,
            base_url=url,
            project_id="p1",
            auth=credentials,
            telemetry=telemetry,
            options=options,
        )
        yield client, sim, iam


def one_project(tasks: int = 0, batch_tasks: int = 0, face_edge_tasks: int = 0) -> World:
    return World.generate(
        seed=3,
        project_ids=["p1"],
        tasks_per_project=tasks,
        batch_tasks_per_project=batch_tasks,
        face_edge_tasks_per_project=face_edge_tasks,
        scenario="demo",
    )


def calls(sim: Simulator, source: str) -> int:
    path = SOURCES[source].endpoint.format(project_id="p1")
    return sum(1 for r in sim.requests if r.path == path)


def within_budget(sim: Simulator, source: str, items: int) -> None:
    """At most the pages the data needs (plus the empty one after a full last page) and
    the look-ahead window."""
    pages = math.floor(items / SOURCES[source].page_size) + 1
    assert pages <= calls(sim, source) <= pages + OPTIONS.page_window


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 25_000])
async def test_tasks_listed_completely(size: int) -> None:
    world = one_project(tasks=size)
    async with client_for(world) as (client, sim, _):
        listed = await client.list_all("tasks")
        assert sorted(t.id for t in listed) == sorted(world.projects["p1"].tasks)
        within_budget(sim, "tasks", size)


@pytest.mark.parametrize("size", [0, 1, 49, 50, 51, 1001])
async def test_infer_tasks_listed_completely(size: int) -> None:
    world = one_project(tasks=size)
    async with client_for(world) as (client, sim, _):
        listed = await client.list_all("infer_tasks")
        truth = world.projects["p1"].tasks
        assert sorted(t.id for t in listed) == sorted(truth)
        assert {t.deployment for t in listed} <= {"cloud", "edge"}
        within_budget(sim, "infer_tasks", size)


@pytest.mark.parametrize("size", [0, 1, 199, 200, 201, 450])
async def test_batch_tasks_listed_completely_using_the_total(size: int) -> None:
    world = one_project(tasks=size * 2, batch_tasks=size)
    async with client_for(world) as (client, sim, _):
        listed = await client.list_all("batch_tasks")
        truth = world.projects["p1"].batch_tasks
        assert sorted(b.id for b in listed) == sorted(truth)
        for batch in listed:
            expected = {s.upper(): n for s, n in truth[batch.id].status_counts().items() if n}
            assert batch.state_counts == expected
        # `count` is a total here: no request beyond the last page.
        assert calls(sim, "batch_tasks") == max(1, math.ceil(size / 200))


@pytest.mark.parametrize("paging", [True, False])
@pytest.mark.parametrize("size", [0, 1, 100, 101, 250])
async def test_face_edge_with_and_without_server_paging(size: int, paging: bool) -> None:
    world = one_project(face_edge_tasks=size)
    async with client_for(world, face_edge_paging=paging) as (client, sim, _):
        listed = await client.list_all("face_edge_tasks")
        assert sorted(t.id for t in listed) == sorted(world.projects["p1"].face_edge_tasks)
        expected_calls = max(1, math.ceil(size / 100)) if paging else 1
        assert calls(sim, "face_edge_tasks") == expected_calls


async def test_jobs_shifting_between_pages_are_not_counted_twice() -> None:
    world = one_project(tasks=2500)
    project = world.projects["p1"]
    one_at_a_time = ClientOptions(page_window=1, rate_limit_per_second=10_000)
    async with client_for(world, options=one_at_a_time) as (client, _, _):
        seen: list[str | None] = []
        async for page in client.iter_pages("tasks"):
            seen.extend(t.id for t in page)
            # A new job lands first in the newest-first order: every later page shifts by
            # one, so the next page repeats the last job of this one.
            project.add_task(created_at_ms=world.now_ms + len(seen))
        assert len(seen) == len(set(seen)) == 2500


async def test_token_auth_and_rejected_token() -> None:
    async with client_for(one_project(tasks=3)) as (client, sim, _):
        assert len(await client.list_all("tasks")) == 3
        assert {r.auth for r in sim.requests} == {"token"}
        sim.token = "rotated"
        with pytest.raises(ViasHTTPError) as caught:
            await client.list_all("tasks")
        assert caught.value.status == 401 and caught.value.error_code == "APIGW.0301"
        assert caught.value.request_id


async def test_aksk_signatures_accepted_and_clock_skew_rejected() -> None:
    async with client_for(one_project(tasks=5, batch_tasks=2), auth="aksk") as (client, sim, _):
        assert len(await client.list_all("tasks")) == 5
        assert len(await client.list_all("batch_tasks")) == 2
        assert {r.auth for r in sim.requests} == {"aksk"}
        sim.clock_offset = timedelta(minutes=20)
        with pytest.raises(ViasHTTPError) as caught:
            await client.list_all("tasks")
        assert caught.value.status == 401
        assert calls(sim, "tasks") == 2  # one listing, then one refused request: no retry


async def test_iam_login_expiry_and_refresh() -> None:
    world = one_project(tasks=3)
    async with client_for(world, auth="password", token_ttl_seconds=7200) as (client, sim, iam):
        assert iam is not None
        assert len(await client.list_all("tasks")) == 3
        assert len(await client.list_all("tasks")) == 3
        assert iam.logins == 1  # cached
        sim.expire_tokens()  # revoked early: the next request gets 401, logs in again once
        assert len(await client.list_all("tasks")) == 3
        assert iam.logins == 2
        logins = [r for r in sim.requests if r.path == "/v3/auth/tokens"]
        assert [r.status for r in logins] == [201, 201]


async def test_iam_token_refreshed_ahead_of_expiry() -> None:
    world = one_project(tasks=1)
    async with client_for(world, auth="password", token_ttl_seconds=7200) as (client, _, iam):
        assert iam is not None
        await client.list_all("tasks")
        # The token lives 2 h; refresh-ahead is 1 h: an hour and a minute later, log in again.
        iam._clock = lambda: time.time() + 3660
        await client.list_all("tasks")
        assert iam.logins == 2


async def test_iam_login_with_a_wrong_password_is_a_typed_auth_error() -> None:
    world = one_project(tasks=1)
    async with client_for(world, auth="password") as (client, sim, iam):
        assert iam is not None
        iam._password = SecretStr("wrong")
        for _ in range(3):
            with pytest.raises(ViasHTTPError) as caught:
                await client.list_all("tasks")
            assert caught.value.reason == "auth"
        # The cool-down keeps a broken password from locking the account.
        assert sum(1 for r in sim.requests if r.path == "/v3/auth/tokens") == 1


async def test_job_detail() -> None:
    world = one_project(tasks=2)
    task = next(iter(world.projects["p1"].tasks.values()))
    async with client_for(world) as (client, _, _):
        detail = await client.get_task(task.id)
        assert (detail.id, detail.state, detail.vendor) == (task.id, task.state, task.vendor)
        with pytest.raises(ViasHTTPError) as caught:
            await client.get_task("no-such-job")
        assert caught.value.status == 404


RECOVERABLE = [
    Fault(kind="server_error_html", times=2),
    Fault(kind="server_error_json", times=1),
    Fault(kind="throttle", times=1, retry_after=0.01),
    Fault(kind="throttle", times=1),
    Fault(kind="cut_json", times=1),
    Fault(kind="latency", seconds=1, times=1),
    Fault(kind="slow_body", seconds=1, times=1),
]


@pytest.mark.parametrize("fault", RECOVERABLE, ids=lambda f: f"{f.kind}-{f.times}")
async def test_transient_faults_are_retried_and_recovered(fault: Fault) -> None:
    world = one_project(tasks=1500)
    async with client_for(world) as (client, sim, _):
        sim.faults.add(fault)
        assert len(await client.list_all("tasks")) == 1500


PERSISTENT = [
    (Fault(kind="server_error_html"), ViasHTTPError, "server_error"),
    (Fault(kind="throttle", retry_after=0), ViasHTTPError, "throttled"),
    (Fault(kind="cut_json"), ViasResponseError, "bad_response"),
    (Fault(kind="wrong_shape"), ViasResponseError, "bad_response"),
    (Fault(kind="unauthorized"), ViasHTTPError, "auth"),
    (Fault(kind="latency", seconds=1), ViasTimeoutError, "timeout"),
]


@pytest.mark.parametrize(("fault", "error_type", "reason"), PERSISTENT, ids=lambda v: str(v))
async def test_persistent_faults_are_typed_errors(
    fault: Fault, error_type: type[ViasError], reason: str
) -> None:
    async with client_for(one_project(tasks=10)) as (client, sim, _):
        sim.faults.add(fault)
        with pytest.raises(error_type) as caught:
            await client.list_all("tasks")
        assert caught.value.reason == reason
        expected_calls = 1 if reason in ("auth", "bad_response") and fault.kind != "cut_json" else 4
        assert calls(sim, "tasks") == expected_calls


async def test_repeated_page_trap_ends() -> None:
    async with client_for(one_project(tasks=5000)) as (client, sim, _):
        sim.faults.add(Fault(kind="repeat_page"))
        listed = await client.list_all("tasks")
        assert len(listed) == 1000
        assert calls(sim, "tasks") <= 1 + OPTIONS.page_window


async def test_short_lived_iam_token_is_used_for_half_its_life() -> None:
    world = one_project(tasks=1)
    async with client_for(world, auth="password", token_ttl_seconds=600) as (client, _, iam):
        assert iam is not None
        started = time.time()
        await client.list_all("tasks")
        iam._clock = lambda: started + 200  # refresh-ahead (1 h) exceeds the lifetime
        await client.list_all("tasks")
        assert iam.logins == 1
        iam._clock = lambda: started + 310
        await client.list_all("tasks")
        assert iam.logins == 2
