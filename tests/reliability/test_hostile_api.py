"""A hostile or broken API, over real sockets: small aiohttp apps on loopback serve what no
sane VIAS would (a never-ending body, a page bigger than the bound, impossible totals,
ids that are paths, label values of 100 kB), next to the simulator serving a healthy
project. Each case checks what users rely on: the process survives, the bad answer is
counted and logged, and the other project keeps its data. docs/reliability.md lists them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.reliability.reliability_support import events, fast_config, running_exporter
from tests.support import RunningSimulator, job_items, serving_app, target

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MIB = 1 << 20


@pytest.fixture
async def hostile() -> AsyncIterator[Callable[[dict[str, Handler]], Any]]:
    """Start an aiohttp app with these routes (path -> GET handler) on loopback."""
    stack: list[Any] = []

    async def start(routes: dict[str, Handler]) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        context = serving_app(app)
        stack.append(context)
        return await context.__aenter__()

    yield start
    for context in reversed(stack):
        await context.__aexit__(None, None, None)


def tasks_page(count: int) -> bytes:
    return json.dumps({"count": count, "tasks": job_items(0, count)}).encode()


def poll_errors(samples: Any, project: str, source: str) -> dict[str, float]:
    return {
        dict(labels)["reason"]: value
        for labels, value in samples.series(
            "vias_poll_errors_total", project_id=project, source=source
        ).items()
    }


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
    simulator: RunningSimulator, hostile: Any, logs: list[dict[str, Any]], handler: Handler
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
    simulator: RunningSimulator, hostile: Any
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
    simulator: RunningSimulator, hostile: Any
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
    hostile: Any, logs: list[dict[str, Any]], count: int
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
