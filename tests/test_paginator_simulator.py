"""The transport and the paginator against the simulator over real HTTP: complete listings,
every auth mode, the job detail and the error codes it fills in, every fault recovered or
reported as a typed error.

The simulator serves the job detail for the jobs of the task lists and for face-edge jobs;
a job deleted before its detail call gets a 404, which `exporter.details` must take as "no
code" without failing the poll.

The timeout cases used to check only the item count, which a listing that never timed out
passes too. Each change below was made (in memory, by a pytest plugin) and the test seen
failing:

| change (made in memory)              | failing test                                   |
|--------------------------------------|------------------------------------------------|
| no retries (`stop_after_attempt(1)`) | test_timeouts_are_retried_and_recovered (both) |
|                                      | and the other transient/persistent fault tests |
| a cut body retried in a budget of    | test_one_retry_budget_covers_cut_bodies        |
| its own (parse outside the retry)    | [5xx-then-cut]                                 |
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from exporter.auth import AkSkAuth, Auth, CoolDown, IamPasswordAuth, TokenAuth
from exporter.details import with_details
from exporter.errors import (
    ViasAuthCoolDown,
    ViasError,
    ViasHTTPError,
    ViasResponseError,
    ViasTimeoutError,
)
from exporter.lists import REGISTRY
from exporter.lists.base import PollContext, ViasList
from exporter.lists.jobs import (
    DETAIL_ENDPOINT,
    ERROR_CODE_DETAILS,
    JobAggregator,
    JobData,
    Task,
)
from exporter.lists.tasks import TASKS
from exporter.models import parse_model
from exporter.paginator import pages
from exporter.settings import GlobalConfig
from exporter.simulator import Fault, FaultKind, Simulator, World, run_simulator
from exporter.telemetry import Telemetry
from exporter.transport import Transport
from tests.support import (
    ACCESS_KEY,
    DOMAIN,
    PASSWORD,
    SECRET_KEY,
    TOKEN,
    USER,
    make_simulator,
    telemetry_registry,
)

SETTINGS = GlobalConfig(
    rate_limit_per_second=10_000,
    max_concurrency=8,
    backoff_initial_seconds=0.001,
    backoff_max_seconds=0.01,
    request_timeout_seconds=0.5,
)
PARSE_DETAIL = partial(parse_model, Task, endpoint=DETAIL_ENDPOINT)


@dataclass
class Simulated:
    transport: Transport
    sim: Simulator
    telemetry: Telemetry
    iam: IamPasswordAuth | None

    async def list_all(self, source: str) -> list[Any]:
        return [item async for items in pages(self.transport, REGISTRY[source]) for item in items]

    async def detail(self, task_id: str) -> Task:
        return await self.transport.get(DETAIL_ENDPOINT, {}, PARSE_DETAIL, task_id=task_id)

    async def job_data(self, source: str, previous: JobData | None = None) -> JobData:
        """One poll's aggregate of a job list, before its details."""
        vias_list: ViasList[Any, JobData] = REGISTRY[source]
        aggregator = vias_list.aggregator(PollContext(previous, 200, time.time()))
        async for items in pages(self.transport, vias_list):
            aggregator.add(items)
        return await aggregator.finish()

    def calls(self, source: str) -> int:
        return self.calls_to(REGISTRY[source].endpoint.format(project_id="p1"))

    def pages_asked(self, source: str) -> list[int]:
        """The page numbers asked of a list, each once however often it was retried."""
        vias_list = REGISTRY[source]
        path, param = vias_list.endpoint.format(project_id="p1"), vias_list.paging.page_param
        return sorted({int(r.query[param]) for r in self.sim.requests if r.path == path})

    def calls_to(self, path: str) -> int:
        return sum(1 for r in self.sim.requests if r.path == path)

    def detail_calls(self) -> int:
        return sum(1 for r in self.sim.requests if r.path.startswith("/v1/p1/infer/tasks/"))

    def counted(self, metric: str, **labels: str) -> float:
        return (
            telemetry_registry(self.telemetry).get_sample_value(
                metric, {"project_id": "p1", **labels}
            )
            or 0
        )


@contextlib.asynccontextmanager
async def simulated(
    world: World, auth: str = "token", settings: GlobalConfig = SETTINGS, **sim_options: Any
) -> AsyncIterator[Simulated]:
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
                cool_down=CoolDown(30, 600),
            )
        transport = Transport(
            session=session,
            base_url=url,
            project_id="p1",
            auth=credentials,
            telemetry=telemetry,
            settings=settings,
        )
        yield Simulated(transport, sim, telemetry, iam)


def one_project(tasks: int = 0, batch_tasks: int = 0, face_edge_tasks: int = 0) -> World:
    return World.generate(
        seed=3,
        project_ids=["p1"],
        tasks_per_project=tasks,
        batch_tasks_per_project=batch_tasks,
        face_edge_tasks_per_project=face_edge_tasks,
        scenario="demo",
    )


def within_budget(s: Simulated, source: str, items: int) -> None:
    """At most the pages the data needs (plus the empty one after a full last page) and
    the look-ahead window."""
    pages_needed = math.floor(items / REGISTRY[source].paging.page_size) + 1
    assert pages_needed <= s.calls(source) <= pages_needed + SETTINGS.page_window


# --- complete listings ---


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 25_000])
async def test_tasks_listed_completely(size: int) -> None:
    world = one_project(tasks=size)
    async with simulated(world) as s:
        listed = await s.list_all("tasks")
        assert sorted(t.id for t in listed) == sorted(world.projects["p1"].tasks)
        within_budget(s, "tasks", size)


@pytest.mark.parametrize("size", [0, 1, 49, 50, 51, 1001])
async def test_infer_tasks_listed_completely(size: int) -> None:
    world = one_project(tasks=size)
    async with simulated(world) as s:
        listed = await s.list_all("infer_tasks")
        assert sorted(t.id for t in listed) == sorted(world.projects["p1"].tasks)
        assert {t.deployment for t in listed} <= {"cloud", "edge"}
        within_budget(s, "infer_tasks", size)


@pytest.mark.parametrize("size", [0, 1, 199, 200, 201, 450])
async def test_batch_tasks_listed_completely_using_the_total(size: int) -> None:
    world = one_project(tasks=size * 2, batch_tasks=size)
    async with simulated(world) as s:
        listed = await s.list_all("batch_tasks")
        truth = world.projects["p1"].batch_tasks
        assert sorted(b.id for b in listed) == sorted(truth)
        for batch in listed:
            expected = {s.upper(): n for s, n in truth[batch.id].status_counts().items() if n}
            assert batch.state_counts == expected
        # `count` is a total here: no request beyond the last page (a retry, after a
        # timeout on a busy machine, asks the same page again).
        assert s.pages_asked("batch_tasks") == list(range(1, max(1, math.ceil(size / 200)) + 1))


@pytest.mark.parametrize("paging", [True, False])
@pytest.mark.parametrize("size", [0, 1, 100, 101, 250])
async def test_face_edge_with_and_without_server_paging(size: int, paging: bool) -> None:
    world = one_project(face_edge_tasks=size)
    async with simulated(world, face_edge_paging=paging) as s:
        listed = await s.list_all("face_edge_tasks")
        assert sorted(t.id for t in listed) == sorted(world.projects["p1"].face_edge_tasks)
        expected_calls = max(1, math.ceil(size / 100)) if paging else 1
        assert s.calls("face_edge_tasks") == expected_calls


async def test_jobs_shifting_between_pages_are_passed_on_and_counted_once() -> None:
    world = one_project(tasks=2500)
    project = world.projects["p1"]
    original = set(project.tasks)
    one_at_a_time = SETTINGS.model_copy(update={"page_window": 1})
    async with simulated(world, settings=one_at_a_time) as s:
        seen: list[str | None] = []
        aggregator = JobAggregator(PollContext(None, 200, time.time()))
        async for page in pages(s.transport, TASKS):
            seen.extend(t.id for t in page)
            aggregator.add(page)
            # A new job lands first in the newest-first order: every later page shifts by
            # one, so the next page repeats the last job of this one.
            project.add_task(created_at_ms=world.now_ms + len(seen))
        # The paginator passes the repeats on (2 of them, pages 2 and 3); the aggregator
        # counts each job once.
        assert len(seen) == 2502 and set(seen) == original
        assert (await aggregator.finish()).item_count == 2500
        assert s.counted("vias_pagination_stops_total", source="tasks", reason="repeated_page") == 0


async def test_repeated_page_trap_ends() -> None:
    async with simulated(one_project(tasks=5000)) as s:
        s.sim.faults.add(Fault(kind="repeat_page"))
        listed = await s.list_all("tasks")
        assert len(listed) == 1000
        assert s.calls("tasks") <= 1 + SETTINGS.page_window
        assert s.counted("vias_pagination_stops_total", source="tasks", reason="repeated_page") == 1


# --- auth ---


async def test_token_auth_and_rejected_token() -> None:
    async with simulated(one_project(tasks=3)) as s:
        assert len(await s.list_all("tasks")) == 3
        assert {r.auth for r in s.sim.requests} == {"token"}
        s.sim.token = "rotated"
        with pytest.raises(ViasHTTPError) as caught:
            await s.list_all("tasks")
        assert caught.value.status == 401 and caught.value.error_code == "APIGW.0301"
        assert caught.value.request_id


async def test_aksk_signatures_accepted_and_clock_skew_rejected() -> None:
    async with simulated(one_project(tasks=5, batch_tasks=2), auth="aksk") as s:
        assert len(await s.list_all("tasks")) == 5
        assert len(await s.list_all("batch_tasks")) == 2
        assert {r.auth for r in s.sim.requests} == {"aksk"}
        s.sim.clock_offset = timedelta(minutes=20)
        with pytest.raises(ViasHTTPError) as caught:
            await s.list_all("tasks")
        assert caught.value.status == 401
        assert s.calls("tasks") == 2  # one listing, then one refused request: no retry


async def test_iam_login_expiry_and_refresh() -> None:
    world = one_project(tasks=3)
    async with simulated(world, auth="password", token_ttl_seconds=7200) as s:
        assert s.iam is not None
        assert len(await s.list_all("tasks")) == 3
        assert len(await s.list_all("tasks")) == 3
        assert s.iam.logins == 1  # cached
        s.sim.expire_tokens()  # revoked early: the next request gets 401, logs in again once
        assert len(await s.list_all("tasks")) == 3
        assert s.iam.logins == 2
        logins = [r for r in s.sim.requests if r.path == "/v3/auth/tokens"]
        assert [r.status for r in logins] == [201, 201]


async def test_iam_token_refreshed_ahead_of_expiry() -> None:
    world = one_project(tasks=1)
    async with simulated(world, auth="password", token_ttl_seconds=7200) as s:
        assert s.iam is not None
        await s.list_all("tasks")
        # The token lives 2 h; refresh-ahead is 1 h: an hour and a minute later, log in again.
        s.iam._clock = lambda: time.time() + 3660
        await s.list_all("tasks")
        assert s.iam.logins == 2


async def test_iam_login_with_a_wrong_password_is_a_typed_auth_error() -> None:
    async with simulated(one_project(tasks=1), auth="password") as s:
        assert s.iam is not None
        s.iam._password = SecretStr("wrong")
        with pytest.raises(ViasHTTPError) as caught:
            await s.list_all("tasks")
        assert caught.value.reason == "auth"
        for _ in range(2):
            with pytest.raises(ViasAuthCoolDown) as skipped:
                await s.list_all("tasks")
            assert str(skipped.value).startswith("skipped: credentials refused (401)")
        # The cool-down keeps a broken password from locking the account.
        assert s.calls_to("/v3/auth/tokens") == 1


async def test_short_lived_iam_token_is_used_for_half_its_life() -> None:
    world = one_project(tasks=1)
    async with simulated(world, auth="password", token_ttl_seconds=600) as s:
        assert s.iam is not None
        started = time.time()
        await s.list_all("tasks")
        s.iam._clock = lambda: started + 200  # refresh-ahead (1 h) exceeds the lifetime
        await s.list_all("tasks")
        assert s.iam.logins == 1
        s.iam._clock = lambda: started + 310
        await s.list_all("tasks")
        assert s.iam.logins == 2


# --- the job detail, and the error codes it fills in ---


async def test_job_detail() -> None:
    world = one_project(tasks=200)
    tasks = world.projects["p1"].tasks.values()
    healthy = next(t for t in tasks if t.error_code is None)
    failed = next(t for t in tasks if t.error_code is not None)
    async with simulated(world) as s:
        for task in (healthy, failed):
            detail = await s.detail(task.id)
            assert (detail.id, detail.state, detail.vendor, detail.algorithm) == (
                task.id,
                task.state,
                task.vendor,
                task.algorithm,
            )
            assert detail.deployment == task.deployment
            assert detail.error_code == (task.error_code or "")
        with pytest.raises(ViasHTTPError) as caught:
            await s.detail("no-such-job")
        error = caught.value
        assert (error.status, error.error_code, error.retryable) == (404, "VIAS.00010002", False)
        assert s.calls_to("/v1/p1/infer/tasks/no-such-job") == 1


async def test_error_codes_of_infer_problem_jobs_filled_within_the_budget() -> None:
    world = one_project(tasks=300)
    truth = {t.id: t.error_code or "" for t in world.projects["p1"].tasks.values()}
    async with simulated(world) as s:
        data = await s.job_data("infer_tasks")
        problems = {p.task_id for p in data.problem_tasks}
        assert len(problems) >= 4 and {p.error_code for p in data.problem_tasks} == {""}

        first = await with_details(s.transport, ERROR_CODE_DETAILS, data, None, 2)
        assert s.detail_calls() == 2
        assert len(first.detail_codes) == 2
        assert {task_id: code for (task_id, _), code in first.detail_codes.items()} == {
            task_id: truth[task_id] for task_id, _ in first.detail_codes
        }
        assert {p.task_id: p.error_code for p in first.problem_tasks if p.error_code} == {
            task_id: code for (task_id, _), code in first.detail_codes.items() if code
        }

        # The next poll asks only for the jobs it has no code of yet.
        second = await with_details(
            s.transport, ERROR_CODE_DETAILS, await s.job_data("infer_tasks"), first, 100
        )
        assert s.detail_calls() == len(problems)
        assert {p.task_id: p.error_code for p in second.problem_tasks} == {
            task_id: truth[task_id] for task_id in problems
        }
        assert any(second.detail_codes.values())
        third = await with_details(
            s.transport, ERROR_CODE_DETAILS, await s.job_data("infer_tasks"), second, 100
        )
        assert s.detail_calls() == len(problems)
        assert third.problem_tasks == second.problem_tasks


async def test_face_edge_codes_from_details_and_a_deleted_job_asked_once() -> None:
    world = one_project(face_edge_tasks=5)
    project = world.projects["p1"]
    for _ in range(3):
        project.add_face_edge_task(state="ABNORMAL")
    async with simulated(world) as s:
        data = await s.job_data("face_edge_tasks")
        abnormal = [p.task_id for p in data.problem_tasks if p.state == "ABNORMAL"]
        assert len(abnormal) >= 3
        gone = abnormal[0]
        del project.face_edge_tasks[gone]  # deleted between the listing and its detail
        first = await with_details(s.transport, ERROR_CODE_DETAILS, data, None, 100)
        # One detail call per problem job, a 404 for the deleted one, never retried.
        assert s.detail_calls() == len(data.problem_tasks)
        codes = {p.task_id: p.error_code for p in first.problem_tasks}
        assert codes[gone] == ""
        assert {codes[task_id] for task_id in abnormal[1:]} == {"VIAS.10010002"}
        await with_details(s.transport, ERROR_CODE_DETAILS, data, first, 100)
        assert s.detail_calls() == len(data.problem_tasks)


async def test_a_detail_that_may_come_back_is_asked_for_again_next_poll() -> None:
    world = one_project(tasks=300)
    async with simulated(world, settings=SETTINGS.model_copy(update={"max_retries": 0})) as s:
        s.sim.faults.add(Fault(kind="server_error_json", match="/infer/tasks/"))
        data = await s.job_data("infer_tasks")
        first = await with_details(s.transport, ERROR_CODE_DETAILS, data, None, 2)
        assert s.detail_calls() == 2 and first.detail_codes == {}
        assert first.problem_tasks == data.problem_tasks  # the poll goes on without codes
        s.sim.faults.clear()
        second = await with_details(s.transport, ERROR_CODE_DETAILS, data, first, 2)
        assert s.detail_calls() == 4 and len(second.detail_codes) == 2


# --- faults ---

RECOVERABLE = [
    (Fault(kind="server_error_html", times=2), "502"),
    (Fault(kind="server_error_json", times=1), "500"),
    (Fault(kind="throttle", times=1, retry_after=0.01), "429"),
    (Fault(kind="throttle", times=1), "429"),
    (Fault(kind="cut_json", times=1), None),
]


@pytest.mark.parametrize(
    ("fault", "code"), RECOVERABLE, ids=[f"{f.kind}-{f.times}" for f, _ in RECOVERABLE]
)
async def test_transient_faults_are_retried_and_recovered(fault: Fault, code: str | None) -> None:
    times = fault.times or 0
    async with simulated(one_project(tasks=1500)) as s:
        s.sim.faults.add(fault)
        assert len(await s.list_all("tasks")) == 1500
        first_page = [r for r in s.sim.requests if r.query.get("page") == "1"]
        assert [r.fault for r in first_page] == [fault.kind] * times + [None]
        if code is not None:
            assert s.counted("vias_api_requests_total", endpoint=TASKS.endpoint, code=code) == times


@pytest.mark.parametrize("kind", ["latency", "slow_body"])
async def test_timeouts_are_retried_and_recovered(kind: FaultKind) -> None:
    async with simulated(one_project(tasks=1500)) as s:
        s.sim.faults.add(Fault(kind=kind, seconds=1, times=1))  # the timeout is 0.5 s
        assert len(await s.list_all("tasks")) == 1500
        assert s.counted("vias_api_requests_total", endpoint=TASKS.endpoint, code="timeout") == 1
        # Page 1 twice: the request given up on (its handler cancelled before it could
        # answer in full: no status recorded), then the retry.
        first_page = [r.status for r in s.sim.requests if r.query.get("page") == "1"]
        assert first_page == [0, 200]


@pytest.mark.parametrize(
    ("faults", "succeeds"),
    [(["cut_json"], True), (["server_error_json", "cut_json"], False)],
    ids=["cut-then-good", "5xx-then-cut"],
)
async def test_one_retry_budget_covers_cut_bodies(faults: list[Any], succeeds: bool) -> None:
    one_retry = SETTINGS.model_copy(update={"max_retries": 1})
    async with simulated(one_project(tasks=10), settings=one_retry) as s:
        s.sim.faults.add(*(Fault(kind=kind, times=1) for kind in faults))
        if succeeds:
            assert len(await s.list_all("tasks")) == 10
        else:
            with pytest.raises(ViasResponseError):
                await s.list_all("tasks")
        assert s.calls("tasks") == 2


PERSISTENT = [
    (Fault(kind="server_error_html"), ViasHTTPError, "server_error"),
    (Fault(kind="throttle", retry_after=0), ViasHTTPError, "throttled"),
    (Fault(kind="cut_json"), ViasResponseError, "bad_response"),
    (Fault(kind="wrong_shape"), ViasResponseError, "bad_response"),
    (Fault(kind="unauthorized"), ViasHTTPError, "auth"),
    (Fault(kind="latency", seconds=1), ViasTimeoutError, "timeout"),
]


@pytest.mark.parametrize(
    ("fault", "error_type", "reason"), PERSISTENT, ids=[f.kind for f, _, _ in PERSISTENT]
)
async def test_persistent_faults_are_typed_errors(
    fault: Fault, error_type: type[ViasError], reason: str
) -> None:
    async with simulated(one_project(tasks=10)) as s:
        s.sim.faults.add(fault)
        with pytest.raises(error_type) as caught:
            await s.list_all("tasks")
        assert caught.value.reason == reason
        expected_calls = 1 if fault.kind in ("wrong_shape", "unauthorized") else 4
        assert s.calls("tasks") == expected_calls
        assert caught.value.retryable == (expected_calls > 1)
