"""A hostile or broken API, over real sockets: small aiohttp apps on loopback serve what no
sane VIAS would (a never-ending body, a page bigger than the bound, impossible totals,
ids that are paths, label values of 100 kB), next to the simulator serving a healthy
project. Each case checks what users rely on: the process survives, the bad answer is
counted and logged, and the other project keeps its data. docs/reliability.md lists them.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from structlog.typing import EventDict

from exporter.auth import TokenAuth
from exporter.errors import ViasResponseError
from exporter.service import Exporter
from exporter.simulator.iam import IamDirectory, IamProject
from exporter.telemetry import Telemetry
from exporter.transport import Transport
from tests.exposition_reference import render_whole
from tests.reliability.reliability_support import (
    FakeClock,
    events,
    fast_config,
    poll_errors,
    running_exporter,
)
from tests.support import (
    RunningSimulator,
    Samples,
    discovery_config,
    job_items,
    make_config,
    serving,
    serving_app,
    target,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MIB = 1 << 20


Start = Callable[[dict[str, Handler]], Awaitable[str]]


@pytest.fixture
async def hostile() -> AsyncIterator[Start]:
    """Start an aiohttp app with these routes (path -> GET handler) on loopback; its URL."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(routes: dict[str, Handler]) -> str:
            app = web.Application()
            for path, handler in routes.items():
                app.router.add_get(path, handler)
            return await stack.enter_async_context(serving_app(app))

        yield start


def tasks_page(count: int) -> bytes:
    return json.dumps({"count": count, "tasks": job_items(0, count)}).encode()


def healthy_and_bad(url: str, bad_url: str, **fields: Any) -> list[dict[str, Any]]:
    """p1 at the simulator, p2 at the hostile server; both poll tasks."""
    return [
        target(url, "p1", sources=["tasks"]),
        target(bad_url, "p2", sources=["tasks"], **fields),
    ]


# --- 1. answer bodies are bounded ---------------------------------------------------------


async def never_ending(request: web.Request) -> web.StreamResponse:
    """A 200 whose JSON body never ends: `{"tasks": [` then items forever."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"count": 1, "tasks": [')
    item = json.dumps(job_items(0, 1)[0]).encode() + b","
    chunk = item * (64 * 1024 // len(item))
    try:
        while True:  # until the client gives up and the write fails
            await response.write(chunk)
    except ConnectionError:
        return response


async def announced_huge(request: web.Request) -> web.Response:
    """A page of 2 MiB with its Content-Length: over a 1 MiB bound before a byte is read."""
    return web.Response(body=b" " * (2 * MIB - 2) + b"{}", content_type="application/json")


@pytest.mark.parametrize("handler", [never_ending, announced_huge], ids=["endless", "announced"])
async def test_an_answer_over_max_response_bytes_is_a_bad_response(
    simulator: RunningSimulator, hostile: Start, logs: list[EventDict], handler: Handler
) -> None:
    """A never-ending or oversized body fails that poll as `bad_response` once read past
    `max_response_bytes` (not a timeout after gigabytes), is not retried, and leaves the
    other project alone."""
    bad = await hostile({"/v2/{project_id}/tasks": handler})
    config = fast_config(
        healthy_and_bad(simulator.url, bad),
        max_response_bytes=MIB,
        request_timeout_seconds=1,
    )
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await running.scrape()
    assert poll_errors(samples, "p2", "tasks") == {"bad_response": 1}
    assert samples.value("vias_up", project_id="p2", source="tasks") == 0
    assert samples.value("vias_up", project_id="p1", source="tasks") == 1
    assert samples.series("vias_tasks", project_id="p1")
    requests = samples.value(
        "vias_api_requests_total", project_id="p2", endpoint="/v2/{project_id}/tasks", code="200"
    )
    assert requests == 1  # not retried: the same request would get the same answer
    (failure,) = events(logs, "poll failed", project_id="p2", source="tasks")
    assert "max_response_bytes" in failure["error"]
    assert events(logs, "answer body too large", project_id="p2")


async def test_an_answer_just_under_max_response_bytes_is_read(
    simulator: RunningSimulator, hostile: Start
) -> None:
    """The bound is on the body, not below it: a page of exactly the bound is fine."""
    page = tasks_page(3)
    padded = page[:-1] + b" " * (64 * 1024 - len(page)) + page[-1:]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=padded, content_type="application/json")

    bad = await hostile({"/v2/{project_id}/tasks": handler})
    config = fast_config(healthy_and_bad(simulator.url, bad), max_response_bytes=64 * 1024)
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await running.scrape()
    assert samples.value("vias_up", project_id="p2", source="tasks") == 1
    assert samples.value("vias_poll_items", project_id="p2", source="tasks") == 3


# --- 2. impossible totals ---------------------------------------------------------------

BATCH_TASKS = 600


def batch_pages(count: int) -> Handler:
    """600 batch tasks in pages of 200, each page claiming `count` as the total."""

    async def handler(request: web.Request) -> web.Response:
        page, size = int(request.query["page_num"]), int(request.query["page_size"])
        first = (page - 1) * size
        listing = [
            {
                "id": f"b{i}",
                "batch_task_name": f"batch {i}",
                "batch_task_status_info": {"running": 1},
            }
            for i in range(first, min(first + size, BATCH_TASKS))
        ]
        return web.json_response({"count": count, "batch_task_list": listing})

    return handler


async def test_a_negative_count_is_a_bad_response(
    simulator: RunningSimulator, hostile: Start
) -> None:
    """`count: -1` with a full first page: not a listing of 200 with `vias_up 1`, but a
    failed poll (`bad_response`), the other project untouched."""
    bad = await hostile({"/v2/{project_id}/batch-tasks": batch_pages(-1)})
    config = fast_config([target(simulator.url, "p1"), target(bad, "p2", sources=["batch_tasks"])])
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await running.scrape()
    assert poll_errors(samples, "p2", "batch_tasks") == {"bad_response": 1}
    assert samples.value("vias_up", project_id="p2", source="batch_tasks") == 0
    assert not samples.series("vias_batch_task_info", project_id="p2")
    assert samples.value("vias_up", project_id="p1", source="batch_tasks") == 1


@pytest.mark.parametrize("count", [0, 150])
async def test_a_total_below_a_full_page_does_not_end_the_listing(
    hostile: Start, logs: list[EventDict], count: int
) -> None:
    """A total smaller than the items of the full pages already listed is not believed:
    paging goes on to the short page, every batch task is listed, and it is logged."""
    bad = await hostile({"/v2/{project_id}/batch-tasks": batch_pages(count)})
    config = fast_config([target(bad, "p2", sources=["batch_tasks"])])
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await running.scrape()
    assert samples.value("vias_up", project_id="p2", source="batch_tasks") == 1
    assert samples.value("vias_poll_items", project_id="p2", source="batch_tasks") == BATCH_TASKS
    assert events(logs, "listing total below the items listed, paging on", project_id="p2")


# --- 3. an empty project list from IAM; 5. project ids that are paths --------------------


def exported_projects(samples: Any) -> set[str]:
    return {dict(labels)["project_id"] for labels in samples.series("vias_up")}


async def test_an_empty_project_list_is_not_believed_at_once(
    simulator: RunningSimulator, logs: list[EventDict]
) -> None:
    """IAM answering `{"projects": []}` with 200 after listing p1 and p2: the projects stay
    polled, the refresh fails (`reason="empty"`, `last_refresh_successful` 0, which
    VIASDiscoveryFailing watches) until empty answers in a row span
    `empty_confirmation_seconds`; then they are dropped."""
    sim = simulator.sim
    sim.iam = IamDirectory([IamProject("p1", "cn-north-4"), IamProject("p2", "cn-north-4_b")])
    clock = FakeClock()
    config = discovery_config(simulator.url, empty_confirmation_seconds=600)
    async with Exporter(config, clock=clock) as exporter, serving(exporter) as url:
        assert await exporter.discover()
        await exporter.poll_all_once()
        sim.iam = IamDirectory([])
        for seconds in (0, 300):  # two empty answers within the confirmation time: kept
            clock.advance(seconds)
            assert not await exporter.discover()
        await exporter.poll_all_once()
        samples = await _metrics(url)
        assert exported_projects(samples) == {"p1", "p2"}
        assert samples.value("vias_discovery_refresh_failures_total", reason="empty") == 2
        assert samples.value("vias_discovery_last_refresh_successful") == 0
        assert samples.value("vias_discovery_projects") == 2
        assert events(logs, "discovery refresh failed", reason="empty")

        clock.advance(300)  # 600 s since the first empty answer: confirmed
        assert await exporter.discover()
        samples = await _metrics(url)
        assert exported_projects(samples) == set()
        assert samples.value("vias_discovery_last_refresh_successful") == 1
        assert samples.value("vias_discovery_projects") == 0


async def test_a_project_listed_again_ends_the_empty_streak(simulator: RunningSimulator) -> None:
    """Empty, then the projects again, then empty: the streak starts over."""
    sim = simulator.sim
    listed = IamDirectory([IamProject("p1", "cn-north-4")])
    sim.iam = listed
    clock = FakeClock()
    async with Exporter(discovery_config(simulator.url), clock=clock) as exporter:
        assert await exporter.discover()
        for answer in (IamDirectory([]), listed, IamDirectory([])):
            sim.iam = answer
            clock.advance(500)
            assert await exporter.discover() is (answer is listed)
        assert [t.project_id for t in exporter.targets] == ["p1"]


async def test_a_project_id_that_is_a_path_is_never_polled(
    simulator: RunningSimulator, logs: list[EventDict]
) -> None:
    """A discovered id like `../../v3/projects?x=` is not made a target (counted, logged);
    the other projects are polled, and no request leaves the project's own paths."""
    sim = simulator.sim
    sim.iam = IamDirectory(
        [IamProject("p1", "cn-north-4"), IamProject("../../v3/projects?x=", "cn-north-4_x")]
    )
    async with Exporter(discovery_config(simulator.url)) as exporter, serving(exporter) as url:
        assert await exporter.discover()
        await exporter.poll_all_once()
        samples = await _metrics(url)
    assert [t.project_id for t in exporter.targets] == ["p1"]
    assert exported_projects(samples) == {"p1"}
    assert samples.value("vias_discovery_projects_rejected_total", reason="invalid_id") == 1
    assert events(logs, "discovered projects ignored", projects=1)
    vias_paths = [r.path for r in sim.requests if not r.path.startswith("/v3/")]
    assert vias_paths and all(path.startswith("/v2/p1/") for path in vias_paths)


async def test_path_parameters_are_quoted_whole(hostile: Start) -> None:
    """The project id and an id from an answer each go into one path segment: `/` and `?`
    are escaped, and a dot segment (which no escaping keeps in place) is refused as a bad
    answer before anything is sent."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({})

    url = await hostile({"/{tail:.*}": record})
    settings = make_config([target(url, "p1")]).global_
    async with aiohttp.ClientSession() as session:

        def transport(project_id: str) -> Transport:
            auth = TokenAuth(SecretStr("t"))
            return Transport(
                session=session,
                base_url=url,
                project_id=project_id,
                auth=auth,
                telemetry=Telemetry(),
                settings=settings,
            )

        endpoint = "/v2/{project_id}/tasks/{task_id}"
        await transport("../x?").get(endpoint, {}, bytes, task_id="../../v3/projects?x=")
        assert seen == ["/v2/..%2Fx%3F/tasks/..%2F..%2Fv3%2Fprojects%3Fx="]
        for dots in (".", ".."):
            with pytest.raises(ViasResponseError):
                await transport("p1").get(endpoint, {}, bytes, task_id=dots)
            with pytest.raises(ViasResponseError):
                await transport(dots).get(endpoint, {}, bytes, task_id="t")
    assert len(seen) == 1


async def _metrics(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 200
        return Samples.parse(await response.text())


# --- 4. label values are capped ---------------------------------------------------------

CUT = re.compile(r"…[0-9a-f]{8}$")


async def test_label_values_over_the_cap_are_cut_and_counted(
    simulator: RunningSimulator, hostile: Start, logs: list[EventDict]
) -> None:
    """A 100 kB job name and a 5,000-character state: every label value on /metrics fits
    `label_value_max_bytes` (a Prometheus with `label_value_length_limit` keeps the scrape),
    cut ones end in `…` and a hash (two names sharing a beginning stay two series), and
    the cut values are counted and logged. The cached and the reference render agree."""
    long_name = "n" * 100_000
    jobs = [
        {"id": "j1", "name": long_name + "1", "state": "FAILED"},
        {"id": "j2", "name": long_name + "2", "state": "FAILED"},
        {"id": "j3", "name": "short", "state": "S" * 5_000},
    ]

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"count": len(jobs), "tasks": jobs})

    bad = await hostile({"/v2/{project_id}/tasks": handler})
    config = fast_config(healthy_and_bad(simulator.url, bad), label_value_max_bytes=1024)
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await running.scrape()
        exposition = running.exporter.exposition
        for openmetrics in (False, True):
            cached = exposition.body(openmetrics=openmetrics, gzipped=False)
            assert cached == render_whole(exposition, openmetrics=openmetrics)
    values = [value for (_, labels) in samples for _, value in labels]
    assert max(len(value.encode()) for value in values) <= 1024
    cut = {
        (name, label, value)
        for (name, labels) in samples
        if ("project_id", "p2") in labels
        for label, value in labels
        if CUT.search(value)
    }
    names = {dict(labels)["task_name"] for labels in samples.series("vias_problem_task_info")}
    assert {len(name.encode()) for name in names if CUT.search(name)} == {1024}
    assert len([name for name in names if name.startswith("nnnn")]) == 2  # still two series
    assert {label for _, label, _ in cut} == {"task_name", "state"}
    counted = samples.value("vias_label_values_truncated_total", project_id="p2", source="tasks")
    assert counted == len(cut)
    assert samples.value("vias_up", project_id="p2", source="tasks") == 1
    assert samples.value("vias_up", project_id="p1", source="tasks") == 1
    (logged,) = events(logs, "label values truncated", project_id="p2", source="tasks")
    assert logged["values"] == len(cut)


# --- 6. caps hide no totals ---------------------------------------------------------------


async def test_the_batch_task_cap_hides_no_totals(simulator: RunningSimulator) -> None:
    """With more batch tasks than `batch_task_series_limit`, the per-batch-task series are
    capped, but `vias_project_batch_task_tasks` sums every batch task's tasks by state:
    a dashboard's `sum` is the truth, not the part the budget kept."""
    project = simulator.world.projects["p1"]
    truth: Counter[str] = Counter()
    for batch in project.batch_tasks.values():
        truth.update({state.upper(): n for state, n in batch.status_counts().items()})
    assert len(project.batch_tasks) == 4 and sum(truth.values()) > 0
    config = fast_config([target(simulator.url, "p1", sources=["batch_tasks"])])
    config.global_ = config.global_.model_copy(update={"batch_task_series_limit": 2})
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await running.scrape()
    capped: Counter[str] = Counter()
    for labels, value in samples.series("vias_batch_task_tasks", project_id="p1").items():
        capped[dict(labels)["state"]] += int(value)
    totals = {
        dict(labels)["state"]: value
        for labels, value in samples.series(
            "vias_project_batch_task_tasks", project_id="p1"
        ).items()
    }
    assert {state: n for state, n in totals.items() if n} == dict(truth)
    assert sum(capped.values()) < sum(truth.values())  # the cap did cut the per-task series
    assert totals["FAILED"] == truth["FAILED"]  # documented states present, 0 when none
    assert samples.value("vias_batch_task_series_dropped_total", project_id="p1") == 2


# --- smaller: the retry log line ---------------------------------------------------------


async def test_the_retry_log_line_names_the_project_and_endpoint(
    hostile: Start, logs: list[EventDict]
) -> None:
    answers = [web.json_response({"error_code": "VIAS.0001"}, status=500)]

    async def handler(request: web.Request) -> web.Response:
        return answers.pop() if answers else web.Response(body=tasks_page(2))

    bad = await hostile({"/v2/{project_id}/tasks": handler})
    config = fast_config([target(bad, "p2", sources=["tasks"])])
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
    (retry,) = events(logs, "retrying request")
    assert retry["project_id"] == "p2"
    assert retry["endpoint"] == "/v2/{project_id}/tasks"
