"""The video-source list: its model's quirks, aggregation and the cap on named problem
sources, its golden exposition, and the list over real HTTP against the simulator (paging
with `is_paged`, the page bounds, an undocumented status, faults).

| change to the code (tried, seen red) | failing test |
|---|---|
| `is_paged` not sent | test_paged_listing_over_http, test_golden |
| page_size 250 (over the bound) | test_paged_listing_over_http |
| `count` read from `video_source_number` | test_page_count_is_the_total_not_the_page |
| undocumented status turned "unknown" | test_status_variants, test_an_undocumented_... |
| down sources with jobs not ranked first | test_the_cap_keeps_down_sources_with_jobs_first |
| a source listed twice counted twice | test_the_cap_keeps_..., test_golden |
| quality kinds kept as sent (`blurry`) | test_quality_kinds_..., test_golden |
| simulator: `is_paged` defaulting to true | test_the_simulator_pages_only_with_is_paged... |
| problem cameras dropped once stale | test_a_failing_list_leaves_the_others_intact |
| counts shown however stale | test_a_failing_list_leaves_the_others_intact |
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from exporter.lists.base import PollContext
from exporter.lists.video_sources import (
    VIDEO_SOURCES,
    ListedSource,
    VideoSource,
    VideoSourceAggregator,
    VideoSourcePage,
    normalize_status,
)
from exporter.models import parse_model
from exporter.service import Exporter
from exporter.simulator import Fault, sources
from tests.lists.golden import assert_golden
from tests.support import TOKEN, RunningSimulator, Samples, make_config, target


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ({"status": 1, "name": "Online", "level": "normal"}, "online"),
        ({"status": "2"}, "offline"),
        ({"status": 9, "name": "whatever"}, "abnormal"),
        ({"name": "OFFLINE"}, "offline"),
        ({"status": 5, "name": "Upgrading"}, "upgrading"),  # undocumented: kept
        ({"status": 7}, "7"),
        ("abnormal", "abnormal"),
        (2, "offline"),
        ({}, "unknown"),
        (None, "unknown"),
    ],
)
def test_status_variants(raw: Any, label: str) -> None:
    assert normalize_status(raw) == label
    assert VideoSource.model_validate({"status": raw}).status == label


def test_quality_kinds_take_the_documented_spelling_and_unknown_ones_stay() -> None:
    source = VideoSource.model_validate(
        {"video_source_quality": ["blurry", {"name": "BLACKSCREEN"}, "Fog", "Blurry", ""]}
    )
    assert source.quality == ("BlackScreen", "Blurry", "Fog")
    assert VideoSource.model_validate({"video_source_quality": None}).quality == ()


def test_page_count_is_the_total_not_the_page() -> None:
    body = b"""{"video_source_number": 1, "total_number": "450", "quota_number": 500,
      "video_source_list": [{"video_source_id": "a", "access_type": "1", "num_tasks": "x"}]}"""
    page = parse_model(VideoSourcePage, body, "x")
    assert page.count == 450
    (item,) = page.items
    assert (item.id, item.quota, item.source.access_type, item.source.num_tasks) == (
        "a",
        500,
        "edge",
        None,
    )


def _listed(source_id: str, status: int, num_tasks: int = 0, **fields: Any) -> ListedSource:
    source = VideoSource.model_validate(
        {"video_source_id": source_id, "status": {"status": status}, "num_tasks": num_tasks}
        | fields
    )
    return ListedSource(source, None)


async def test_the_cap_keeps_down_sources_with_jobs_first() -> None:
    aggregator = VideoSourceAggregator(PollContext(previous=None, problem_tasks_limit=2, now=1.0))
    aggregator.add(
        [
            _listed("a", 1, video_source_quality=["Blurry"]),
            _listed("b", 2),
            _listed("c", 9, num_tasks=1),
            _listed("d", 1, num_tasks=5),
        ]
    )
    aggregator.add([_listed("c", 9, num_tasks=1)])  # listed twice: counted once
    data = await aggregator.finish()
    assert [p.video_source_id for p in data.problem_sources] == ["c", "b"]
    assert data.problem_sources_dropped == 1
    assert data.item_count == 4
    assert data.problem_tasks == () and data.problem_tasks_dropped == 0  # not jobs
    assert dict(data.status_counts[("", "")]) == {"online": 2, "offline": 1, "abnormal": 1}
    assert dict(data.quality_counts) == {"Blurry": 1}


async def test_golden() -> None:
    await assert_golden(VIDEO_SOURCES)


# --- over real HTTP against the simulator ---


async def _raw(simulator: RunningSimulator, **params: str) -> tuple[int, dict[str, Any]]:
    url = simulator.url + "/v2/p1/source/sources"
    async with (
        aiohttp.ClientSession(headers={"X-Auth-Token": TOKEN}) as session,
        session.get(url, params=params) as response,
    ):
        return response.status, await response.json()


async def _poll(simulator: RunningSimulator, sources_: list[str]) -> Samples:
    config = make_config([target(simulator.url, sources=sources_)], max_retries=0)
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        exporter.exposition.render()
        return Samples.parse(exporter.exposition.body(openmetrics=False, gzipped=False).decode())


def _big(simulator: RunningSimulator, count: int) -> sources.ProjectSources:
    project = sources.generate(simulator.world.projects["p1"], count=count)
    simulator.sim.video_sources.projects["p1"] = project
    return project


async def test_the_simulator_pages_only_with_is_paged_and_refuses_out_of_bounds(
    simulator: RunningSimulator,
) -> None:
    _big(simulator, 450)
    status, body = await _raw(simulator, page_size="5")  # is_paged defaults to false
    assert status == 200
    assert (body["video_source_number"], body["total_number"]) == (450, 450)
    status, body = await _raw(simulator, is_paged="true", page_num="3", page_size="200")
    assert (status, body["video_source_number"], body["total_number"]) == (200, 50, 450)
    for bad in ({"page_size": "4"}, {"page_size": "201"}, {"page_num": "100001"}):
        status, body = await _raw(simulator, is_paged="true", **bad)
        assert (status, body["error_code"]) == (400, "VIAS.00010001"), bad


async def test_paged_listing_over_http(simulator: RunningSimulator) -> None:
    project = _big(simulator, 450)
    samples = await _poll(simulator, ["video_sources"])
    calls = [r.query for r in simulator.sim.requests if r.path == "/v2/p1/source/sources"]
    assert calls == [
        {"is_paged": "true", "page_num": str(n), "page_size": "200"} for n in (1, 2, 3)
    ]
    assert sum(samples.series("vias_video_sources", project_id="p1").values()) == 450
    assert samples.value("vias_poll_items", project_id="p1", source="video_sources") == 450
    assert samples.value("vias_video_source_quota", project_id="p1") == project.quota
    down = {s.id for s in project.sources.values() if s.status_name in ("offline", "abnormal")}
    named = {
        dict(labels)["video_source_id"]
        for labels in samples.series("vias_video_source_problem_info", project_id="p1")
    }
    assert down <= named


async def test_cameras_carry_the_names_jobs_give_them(simulator: RunningSimulator) -> None:
    project = simulator.world.projects["p1"]
    job_cameras = {f"camera-{task_id[:6]}" for task_id in project.tasks}
    names = {s.name for s in simulator.sim.video_sources.of("p1").sources.values()}
    assert len(names & job_cameras) >= len(names) // 2


async def test_an_undocumented_status_and_a_changed_camera_show(
    simulator: RunningSimulator,
) -> None:
    project = simulator.sim.video_sources.of("p1")
    online = [s for s in project.sources.values() if s.status_name == "online" and not s.quality]
    first, second = online[0], online[1]
    async with aiohttp.ClientSession() as session:
        for source_id, body in (
            (first.id, {"status": {"status": 7, "name": "Connecting", "level": "info"}}),
            (second.id, {"status": "offline", "num_tasks": 4, "quality": ["SnowNoise"]}),
        ):
            url = f"{simulator.url}/_sim/sources/p1/{source_id}"
            async with session.put(url, json=body) as response:
                assert response.status == 200
    samples = await _poll(simulator, ["video_sources"])
    connecting = samples.series("vias_video_sources", project_id="p1", status="connecting")
    assert sum(connecting.values()) == 1
    assert samples.value("vias_video_source_quality_problems", project_id="p1", problem="SnowNoise")
    tasks = samples.value(
        "vias_video_source_problem_tasks",
        project_id="p1",
        video_source_id=second.id,
        video_source_name=second.name,
    )
    assert tasks == 4


async def test_a_refused_page_bound_fails_only_this_list(
    simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "SOURCES_MAX_PAGE_SIZE", 100)  # a server refusing our page_size
    samples = await _poll(simulator, ["tasks", "video_sources", "video_groups"])
    assert samples.value("vias_up", project_id="p1", source="video_sources") == 0
    assert (
        samples.value(
            "vias_poll_errors_total", project_id="p1", source="video_sources", reason="client_error"
        )
        == 1
    )
    assert not samples.series("vias_video_sources")
    for other in ("tasks", "video_groups"):
        assert samples.value("vias_up", project_id="p1", source=other) == 1


async def test_a_failing_list_leaves_the_others_intact(simulator: RunningSimulator) -> None:
    """A 5xx on the camera list: its counts go once too old, its named problem cameras stay
    (their state is unknown, not recovered); the other lists are untouched."""
    now = [1000.0]
    config = make_config(
        [target(simulator.url, sources=["tasks", "video_sources", "video_groups"])],
        max_retries=0,
        max_age_intervals=1,
    )
    async with Exporter(config, clock=lambda: now[0]) as exporter:
        await exporter.poll_all_once()
        exporter.exposition.render()
        before = Samples.parse(exporter.exposition.body(openmetrics=False, gzipped=False).decode())
        simulator.sim.faults.add(Fault("server_error_json", match="/p1/source/sources"))
        now[0] += 61  # past the maximum age of one interval
        await exporter.poll_all_once()
        exporter.exposition.render()
        samples = Samples.parse(exporter.exposition.body(openmetrics=False, gzipped=False).decode())
    assert samples.value("vias_up", project_id="p1", source="video_sources") == 0
    errors = {"project_id": "p1", "source": "video_sources", "reason": "server_error"}
    assert samples.value("vias_poll_errors_total", **errors) == 1
    assert before.series("vias_video_sources") and not samples.series("vias_video_sources")
    named = samples.series("vias_video_source_problem_info", project_id="p1")
    assert named and named == before.series("vias_video_source_problem_info", project_id="p1")
    assert samples.value("vias_up", project_id="p1", source="tasks") == 1
    assert samples.value("vias_up", project_id="p1", source="video_groups") == 1
    assert samples.series("vias_video_group_sources", project_id="p1")
    assert samples.series("vias_tasks", project_id="p1")
