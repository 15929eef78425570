"""Scenario steps: how the simulated account changes each tick (`demo`: jobs go ABNORMAL
and recover, new jobs fail; `healthy`: nothing breaks; `incident`: many jobs break)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from exporter.simulator.objects import (
    ALGORITHMS,
    CLOUD_SHARE,
    ERRORS,
    FAILED_STATES,
    VENDORS,
    VIDEO_GROUPS,
)

if TYPE_CHECKING:
    from exporter.simulator.world import ProjectData


def _new_job(project: ProjectData, state: str) -> None:
    rng = project.rng
    code, message = ERRORS.get(state, (None, None))
    project.add_task(
        state=state,
        vendor=rng.choice(VENDORS),
        algorithm=rng.choice(ALGORITHMS),
        deployment="cloud" if rng.random() < CLOUD_SHARE else "edge",
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


STEPS: dict[str, Callable[[ProjectData], None]] = {
    "demo": _step_demo,
    "healthy": _step_healthy,
    "incident": _step_incident,
}
