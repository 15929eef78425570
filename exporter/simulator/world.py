"""The simulated VIAS account: seeded jobs per project and scenario steps that change them.

Everything is deterministic given the seed: each project draws from its own
`random.Random`, so adding a project does not change the others.

Change jobs through `ProjectData` methods, never by assigning `SimTask` fields: the methods
replace the `SimTask` object, which is how the server notices a job changed (it caches each
job's JSON keyed by object identity).
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

from exporter.simulator.objects import (
    ALGORITHMS,
    BATCH_MEMBER_SHARE,
    CLOUD_SHARE,
    DEFAULT_START_MS,
    DEPLOYMENTS,
    ERRORS,
    FAILED_STATES,
    GENERIC_ERROR_MESSAGE,
    HEALTHY_STATES,
    HISTORY_MS,
    PRIORITIES,
    STATE_WEIGHTS,
    TICK_MS,
    VENDORS,
    VIDEO_GROUPS,
    Deployment,
    SimBatchTask,
    SimFaceEdgeTask,
    SimTask,
    error_message_for,
    gc_paused,
    iso,
)
from exporter.simulator.scenarios import STEPS

# Re-exported: the server, the tests and the bench know the world by this module.
__all__ = [
    "ALGORITHMS",
    "BATCH_MEMBER_SHARE",
    "CLOUD_SHARE",
    "DEFAULT_START_MS",
    "DEPLOYMENTS",
    "ERRORS",
    "FAILED_STATES",
    "GENERIC_ERROR_MESSAGE",
    "HEALTHY_STATES",
    "HISTORY_MS",
    "PRIORITIES",
    "STATE_WEIGHTS",
    "TICK_MS",
    "VENDORS",
    "VIDEO_GROUPS",
    "Deployment",
    "ProjectData",
    "Scenario",
    "SimBatchTask",
    "SimFaceEdgeTask",
    "SimTask",
    "World",
    "error_message_for",
    "iso",
]

Scenario = Literal["demo", "healthy", "incident"]


class ProjectData:
    """One project's jobs, batch tasks and edge face-extraction jobs."""

    def __init__(self, project_id: str, rng: random.Random, now_ms: int) -> None:
        self.project_id = project_id
        self.now_ms = now_ms
        self.tasks: dict[str, SimTask] = {}
        self.batch_tasks: dict[str, SimBatchTask] = {}
        self.face_edge_tasks: dict[str, SimFaceEdgeTask] = {}
        self.rng = rng
        self._oldest_first: list[str] = []  # task ids by (created_at_ms, id)

    def newest_first(self, start: int, stop: int) -> list[SimTask]:
        """Jobs [start, stop) in listing order (newest first, as sort_dir=desc)."""
        size = len(self._oldest_first)
        window = self._oldest_first[max(0, size - stop) : max(0, size - start)]
        return [self.tasks[task_id] for task_id in reversed(window)]

    def new_id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def add_task(
        self,
        *,
        state: str = "RUNNING",
        vendor: str = "huawei",
        algorithm: str = "helmet_detection",
        deployment: Deployment = "cloud",
        video_group: str = "east-gate",
        error_code: str | None = None,
        error_message: str | None = None,
        batch_id: str | None = None,
        name: str | None = None,
        task_id: str | None = None,
        created_at_ms: int | None = None,
        video_source_name: str | None = None,
        service_id: str | None = None,
    ) -> SimTask:
        task_id = task_id or self.new_id()
        created = self.now_ms if created_at_ms is None else created_at_ms
        task = SimTask(
            id=task_id,
            name=name or f"{algorithm}-{task_id[:8]}",
            state=state,
            vendor=vendor,
            algorithm=algorithm,
            deployment=deployment,
            error_code=error_code,
            error_message=error_message_for(error_code, error_message),
            batch_id=batch_id,
            created_at_ms=created,
            updated_at_ms=created,
            video_group=video_group,
            video_source_name=video_source_name,
            service_id=service_id,
        )
        if task_id in self.tasks:
            self.delete_task(task_id)
        self.tasks[task_id] = task
        bisect.insort(self._oldest_first, task_id, key=self._order_key)
        if batch_id is not None:
            self.batch_tasks[batch_id].task_ids.append(task_id)
        return task

    def delete_task(self, task_id: str) -> None:
        index = bisect.bisect_left(
            self._oldest_first, self._order_key(task_id), key=self._order_key
        )
        del self._oldest_first[index]
        task = self.tasks.pop(task_id)
        if task.batch_id is not None and task.batch_id in self.batch_tasks:
            self.batch_tasks[task.batch_id].task_ids.remove(task_id)

    def set_state(
        self,
        task_id: str,
        state: str,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> SimTask:
        task = dataclasses.replace(
            self.tasks[task_id],
            state=state,
            error_code=error_code,
            error_message=error_message_for(error_code, error_message),
            updated_at_ms=self.now_ms,
        )
        self.tasks[task_id] = task
        return task

    def add_batch_task(
        self,
        *,
        name: str,
        vendor: str = "huawei",
        algorithm: str = "helmet_detection",
        deployment: Deployment = "cloud",
        video_group: str = "east-gate",
        priority: str = "low",
        batch_id: str | None = None,
    ) -> SimBatchTask:
        """An empty batch task; add members with `add_task(batch_id=...)`."""
        batch = SimBatchTask(
            id=batch_id or self.new_id(),
            name=name,
            vendor=vendor,
            algorithm=algorithm,
            deployment=deployment,
            video_group=video_group,
            created_at_ms=self.now_ms,
            priority=priority,
            task_ids=[],
            tasks=self.tasks,
        )
        self.batch_tasks[batch.id] = batch
        return batch

    def add_face_edge_task(
        self,
        *,
        state: str = "RUNNING",
        name: str | None = None,
        task_id: str | None = None,
        edge_pool_id: str | None = None,
    ) -> SimFaceEdgeTask:
        task_id = task_id or self.new_id()
        now = iso(self.now_ms)
        task = SimFaceEdgeTask(
            id=task_id,
            name=name or f"face-edge-{task_id[:8]}",
            state=state,
            created_at=now,
            updated_at=now,
            edge_pool_id=edge_pool_id or f"pool-{task_id[8:16]}",
            camera_id=f"cam-{task_id[16:24]}",
        )
        self.face_edge_tasks[task_id] = task
        return task

    def set_face_edge_state(self, task_id: str, state: str) -> None:
        task = self.face_edge_tasks[task_id]
        task.state, task.updated_at = state, iso(self.now_ms)

    def ids_in_state(self, state: str) -> list[str]:
        return [task.id for task in self.tasks.values() if task.state == state]

    def truth(self) -> dict[str, Any]:
        """Everything an exporter should report for this project, JSON-ready."""
        return {
            "project_id": self.project_id,
            "tasks": [
                {
                    "id": t.id,
                    "state": t.state,
                    "vendor": t.vendor,
                    "algorithm": t.algorithm,
                    "deployment": t.deployment,
                    "error_code": t.error_code,
                    "batch_id": t.batch_id,
                }
                for t in self.tasks.values()
            ],
            "batch_tasks": [
                {
                    "id": b.id,
                    "name": b.name,
                    "vendor": b.vendor,
                    "algorithm": b.algorithm,
                    "deployment": b.deployment,
                    "num_task": len(b.task_ids),
                    "status_counts": b.status_counts(),
                }
                for b in self.batch_tasks.values()
            ],
            "face_edge_tasks": [
                {"id": f.id, "state": f.state} for f in self.face_edge_tasks.values()
            ],
        }

    def _order_key(self, task_id: str) -> tuple[int, str]:
        return self.tasks[task_id].created_at_ms, task_id

    def extend_sorted(self, tasks: list[SimTask]) -> None:
        """Bulk insert (fast path for generation): `tasks` in (created_at_ms, id) order, all
        newer than the jobs already here."""
        self.tasks.update((task.id, task) for task in tasks)
        self._oldest_first.extend(task.id for task in tasks)
        for task in tasks:
            if task.batch_id is not None:
                self.batch_tasks[task.batch_id].task_ids.append(task.id)


class World:
    """All simulated projects plus the scenario that moves them one tick at a time."""

    def __init__(self, projects: dict[str, ProjectData], scenario: Scenario, now_ms: int) -> None:
        self.projects = projects
        self.scenario = scenario
        self.now_ms = now_ms
        self.ticks = 0
        self.after_step: list[Callable[[World], None]] = []  # e.g. the incidents (incidents.py)

    @classmethod
    def generate(
        cls,
        seed: int = 1,
        project_ids: Sequence[str] = ("p1",),
        tasks_per_project: int = 1000,
        batch_tasks_per_project: int = 5,
        face_edge_tasks_per_project: int = 10,
        scenario: Scenario = "demo",
        start_ms: int = DEFAULT_START_MS,
    ) -> World:
        if scenario not in get_args(Scenario):
            raise ValueError(f"unknown scenario {scenario!r}")
        projects = {}
        with gc_paused():
            for project_id in project_ids:
                rng = random.Random(f"{seed}/{project_id}")
                project = ProjectData(project_id, rng, start_ms)
                _populate(
                    project,
                    tasks_per_project,
                    batch_tasks_per_project,
                    face_edge_tasks_per_project,
                    healthy_only=scenario == "healthy",
                )
                projects[project_id] = project
        return cls(projects, scenario, start_ms)

    def step(self) -> None:
        """Advance the clock by one tick and let the scenario change some jobs."""
        self.ticks += 1
        self.now_ms += TICK_MS
        for project in self.projects.values():
            project.now_ms = self.now_ms
            STEPS[self.scenario](project)
        for hook in self.after_step:
            hook(self)


def _populate(
    project: ProjectData, tasks: int, batches: int, face_edge: int, *, healthy_only: bool
) -> None:
    rng = project.rng
    for number in range(batches):
        project.add_batch_task(
            name=f"batch-{number:03d}",
            vendor=rng.choice(VENDORS),
            algorithm=rng.choice(ALGORITHMS),
            deployment="cloud" if rng.random() < CLOUD_SHARE else "edge",
            video_group=rng.choice(VIDEO_GROUPS),
            priority=rng.choice(PRIORITIES),
        )
    project.extend_sorted(_generate_tasks(project, tasks, healthy_only=healthy_only))
    face_states = ("RUNNING",) * 8 + ("STOPPED", "RUNNING" if healthy_only else "ABNORMAL")
    for _ in range(face_edge):
        project.add_face_edge_task(state=rng.choice(face_states))


def _generate_tasks(project: ProjectData, count: int, *, healthy_only: bool) -> list[SimTask]:
    """`count` jobs, oldest first. Columns are drawn in bulk (`choices(k=...)`) for speed."""
    rng = project.rng
    weights = {s: w for s, w in STATE_WEIGHTS.items() if not healthy_only or s in HEALTHY_STATES}
    states = rng.choices(list(weights), weights=list(weights.values()), k=count)
    vendors = rng.choices(VENDORS, k=count)
    algorithms = rng.choices(ALGORITHMS, k=count)
    groups = rng.choices(VIDEO_GROUPS, k=count)
    deployments = rng.choices(DEPLOYMENTS, cum_weights=[CLOUD_SHARE, 1.0], k=count)
    batch_ids: list[str | None] = [None] * count
    if project.batch_tasks:
        share = BATCH_MEMBER_SHARE / len(project.batch_tasks)
        batch_ids = rng.choices(
            [None, *project.batch_tasks],
            weights=[1 - BATCH_MEMBER_SHARE] + [share] * len(project.batch_tasks),
            k=count,
        )
    id_hex = rng.randbytes(16 * count).hex()
    spacing = max(1, HISTORY_MS // max(count, 1))
    oldest = project.now_ms - HISTORY_MS
    tasks = []
    for index, state, vendor, algorithm, group, deployment, batch_id in zip(
        range(count), states, vendors, algorithms, groups, deployments, batch_ids, strict=True
    ):
        task_id = id_hex[32 * index : 32 * index + 32]
        # strictly increasing: the jitter stays below the spacing
        created = oldest + index * spacing + int(rng.random() * spacing)
        if batch_id is not None:
            batch = project.batch_tasks[batch_id]
            vendor, algorithm, group, deployment = (
                batch.vendor,
                batch.algorithm,
                batch.video_group,
                batch.deployment,
            )
        code, message = ERRORS.get(state, (None, None))
        tasks.append(
            SimTask(
                task_id,
                f"{algorithm}-{group}-{index:06d}",
                state,
                vendor,
                algorithm,
                deployment,
                code,
                message,
                batch_id,
                created,
                created,
                group,
            )
        )
    return tasks
