"""Correlated incidents: a camera, an edge pool or an algorithm service goes down and the
jobs on it go ABNORMAL a step later, served with the labels that tie them together; the
demo has them now and then, deterministically."""

from __future__ import annotations

from typing import Any

from exporter.simulator import World
from exporter.simulator.incidents import DOWN_STATE, UP_STATE

from .helpers import Live, make_sim, small_world


def _cause_state(live: Live, answer: dict[str, Any]) -> str:
    """The cause's state as its VIAS list serves it."""
    sim, project_id, cause_id = live.sim, "p1", answer["cause_id"]
    if answer["cause"] == "camera":
        return sim.video_sources.of(project_id).sources[cause_id].status_name
    resources = sim.resources.project(project_id)
    if answer["cause"] == "edge_pool":
        return resources.pools[cause_id].state
    return resources.services[cause_id].alg_status


async def _job_answers(live: Live, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The cause's jobs as their job list serves them."""
    if answer["cause"] == "edge_pool":
        reply = await live.get("/v2/p1/services/c-face-edge/tasks", params={"page_size": 100})
    else:
        reply = await live.get("/v2/p1/tasks", params={"page_size": 1000})
    assert reply.status == 200
    return [job for job in reply.json()["tasks"] if job["id"] in answer["task_ids"]]


async def test_a_cause_goes_down_then_its_jobs_and_recovers_after_them(live: Live) -> None:
    label = {"camera": "video_source_name", "edge_pool": "edge_pool_id", "service": "service_id"}
    for cause, cause_id in (
        ("camera", "cam-e2e"),
        ("edge_pool", "pool-e2e"),
        ("service", "svc-e2e"),
    ):
        path = f"/_sim/incidents/p1/{cause_id}"
        made = (await live.call("PUT", path, body={"cause": cause, "jobs": 5})).json()
        assert made["phase"] == "ready" and len(made["task_names"]) == 5
        assert _cause_state(live, made).lower() == UP_STATE[cause].lower()
        jobs = await _job_answers(live, made)
        assert {job["state"] for job in jobs} == {"RUNNING"} and len(jobs) == 5
        tie = made["cause_name"] if cause == "camera" else cause_id
        assert {job[label[cause]] for job in jobs} == {tie}, cause
        if cause == "camera":
            listed = (await live.get("/v2/p1/source/sources")).json()["video_source_list"]
            (camera,) = [c for c in listed if c["video_source_id"] == cause_id]
            assert (camera["video_source_name"], camera["num_tasks"]) == (tie, 5)
        again = await live.call("PUT", path, body={"cause": cause, "jobs": 3})
        assert again.json()["task_ids"] == made["task_ids"]  # kept as it was

        await live.call("POST", f"{path}/down")
        assert _cause_state(live, made).lower() == DOWN_STATE[cause].lower()
        assert {job["state"] for job in await _job_answers(live, made)} == {"RUNNING"}
        await live.call("POST", "/_sim/step")
        assert {job["state"] for job in await _job_answers(live, made)} == {"ABNORMAL"}
        await live.call("POST", "/_sim/step")  # stays down until told
        assert _cause_state(live, made).lower() == DOWN_STATE[cause].lower()

        await live.call("POST", f"{path}/recover")
        assert {job["state"] for job in await _job_answers(live, made)} == {"RUNNING"}
        assert _cause_state(live, made).lower() == DOWN_STATE[cause].lower()
        await live.call("POST", "/_sim/step")
        assert _cause_state(live, made).lower() == UP_STATE[cause].lower()


async def test_admin_refuses_a_bad_incident(live: Live) -> None:
    assert (await live.call("PUT", "/_sim/incidents/p1/x", body={"cause": "moon"})).status == 400
    assert (await live.call("PUT", "/_sim/incidents/p1/x", body={})).status == 400
    assert (await live.call("POST", "/_sim/incidents/p1/unknown/down")).status == 404
    assert (
        await live.call("PUT", "/_sim/incidents/nope/x", body={"cause": "camera"})
    ).status == 404


def _demo_run(steps: int) -> tuple[World, list[tuple[str, str, str, str]]]:
    """A served demo world stepped `steps` times: (step, cause, cause state, jobs' states)."""
    world = small_world("demo")
    sim = make_sim(world)
    seen: list[tuple[str, str, str, str]] = []
    for number in range(steps):
        world.step()
        for incident in sim.incidents.causes.values():
            project = world.projects[incident.project_id]
            jobs = project.face_edge_tasks if incident.cause == "edge_pool" else project.tasks
            states = ",".join(sorted({jobs[i].state for i in incident.task_ids}))
            seen.append((f"{number}/{incident.project_id}", incident.cause, incident.phase, states))
    return world, seen


def test_the_demo_has_incidents_now_and_then_deterministically() -> None:
    _, seen = _demo_run(200)
    assert seen == _demo_run(200)[1]
    assert {cause for _, cause, _, _ in seen} == {"camera", "edge_pool", "service"}
    phases = [(phase, states) for _, _, phase, states in seen]
    assert ("down", "RUNNING") in phases  # the cause first
    assert ("jobs_down", "ABNORMAL") in phases  # then its jobs
    assert ("recovering", "RUNNING") in phases  # the jobs back first, then the cause
    assert ("ready", "RUNNING") in phases
    at_once = {number for number, _, phase, _ in seen if phase != "ready"}
    assert len(at_once) == len(
        [1 for _, _, phase, _ in seen if phase != "ready"]
    )  # one a time per project
