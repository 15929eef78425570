"""The simulated VIAS account: seeded jobs per project and scenario steps that change them.

Everything is deterministic given the seed: each project draws from its own
`random.Random`, so adding a project does not change the others.

Change jobs through `ProjectData` methods, never by assigning `SimTask` fields: the methods
replace the `SimTask` object, which is how the server notices a job changed (it caches each
job's JSON keyed by object identity).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import gc
import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

Scenario = Literal["demo", "healthy", "incident"]
Deployment = Literal["cloud", "edge"]

VENDORS = ("huawei", "hikvision", "dahua", "sensetime", "megvii")
ALGORITHMS = ("helmet_detection", "fire_smoke", "face_extraction", "license_plate", "intrusion")
VIDEO_GROUPS = ("east-gate", "warehouse", "parking-lot", "lobby", "loading-dock", "perimeter")
PRIORITIES = ("low", "medium", "high")
HEALTHY_STATES = ("RUNNING", "STOPPED", "PENDING", "SUCCEEDED", "STARTING")
FAILED_STATES = ("CREATE_FAILED", "START_FAILED", "FAILED")
ERRORS: dict[str, tuple[str, str]] = {
    "ABNORMAL": ("VIAS.10010002", "The video source is offline or the stream cannot be pulled."),
    "FAILED": ("VIAS.10030001", "The algorithm process exited unexpectedly."),
    "CREATE_FAILED": ("VIAS.10040001", "Failed to create the job: invalid job configuration."),
    "START_FAILED": ("VIAS.10030004", "The algorithm instance failed to start."),
    "LACK_OF_RESOURCES": ("VIAS.10020001", "Insufficient resources to schedule the job."),
}
GENERIC_ERROR_MESSAGE = "The job failed."

# Initial state mix (weights); "healthy" leaves the unhealthy states out.
_STATE_WEIGHTS: dict[str, int] = {
    "RUNNING": 800,
    "STOPPED": 80,
    "PENDING": 30,
    "SUCCEEDED": 40,
    "STARTING": 10,
    "ABNORMAL": 15,
    "FAILED": 10,
    "CREATE_FAILED": 5,
    "START_FAILED": 5,
    "LACK_OF_RESOURCES": 5,
}
_CLOUD_SHARE = 0.7
_DEPLOYMENTS: tuple[Deployment, Deployment] = ("cloud", "edge")
_BATCH_MEMBER_SHARE = 0.2
_HISTORY_MS = 90 * 24 * 3600 * 1000  # generated jobs were created over the last 90 days
TICK_MS = 15_000
DEFAULT_START_MS = 1_717_200_000_000  # 2024-06-01: fixed, so a seed always means one world


@dataclass(slots=True)
class SimTask:
    id: str
    name: str
    state: str
    vendor: str
    algorithm: str
    deployment: Deployment
    error_code: str | None
    error_message: str | None
    batch_id: str | None
    created_at_ms: int
    updated_at_ms: int
    video_group: str


@dataclass(slots=True)
class SimBatchTask:
    id: str
    name: str
    vendor: str
    algorithm: str
    deployment: Deployment
    video_group: str
    created_at_ms: int
    priority: str
    task_ids: list[str]
    tasks: Mapping[str, SimTask] = field(repr=False, compare=False)  # the project's jobs

    def status_counts(self) -> dict[str, int]:
        """Member jobs per lower-case state; states without members are left out."""
        return dict(Counter(self.tasks[task_id].state.lower() for task_id in self.task_ids))


@dataclass(slots=True)
class SimFaceEdgeTask:
    id: str
    name: str
    state: str
    created_at: str  # ISO 8601, as this endpoint sends it
    updated_at: str
    edge_pool_id: str
    camera_id: str


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
            error_message=_message(error_code, error_message),
            batch_id=batch_id,
            created_at_ms=created,
            updated_at_ms=created,
            video_group=video_group,
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
            error_message=_message(error_code, error_message),
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
        self, *, state: str = "RUNNING", name: str | None = None, task_id: str | None = None
    ) -> SimFaceEdgeTask:
        task_id = task_id or self.new_id()
        now = iso(self.now_ms)
        task = SimFaceEdgeTask(
            id=task_id,
            name=name or f"face-edge-{task_id[:8]}",
            state=state,
            created_at=now,
            updated_at=now,
            edge_pool_id=f"pool-{task_id[8:16]}",
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
        with _gc_paused():
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
            _STEPS[self.scenario](project)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of new objects would otherwise trigger full collections again and again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _message(error_code: str | None, error_message: str | None) -> str | None:
    if error_code is None or error_message is not None:
        return error_message
    return next((m for code, m in ERRORS.values() if code == error_code), GENERIC_ERROR_MESSAGE)


def _populate(
    project: ProjectData, tasks: int, batches: int, face_edge: int, *, healthy_only: bool
) -> None:
    rng = project.rng
    for number in range(batches):
        project.add_batch_task(
            name=f"batch-{number:03d}",
            vendor=rng.choice(VENDORS),
            algorithm=rng.choice(ALGORITHMS),
            deployment="cloud" if rng.random() < _CLOUD_SHARE else "edge",
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
    weights = {s: w for s, w in _STATE_WEIGHTS.items() if not healthy_only or s in HEALTHY_STATES}
    states = rng.choices(list(weights), weights=list(weights.values()), k=count)
    vendors = rng.choices(VENDORS, k=count)
    algorithms = rng.choices(ALGORITHMS, k=count)
    groups = rng.choices(VIDEO_GROUPS, k=count)
    deployments = rng.choices(_DEPLOYMENTS, cum_weights=[_CLOUD_SHARE, 1.0], k=count)
    batch_ids: list[str | None] = [None] * count
    if project.batch_tasks:
        share = _BATCH_MEMBER_SHARE / len(project.batch_tasks)
        batch_ids = rng.choices(
            [None, *project.batch_tasks],
            weights=[1 - _BATCH_MEMBER_SHARE] + [share] * len(project.batch_tasks),
            k=count,
        )
    id_hex = rng.randbytes(16 * count).hex()
    spacing = max(1, _HISTORY_MS // max(count, 1))
    oldest = project.now_ms - _HISTORY_MS
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


def _new_job(project: ProjectData, state: str) -> None:
    rng = project.rng
    code, message = ERRORS.get(state, (None, None))
    project.add_task(
        state=state,
        vendor=rng.choice(VENDORS),
        algorithm=rng.choice(ALGORITHMS),
        deployment="cloud" if rng.random() < _CLOUD_SHARE else "edge",
        video_group=rng.choice(VIDEO_GROUPS),
        error_code=code,
        error_message=message,
    )


def _break(project: ProjectData, task_ids: Sequence[str], count: int, state: str) -> None:
    """Move `count` random jobs out of `task_ids` into an unhealthy `state`."""
    code, message = ERRORS[state]
    for task_id in project.rng.sample(task_ids, min(count, len(task_ids))):
        project.set_state(task_id, state, code, message)


def _flip_face_edge(project: ProjectData, frm: str, to: str) -> None:
    candidates = [t.id for t in project.face_edge_tasks.values() if t.state == frm]
    if candidates:
        project.set_face_edge_state(project.rng.choice(candidates), to)


def _step_demo(project: ProjectData) -> None:
    """A living account: a few jobs break and recover, new ones start or fail."""
    rng = project.rng
    running = project.ids_in_state("RUNNING")
    _break(project, running, rng.randint(1, 3), "ABNORMAL")
    for task_id in project.ids_in_state("ABNORMAL"):
        if rng.random() < 0.3:
            project.set_state(task_id, "RUNNING")
    _new_job(project, "RUNNING")
    if rng.random() < 0.5:
        _new_job(project, rng.choice(FAILED_STATES))
    if len(running) > 0.6 * len(project.tasks) and rng.random() < 0.2:
        _break(project, running, 1, "LACK_OF_RESOURCES")
    if project.tasks and rng.random() < 0.1:
        project.delete_task(rng.choice(list(project.tasks)))
    if rng.random() < 0.2:
        frm, to = rng.choice((("RUNNING", "ABNORMAL"), ("ABNORMAL", "RUNNING")))
        _flip_face_edge(project, frm, to)


def _step_healthy(project: ProjectData) -> None:
    """Only healthy churn: jobs stop and start, new jobs run."""
    rng = project.rng
    frm, to = rng.choice((("RUNNING", "STOPPED"), ("STOPPED", "RUNNING")))
    candidates = project.ids_in_state(frm)
    if candidates:
        project.set_state(rng.choice(candidates), to)
    if rng.random() < 0.5:
        _new_job(project, "RUNNING")


def _step_incident(project: ProjectData) -> None:
    """Things go wrong fast enough for every alert to fire."""
    rng = project.rng
    running = project.ids_in_state("RUNNING")
    _break(project, running, max(3, len(running) // 50), "ABNORMAL")
    running = project.ids_in_state("RUNNING")
    _break(project, running, max(1, len(running) // 200), "LACK_OF_RESOURCES")
    for _ in range(2):
        _new_job(project, rng.choice(FAILED_STATES))
    if project.batch_tasks:
        batch = project.batch_tasks[rng.choice(list(project.batch_tasks))]
        members = [i for i in batch.task_ids if project.tasks[i].state == "RUNNING"]
        _break(project, members, 1, "ABNORMAL")
        _break(project, [i for i in members if project.tasks[i].state == "RUNNING"], 1, "FAILED")
    _flip_face_edge(project, "RUNNING", "ABNORMAL")


_STEPS: dict[str, Callable[[ProjectData], None]] = {
    "demo": _step_demo,
    "healthy": _step_healthy,
    "incident": _step_incident,
}
