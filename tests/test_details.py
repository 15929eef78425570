"""The further calls a list's data needs: job details for the error codes of the named
problem jobs (infer_tasks, face_edge_tasks), within `detail_calls_per_poll`.

What is cached is what an answer said: a code, no code, or a 404 (the job is gone). A
refused, failed or skipped call says nothing about the job and is asked again later.

Break → failing test (each seen red once):
- any non-retryable failure cached as "" (as before) →
  test_a_refused_detail_call_is_asked_again
- a detail without `error` not cached →
  test_a_job_without_an_error_code_is_asked_once
- the cache keyed by job id alone →
  test_a_job_changing_problem_state_is_asked_again
- a 403 pausing the project rather than the endpoint →
  test_details_refused_with_403_pause_alone_and_the_listing_goes_on
"""

from __future__ import annotations

from typing import Any

from exporter.service import Exporter
from exporter.simulator import Fault, Simulator, World, run_simulator
from tests.support import make_config, make_simulator, target

DETAIL = "/v1/p1/infer/tasks/"
CODE = "VIAS.10010002"


def _detail_calls(sim: Simulator) -> list[str]:
    """The job ids whose details were asked for, since the last clear."""
    return [r.path.removeprefix(DETAIL) for r in sim.requests if r.path.startswith(DETAIL)]


def _world(lacking: int, failed: int) -> tuple[World, list[str], list[str]]:
    """40 healthy jobs, `lacking` of them then LACK_OF_RESOURCES (no error code) and
    `failed` FAILED with CODE."""
    world = World.generate(seed=3, tasks_per_project=40, scenario="healthy")
    project = world.projects["p1"]
    ids = sorted(project.tasks)
    lacking_ids, failed_ids = ids[:lacking], ids[lacking : lacking + failed]
    for task_id in lacking_ids:
        project.set_state(task_id, "LACK_OF_RESOURCES")
    for task_id in failed_ids:
        project.set_state(task_id, "FAILED", error_code=CODE)
    return world, lacking_ids, failed_ids


def _codes(exporter: Exporter) -> dict[str, str]:
    data: Any = exporter.store.current.sources[("p1", "infer_tasks")].data
    return {problem.task_id: problem.error_code for problem in data.problem_tasks}


async def test_a_job_without_an_error_code_is_asked_once() -> None:
    """A LACK_OF_RESOURCES job's detail has no `error`: that is an answer, kept while the
    job stays in that state, so the budget goes to jobs not asked yet. With a budget of 4
    and 6 problem jobs, the second poll asks for the 2 left, not the first 4 again."""
    world, lacking, failed = _world(lacking=4, failed=2)
    sim = make_simulator(world)
    async with run_simulator(sim) as url:
        config = make_config([target(url, sources=["infer_tasks"])], detail_calls_per_poll=4)
        async with Exporter(config) as exporter:
            await exporter.poll_all_once()
            first = _detail_calls(sim)
            assert len(first) == 4
            sim.requests.clear()
            world.projects["p1"].set_state(lacking[0], "LACK_OF_RESOURCES")  # a new listing
            await exporter.poll_all_once()
            assert sorted(_detail_calls(sim)) == sorted(set(lacking + failed) - set(first))
            sim.requests.clear()
            await exporter.poll_all_once()
            assert _detail_calls(sim) == []
            assert _codes(exporter) == {**dict.fromkeys(lacking, ""), **dict.fromkeys(failed, CODE)}


async def test_a_refused_detail_call_is_asked_again() -> None:
    """One 401 on the details endpoint says nothing of the job: its code is not blanked
    for good but asked again at the next poll (auth_backoff_seconds 0: no pause between)."""
    world, _, failed = _world(lacking=0, failed=3)
    sim = make_simulator(world)
    async with run_simulator(sim) as url:
        config = make_config(
            [target(url, sources=["infer_tasks"])], max_retries=0, auth_backoff_seconds=0
        )
        async with Exporter(config) as exporter:
            sim.faults.add(Fault("unauthorized", match=DETAIL, times=1))
            await exporter.poll_all_once()
            assert sorted(_codes(exporter).values()) == ["", CODE, CODE]
            sim.requests.clear()
            await exporter.poll_all_once()
            assert len(_detail_calls(sim)) == 1  # only the refused one, asked again
            assert _codes(exporter) == dict.fromkeys(failed, CODE)


async def test_a_deleted_job_is_not_asked_again() -> None:
    """A 404 on a job's detail is an answer (the job is gone since the listing)."""
    world, _, failed = _world(lacking=0, failed=2)
    sim = make_simulator(world)
    async with run_simulator(sim) as url:
        config = make_config([target(url, sources=["infer_tasks"])])
        async with Exporter(config) as exporter:
            sim.faults.add(Fault("server_error_html", match=DETAIL + failed[0], status=404))
            await exporter.poll_all_once()
            sim.requests.clear()
            world.projects["p1"].set_state(failed[1], "FAILED", error_code=CODE)
            await exporter.poll_all_once()
            assert _detail_calls(sim) == []


async def test_a_job_changing_problem_state_is_asked_again() -> None:
    """ABNORMAL with one code, then FAILED with another: the code shown is the new one."""
    world, _, failed = _world(lacking=0, failed=1)
    project = world.projects["p1"]
    project.set_state(failed[0], "ABNORMAL", error_code="VIAS.ABNORMAL")
    sim = make_simulator(world)
    async with run_simulator(sim) as url:
        config = make_config([target(url, sources=["infer_tasks"])])
        async with Exporter(config) as exporter:
            await exporter.poll_all_once()
            assert _codes(exporter) == {failed[0]: "VIAS.ABNORMAL"}
            project.set_state(failed[0], "FAILED", error_code=CODE)
            await exporter.poll_all_once()
            assert _codes(exporter) == {failed[0]: CODE}


async def test_details_refused_with_403_pause_alone_and_the_listing_goes_on() -> None:
    """No permission for job details: the details endpoint pauses (nothing sent to it at
    the next poll), the job listing is polled and shown all the same."""
    world, _, failed = _world(lacking=0, failed=3)
    sim = make_simulator(world)
    async with run_simulator(sim) as url:
        config = make_config([target(url, sources=["infer_tasks"])], max_retries=0)
        async with Exporter(config) as exporter:
            sim.faults.add(Fault("server_error_html", match=DETAIL, status=403))
            await exporter.poll_all_once()
            assert len(_detail_calls(sim)) == 1  # the refusal pauses the rest
            sim.requests.clear()
            world.projects["p1"].set_state(failed[0], "FAILED", error_code=CODE)
            state = await exporter.pollers[0].poll_once()
            assert state.up and _detail_calls(sim) == []
            assert [r.path for r in sim.requests] == ["/v1/p1/infer/tasks"]
            assert _codes(exporter) == dict.fromkeys(failed, "")
