"""Paging edge cases that are awkward to stage on a real server (aioresponses): the three
paging strategies, the sliding look-ahead window, repeated pages, the page cap, failures in a
window. The paginator passes every item on; de-duplication is the aggregators'.

Complete listings against the simulator over real HTTP are in test_paginator_simulator.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from exporter.errors import ViasHTTPError
from exporter.lists.base import Paging, PollContext, ViasList
from exporter.lists.batch_tasks import BATCH_TASKS
from exporter.lists.face_edge_tasks import FACE_EDGE_TASKS
from exporter.lists.infer_tasks import INFER_TASKS
from exporter.lists.jobs import TASK_STATES, JobAggregator, JobData, Task, TaskPage, render_jobs
from exporter.paginator import pages, read_listing
from exporter.settings import GlobalConfig
from exporter.telemetry import Telemetry
from exporter.transport import Transport
from tests.mocked_vias import FAST, mocked_transport, serve
from tests.support import job_items, telemetry_registry

# No registered list is unpaged today; the strategy is the paginator's all the same.
UNPAGED = ViasList[Task, JobData](
    name="all_jobs",
    endpoint="/v1/{project_id}/all-jobs",
    paging=Paging(end="unpaged", extra_params={"scope": "all"}),
    page_model=TaskPage,
    states=TASK_STATES,
    aggregator=JobAggregator,
    render=render_jobs,
)


def _transport(
    session: aiohttp.ClientSession, telemetry: Telemetry, settings: GlobalConfig = FAST
) -> Transport:
    return mocked_transport(session, telemetry, settings)


async def _listed(transport: Transport, vias_list: ViasList[Any, Any]) -> list[list[Any]]:
    return [items async for items in pages(transport, vias_list)]


def _ids(listed: list[list[Any]]) -> list[str | None]:
    return [item.id for items in listed for item in items]


def _page_of(jobs: list[dict[str, Any]]) -> Callable[[URL], CallbackResult]:
    def handler(url: URL) -> CallbackResult:
        page, size = int(url.query["page"]), int(url.query["page_size"])
        items = jobs[(page - 1) * size : page * size]
        return CallbackResult(payload={"count": len(items), "tasks": items})

    return handler


def _stops(telemetry: Telemetry, reason: str, source: str = "infer_tasks") -> float:
    labels = {"project_id": "p1", "source": source, "reason": reason}
    return (
        telemetry_registry(telemetry).get_sample_value("vias_pagination_stops_total", labels) or 0.0
    )


async def test_pages_until_a_short_page_within_window(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    telemetry = Telemetry()
    asked = serve(mocked, "/v1/p1/infer/tasks", _page_of(job_items(0, 110)))
    listed = await _listed(_transport(session, telemetry), INFER_TASKS)
    assert [len(items) for items in listed] == [50, 50, 10]  # one yield a page, in order
    assert _ids(listed) == [f"job-{i}" for i in range(110)]
    assert {u.query["page_size"] for u in asked} == {"50"}
    assert [u.query["page"] for u in asked[:3]] == ["1", "2", "3"]
    # 3 pages hold the data; the look-ahead window may add at most window-1 requests.
    assert 3 <= len(asked) <= 3 + FAST.page_window - 1
    assert _stops(telemetry, "page_cap") == _stops(telemetry, "repeated_page") == 0


async def test_the_first_page_is_asked_alone_then_a_window(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    asked = serve(mocked, "/v1/p1/infer/tasks", _page_of(job_items(0, 10)))
    listed = await _listed(_transport(session, Telemetry()), INFER_TASKS)
    assert _ids(listed) == [f"job-{i}" for i in range(10)]
    assert len(asked) == 1  # a short first page: no look-ahead was spent


async def test_the_next_pages_are_asked_while_a_page_is_handed_on(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    """A sliding window: while the consumer holds page 5 of 10, the pages after it up to
    the window (4: pages 6 to 8) are asked, so that their latency passes during its
    parsing; none further."""
    jobs = job_items(0, 500)
    page_of, eighth_asked = _page_of(jobs), asyncio.Event()

    def handler(url: URL) -> CallbackResult:
        if url.query["page"] == "8":
            eighth_asked.set()
        return page_of(url)

    asked = serve(mocked, "/v1/p1/infer/tasks", handler)
    listing = pages(_transport(session, Telemetry(), FAST), INFER_TASKS)
    assert FAST.page_window == 4 <= FAST.max_concurrency
    handed = [await anext(listing) for _ in range(5)]
    await asyncio.wait_for(eighth_asked.wait(), 10)
    assert max(int(url.query["page"]) for url in asked) == 8
    handed += [items async for items in listing]
    assert _ids(handed) == [f"job-{i}" for i in range(500)]
    assert 11 <= len(asked) <= 11 + FAST.page_window - 1  # the empty page 11 ends it


async def test_the_pages_asked_past_the_end_are_answered_not_cut(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    """A listing that ends (page 3 is short) waits for the pages it asked ahead (4 to 6)
    rather than cancelling them: a request cut off closes its connection, and the next
    poll would open it again."""
    page_of, release, answered = _page_of(job_items(0, 110)), asyncio.Event(), []

    async def handler(url: URL) -> CallbackResult:
        if int(url.query["page"]) > 3:
            await release.wait()
            answered.append(url.query["page"])
        return page_of(url)

    serve(mocked, "/v1/p1/infer/tasks", handler)
    listing = pages(_transport(session, Telemetry()), INFER_TASKS)
    handed = [await anext(listing) for _ in range(3)]
    release.set()  # the pages past the end answer once the listing has ended
    handed += [items async for items in listing]
    assert _ids(handed) == [f"job-{i}" for i in range(110)]
    assert sorted(answered) == ["4", "5", "6"]  # asked with page 3 (window 4)


async def test_an_empty_listing_yields_nothing(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    asked = serve(mocked, "/v1/p1/infer/tasks", _page_of([]))
    assert await _listed(_transport(session, Telemetry()), INFER_TASKS) == []
    assert len(asked) == 1


async def test_jobs_listed_twice_are_passed_on_for_the_aggregator(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    telemetry = Telemetry()
    jobs = job_items(0, 50) + job_items(40, 20)  # offset paging shifted: 10 jobs seen twice
    serve(mocked, "/v1/p1/infer/tasks", _page_of(jobs))
    listed = await _listed(_transport(session, telemetry), INFER_TASKS)
    assert len(_ids(listed)) == 70 and len(set(_ids(listed))) == 60
    assert _stops(telemetry, "repeated_page") == 0  # overlapping is not repeating
    aggregator = JobAggregator(PollContext(None, problem_tasks_limit=10, now=0.0))
    for items in listed:
        aggregator.add(items)
    assert (await aggregator.finish()).item_count == 60


async def test_repeated_page_stops_the_listing(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    telemetry = Telemetry()
    asked = serve(
        mocked,
        "/v1/p1/infer/tasks",
        lambda url: CallbackResult(payload={"tasks": job_items(0, 50)}),
    )
    listed = await _listed(_transport(session, telemetry), INFER_TASKS)
    assert _ids(listed) == [f"job-{i}" for i in range(50)]  # what came before is kept
    assert len(asked) <= 1 + FAST.page_window
    assert _stops(telemetry, "repeated_page") == 1


def _without_ids(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs without `id`, told apart by name only."""
    return [{**{k: v for k, v in job.items() if k != "id"}, "name": job["id"]} for job in jobs]


async def test_pages_of_items_without_ids_are_not_a_repeated_page(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    """Two full pages of id-less items are different pages: the listing goes on."""
    telemetry = Telemetry()
    serve(mocked, "/v1/p1/infer/tasks", _page_of(_without_ids(job_items(0, 110))))
    listed = await _listed(_transport(session, telemetry), INFER_TASKS)
    assert [item.name for items in listed for item in items] == [f"job-{i}" for i in range(110)]
    assert _stops(telemetry, "repeated_page") == 0


async def test_a_repeated_page_of_items_without_ids_stops_the_listing(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    telemetry = Telemetry()
    page = CallbackResult(payload={"tasks": _without_ids(job_items(0, 50))})
    serve(mocked, "/v1/p1/infer/tasks", lambda url: page)
    listed = await _listed(_transport(session, telemetry), INFER_TASKS)
    assert len(_ids(listed)) == 50
    assert _stops(telemetry, "repeated_page") == 1


async def test_page_cap_bounds_a_server_that_never_ends(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    telemetry = Telemetry()
    counter = iter(range(10**6))
    asked = serve(
        mocked,
        "/v1/p1/infer/tasks",
        lambda url: CallbackResult(payload={"tasks": job_items(next(counter) * 50, 50)}),
    )
    settings = GlobalConfig(max_pages=7, backoff_initial_seconds=0.001)
    listed = await _listed(_transport(session, telemetry, settings), INFER_TASKS)
    assert len(asked) == 7 and len(_ids(listed)) == 350
    assert sorted(int(u.query["page"]) for u in asked) == list(range(1, 8))
    assert _stops(telemetry, "page_cap") == 1


async def test_face_edge_server_that_ignores_paging(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    everything = [{"id": f"f{i}", "state": "RUNNING"} for i in range(250)]
    asked = serve(
        mocked,
        "/v2/p1/services/c-face-edge/tasks",
        lambda url: CallbackResult(payload={"count": 250, "tasks": everything}),
    )
    listed = await _listed(_transport(session, Telemetry()), FACE_EDGE_TASKS)
    assert len(_ids(listed)) == 250 and len(asked) == 1


async def test_total_count_limits_look_ahead(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    batches = [{"id": f"b{i}", "batch_task_name": "n"} for i in range(400)]

    def handler(url: URL) -> CallbackResult:
        page = int(url.query["page_num"])
        return CallbackResult(
            payload={"count": 400, "batch_task_list": batches[(page - 1) * 200 : page * 200]}
        )

    asked = serve(mocked, "/v2/p1/batch-tasks", handler)
    listed = await _listed(_transport(session, Telemetry()), BATCH_TASKS)
    assert len(_ids(listed)) == 400 and len(asked) == 2
    assert [dict(u.query) for u in asked] == [
        {"is_paged": "true", "page_num": str(page), "page_size": "200"} for page in (1, 2)
    ]


async def test_unpaged_list_is_one_request_without_paging_parameters(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    asked = serve(
        mocked,
        "/v1/p1/all-jobs",
        lambda url: CallbackResult(payload={"count": 120, "tasks": job_items(0, 120)}),
    )
    listed = await _listed(_transport(session, Telemetry()), UNPAGED)
    assert [len(items) for items in listed] == [120]
    assert [dict(u.query) for u in asked] == [{"scope": "all"}]


async def test_empty_unpaged_list_yields_nothing(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    serve(mocked, "/v1/p1/all-jobs", lambda url: CallbackResult(payload={"tasks": []}))
    assert await _listed(_transport(session, Telemetry()), UNPAGED) == []


async def test_a_failed_page_in_a_window_fails_the_listing_with_its_own_error(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    jobs = _page_of(job_items(0, 500))

    def handler(url: URL) -> CallbackResult:
        if url.query["page"] == "3":
            return CallbackResult(status=400, payload={"error_code": "VIAS.00010001"})
        return jobs(url)

    serve(mocked, "/v1/p1/infer/tasks", handler)
    with pytest.raises(ViasHTTPError) as caught:  # not an ExceptionGroup
        await _listed(_transport(session, Telemetry()), INFER_TASKS)
    assert (caught.value.status, caught.value.error_code) == (400, "VIAS.00010001")

    assert _requests_left() == []  # the pages asked ahead of the failed one: cancelled


def _requests_left() -> list[asyncio.Task[Any]]:
    """The tasks besides the test's own not told to stop: requests a listing left behind."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.cancelling()]


async def test_a_listing_its_reader_gives_up_cancels_the_pages_asked_ahead(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    """The aggregator failing on page 2 ends the listing there: the requests for the
    pages after it (still unanswered) stop with it, not run on in the background."""
    page_of = _page_of(job_items(0, 500))

    async def handler(url: URL) -> CallbackResult:
        if int(url.query["page"]) > 2:
            await asyncio.Event().wait()  # no answer until the request is cancelled
        return page_of(url)

    serve(mocked, "/v1/p1/infer/tasks", handler)
    handed: list[list[Any]] = []

    def add(items: list[Any]) -> None:
        handed.append(items)
        if len(handed) == 2:
            raise RuntimeError("aggregator failed")

    with pytest.raises(RuntimeError):
        await read_listing(_transport(session, Telemetry()), INFER_TASKS, add)
    assert _requests_left() == []
