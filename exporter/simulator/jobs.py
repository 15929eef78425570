"""The job APIs of the VIAS double: /v2/tasks and /v1/infer/tasks (the same jobs, `count`
the items on the page), the /v1 job detail (a job of either list or an edge
face-extraction job), /v2/batch-tasks and the c-face-edge job list."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from exporter.simulator.answers import (
    batch_task,
    face_edge_detail,
    face_edge_task,
    json_answer,
    page_bounds,
    raw_json_answer,
    task_v1_detail,
    task_v1_item,
    task_v2,
    vias_error,
)

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator
    from exporter.simulator.world import ProjectData, SimTask

Json = dict[str, Any]
FACE_EDGE_MAX_PAGE_SIZE = 100  # undocumented upstream; our choice


class _TaskJson:
    """Comma-joined JSON of jobs, reusing each job's JSON until the job changes: per
    (project, format), task id -> (the SimTask rendered, its JSON). ProjectData replaces a
    SimTask on every change, so identity tells whether the JSON is current."""

    def __init__(self) -> None:
        self._rendered: dict[tuple[str, str], dict[str, tuple[SimTask, str]]] = {}

    def join(
        self,
        project: ProjectData,
        fmt: str,
        tasks: list[SimTask],
        render: Callable[[SimTask, str], Json],
    ) -> str:
        cache = self._rendered.setdefault((project.project_id, fmt), {})
        if len(cache) > 2 * len(project.tasks) + 1000:  # forget deleted jobs now and then
            for task_id in [i for i in cache if i not in project.tasks]:
                del cache[task_id]
        parts = []
        for task in tasks:
            hit = cache.get(task.id)
            if hit is None or hit[0] is not task:
                hit = (task, json.dumps(render(task, project.project_id), separators=(",", ":")))
                cache[task.id] = hit
            parts.append(hit[1])
        return ",".join(parts)


def routes(sim: Simulator) -> list[web.RouteDef]:
    task_json = _TaskJson()

    def task_listing(
        request: web.Request, fmt: str, max_size: int, render: Callable[[SimTask, str], Json]
    ) -> web.Response:
        """/v2/tasks and /v1/infer/tasks: same jobs, `count` = items on this page."""
        project = sim.project(request)
        page, size = page_bounds(request, "page", max_size)
        tasks = project.newest_first((page - 1) * size, page * size)
        items = task_json.join(project, fmt, tasks, render)
        return raw_json_answer(
            f'{{"count":{len(tasks)},"tasks":[{items}],"page":{page},"page_size":{size}}}'
        )

    async def tasks_v2(request: web.Request) -> web.Response:
        return task_listing(request, "v2", 1000, task_v2)

    async def tasks_v1(request: web.Request) -> web.Response:
        return task_listing(request, "v1", 50, task_v1_item)

    async def task_v1(request: web.Request) -> web.Response:
        """One job's details: a job of either task list, or an edge face-extraction job."""
        project = sim.project(request)
        task_id = request.match_info["task_id"]
        face_edge = project.face_edge_tasks.get(task_id)
        if face_edge is not None:
            return json_answer(200, face_edge_detail(face_edge, project.project_id))
        task = project.tasks.get(task_id)
        if task is None:
            raise vias_error(
                404,
                "VIAS.00010002",
                "The task does not exist.",
                f"task {task_id} not found",
                ["task_id"],
            )
        return json_answer(200, task_v1_detail(task, project.project_id))

    async def batch_tasks(request: web.Request) -> web.Response:
        project = sim.project(request)
        batches = sorted(
            project.batch_tasks.values(), key=lambda b: (b.created_at_ms, b.id), reverse=True
        )
        page, size = page_bounds(request, "page_num", 200, max_page=10000)
        if request.query.get("is_paged", "true").lower() != "false":
            batches = batches[(page - 1) * size : page * size]
        listing = [batch_task(batch) for batch in batches]
        return json_answer(200, {"count": len(project.batch_tasks), "batch_task_list": listing})

    async def face_edge(request: web.Request) -> web.Response:
        project = sim.project(request)
        jobs = list(project.face_edge_tasks.values())
        if sim.face_edge_paging:
            page, size = page_bounds(request, "page", FACE_EDGE_MAX_PAGE_SIZE, min_size=1)
            jobs = jobs[(page - 1) * size : page * size]
        tasks = [face_edge_task(job, project.project_id) for job in jobs]
        return json_answer(200, {"count": len(project.face_edge_tasks), "tasks": tasks})

    return [
        web.get("/v2/{project_id}/tasks", tasks_v2),
        web.get("/v2/{project_id}/batch-tasks", batch_tasks),
        web.get("/v1/{project_id}/infer/tasks", tasks_v1),
        web.get("/v1/{project_id}/infer/tasks/{task_id}", task_v1),
        web.get("/v2/{project_id}/services/c-face-edge/tasks", face_edge),
    ]
