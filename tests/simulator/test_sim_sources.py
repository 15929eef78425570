"""The simulated cameras and video groups: deterministic from the world's seed, healthy in
the healthy scenario, and the admin route refusing a bad change."""

from __future__ import annotations

import aiohttp

from exporter.simulator import Scenario, World
from exporter.simulator.sources import SourceBook
from tests.support import RunningSimulator


def _world(seed: int, scenario: Scenario = "demo") -> World:
    return World.generate(
        seed=seed, project_ids=["p1", "p2"], tasks_per_project=50, scenario=scenario
    )


def _cameras(book: SourceBook, project_id: str) -> list[tuple[str, str, str, int, list[str]]]:
    return [
        (s.id, s.name, s.status_name, s.num_tasks, s.quality)
        for s in book.of(project_id).sources.values()
    ]


def test_generation_is_deterministic_per_seed_and_project() -> None:
    assert _cameras(SourceBook(_world(1)), "p1") == _cameras(SourceBook(_world(1)), "p1")
    ids = [camera[0] for camera in _cameras(SourceBook(_world(1)), "p1")]
    assert ids != [camera[0] for camera in _cameras(SourceBook(_world(2)), "p1")]
    assert _cameras(SourceBook(_world(1)), "p1") != _cameras(SourceBook(_world(1)), "p2")


def test_the_demo_has_every_kind_of_problem_and_healthy_has_none() -> None:
    demo = _cameras(SourceBook(_world(1)), "p1")
    assert any(status == "offline" and jobs > 0 for _, _, status, jobs, _ in demo)
    assert any(status == "abnormal" for _, _, status, _, _ in demo)
    assert any(quality for *_, quality in demo)
    healthy = _cameras(SourceBook(_world(1, "healthy")), "p1")
    assert {status for _, _, status, _, _ in healthy} == {"online"}
    assert not any(quality for *_, quality in healthy)


async def test_a_bad_change_is_refused(simulator: RunningSimulator) -> None:
    camera = next(iter(simulator.sim.video_sources.of("p1").sources))
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{simulator.url}/_sim/sources/p1/{camera}", json={"num_tasks": "many"}
        ) as response,
    ):
        assert response.status == 400
