"""The simulated account itself: seeded generation, scenario steps, staging helpers."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from exporter.simulator import ProjectData, World
from exporter.simulator.world import ERRORS, FAILED_STATES, HEALTHY_STATES

from .helpers import small_world

UNHEALTHY = set(ERRORS)


def unhealthy(project: ProjectData) -> int:
    return sum(task.state in UNHEALTHY for task in project.tasks.values())


def snapshot(world: World) -> dict[str, object]:
    return {
        pid: (p.truth(), [(t.created_at_ms, t.updated_at_ms, t.name) for t in p.tasks.values()])
        for pid, p in world.projects.items()
    }


def test_same_seed_same_world_and_steps() -> None:
    first, second = small_world(seed=5), small_world(seed=5)
    assert snapshot(first) == snapshot(second)
    for _ in range(5):
        first.step()
        second.step()
    assert snapshot(first) == snapshot(second)
    assert snapshot(small_world(seed=6)) != snapshot(small_world(seed=5))


def test_a_project_does_not_depend_on_the_others() -> None:
    alone = World.generate(
        seed=3,
        project_ids=["p1"],
        tasks_per_project=120,
        batch_tasks_per_project=3,
        face_edge_tasks_per_project=25,
    )
    assert alone.projects["p1"].truth() == small_world(seed=3).projects["p1"].truth()


def test_generated_mix() -> None:
    project = World.generate(seed=1, project_ids=["p"], tasks_per_project=2000).projects["p"]
    tasks = list(project.tasks.values())
    states = Counter(task.state for task in tasks)
    assert states["RUNNING"] > 0.7 * len(tasks)
    assert {"STOPPED", "PENDING", "SUCCEEDED", "ABNORMAL", "FAILED"} <= set(states)
    assert 0.6 < sum(task.deployment == "cloud" for task in tasks) / len(tasks) < 0.8
    assert all(len(task.id) == 32 and int(task.id, 16) >= 0 for task in tasks)
    assert len({task.vendor for task in tasks}) >= 4
    assert len({task.algorithm for task in tasks}) >= 5
    for task in tasks:
        assert (task.state in UNHEALTHY) == (task.error_code is not None)
        assert task.error_code is None or task.error_code.startswith("VIAS.")


def test_batch_tasks_group_their_members() -> None:
    project = small_world().projects["p1"]
    members = [task for task in project.tasks.values() if task.batch_id is not None]
    assert members
    for batch in project.batch_tasks.values():
        assert sorted(batch.task_ids) == sorted(t.id for t in members if t.batch_id == batch.id)
        counts = batch.status_counts()
        assert sum(counts.values()) == len(batch.task_ids)
        assert all(state.islower() and n > 0 for state, n in counts.items())
        for task_id in batch.task_ids:
            task = project.tasks[task_id]
            assert (task.vendor, task.algorithm, task.deployment) == (
                batch.vendor,
                batch.algorithm,
                batch.deployment,
            )


def test_healthy_scenario_stays_healthy() -> None:
    world = small_world("healthy")
    for _ in range(30):
        world.step()
    for project in world.projects.values():
        assert {task.state for task in project.tasks.values()} <= set(HEALTHY_STATES)
        assert {job.state for job in project.face_edge_tasks.values()} <= {"RUNNING", "STOPPED"}


def test_demo_scenario_breaks_recovers_creates_and_fails() -> None:
    world = small_world("demo")
    project = world.projects["p1"]
    before = dict(project.tasks)
    went_abnormal = recovered = 0
    for _ in range(20):
        states = {tid: t.state for tid, t in project.tasks.items()}
        world.step()
        for tid, task in project.tasks.items():
            went_abnormal += states.get(tid) == "RUNNING" and task.state == "ABNORMAL"
            recovered += states.get(tid) == "ABNORMAL" and task.state == "RUNNING"
    new = [task for tid, task in project.tasks.items() if tid not in before]
    assert went_abnormal >= 20 and recovered > 0
    assert sum(task.state == "RUNNING" for task in new) >= 15
    failed = [task for task in new if task.state in FAILED_STATES]
    assert failed and all(task.error_code and task.error_message for task in failed)
    assert world.now_ms == small_world().now_ms + 20 * 15_000
    assert all(task.created_at_ms > max(t.created_at_ms for t in before.values()) for task in new)


def test_incident_scenario_gets_worse_every_step() -> None:
    world = small_world("incident")
    project = world.projects["p1"]

    def gauges() -> tuple[int, int, int, int]:
        batch_counts = [b.status_counts() for b in project.batch_tasks.values()]
        return (
            unhealthy(project),
            sum(c.get("abnormal", 0) + c.get("failed", 0) for c in batch_counts),
            sum(job.state == "ABNORMAL" for job in project.face_edge_tasks.values()),
            len(project.ids_in_state("LACK_OF_RESOURCES")),
        )

    for _ in range(3):
        jobs, batch_members, face_edge, lacking = gauges()
        world.step()
        after = gauges()
        assert after[0] >= jobs + 5
        assert after[1] > batch_members
        assert after[2] > face_edge
        assert after[3] > lacking


def test_staging_helpers() -> None:
    project = small_world().projects["p1"]
    batch = project.add_batch_task(name="staged", vendor="dahua", algorithm="intrusion")
    task = project.add_task(
        state="PENDING",
        vendor="dahua",
        algorithm="intrusion",
        batch_id=batch.id,
        task_id="t-1",
        name="staged job",
    )
    assert project.newest_first(0, 1) == [task]
    assert batch.status_counts() == {"pending": 1}
    changed = project.set_state("t-1", "ABNORMAL", error_code="VIAS.10010002")
    assert changed is project.tasks["t-1"] and changed is not task  # replaced, not mutated
    assert changed.error_message == ERRORS["ABNORMAL"][1]
    assert project.set_state("t-1", "FAILED", "VIAS.99999999").error_message == "The job failed."
    assert project.set_state("t-1", "RUNNING").error_code is None
    project.delete_task("t-1")
    assert "t-1" not in project.tasks and batch.task_ids == []
    assert all(t.id != "t-1" for t in project.newest_first(0, 1000))
    job = project.add_face_edge_task(state="STOPPED", task_id="f-1")
    project.set_face_edge_state("f-1", "ABNORMAL")
    assert job.state == "ABNORMAL" and job.created_at.endswith("Z")


def test_listing_order_is_newest_first_and_pages_tile() -> None:
    project = small_world().projects["p1"]
    old = project.add_task(task_id="old", created_at_ms=0)
    listing = project.newest_first(0, 10_000)
    assert [t.created_at_ms for t in listing] == sorted(
        (t.created_at_ms for t in listing), reverse=True
    )
    assert listing[-1] is old and len(listing) == len(project.tasks)
    pages = [t for start in range(0, 200, 7) for t in project.newest_first(start, start + 7)]
    assert pages == listing


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="scenario"):
        World.generate(scenario="chaos")  # type: ignore[arg-type]


def test_generation_is_fast() -> None:
    started = time.process_time()
    world = World.generate(seed=1, project_ids=["p"], tasks_per_project=100_000)
    world.step()
    assert time.process_time() - started < 3.0
    assert len(world.projects["p"].tasks) >= 100_000
