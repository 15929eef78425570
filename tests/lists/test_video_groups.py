"""The video-group list: its model's quirks, its golden exposition, and the list over real
HTTP against the simulator (paging past one page, counts that follow the cameras).

| change to the code (tried, seen red) | failing test |
|---|---|
| a missing `num_offline` exported as 0 | test_missing_counts_stay_missing, test_golden |
| groups not de-duplicated | test_golden |
| `is_paged` not sent (one unpaged answer) | test_groups_over_several_pages |
| simulator: `num_exception` always 0 | test_group_counts_follow_the_cameras |
"""

from __future__ import annotations

from collections import Counter

import aiohttp

from exporter.lists.base import PollContext
from exporter.lists.video_groups import VIDEO_GROUPS, VideoGroupAggregator, VideoGroupPage
from exporter.models import parse_model
from exporter.service import Exporter
from exporter.simulator import sources
from tests.lists.golden import assert_golden
from tests.support import RunningSimulator, Samples, make_config, target


async def test_missing_counts_stay_missing() -> None:
    body = b"""{"video_group_number": 1, "total_number": 9, "quota_number": "20",
      "video_group_list": [{"video_group_id": "g", "video_group_name": "n",
        "group_status": {"num_online": "4", "num_exception": null}, "access_type": "1"}]}"""
    page = parse_model(VideoGroupPage, body, "x")
    assert page.count == 9
    aggregator = VideoGroupAggregator(PollContext(previous=None, problem_tasks_limit=1, now=1.0))
    aggregator.add(page.items)
    data = await aggregator.finish()
    (group,) = data.groups
    assert (group.sources, group.access_type, data.quota) == ((("online", 4),), "edge", 20)


async def test_golden() -> None:
    await assert_golden(VIDEO_GROUPS)


async def _poll(simulator: RunningSimulator) -> Samples:
    config = make_config([target(simulator.url, sources=["video_groups"])], max_retries=0)
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        exporter.exposition.render()
        return Samples.parse(exporter.exposition.body(openmetrics=False, gzipped=False).decode())


async def test_groups_over_several_pages(simulator: RunningSimulator) -> None:
    project = sources.generate(simulator.world.projects["p1"], count=4100)  # 208 groups
    simulator.sim.video_sources.projects["p1"] = project
    samples = await _poll(simulator)
    calls = [r.query for r in simulator.sim.requests if r.path == "/v2/p1/video-group/groups"]
    assert calls == [{"is_paged": "true", "page_num": str(n), "page_size": "200"} for n in (1, 2)]
    assert samples.value("vias_video_groups", project_id="p1") == len(project.groups) == 208
    assert samples.value("vias_video_group_quota", project_id="p1") == project.group_quota
    assert len(samples.series("vias_video_group_info", project_id="p1")) == 208


async def test_group_counts_follow_the_cameras(simulator: RunningSimulator) -> None:
    project = simulator.sim.video_sources.of("p1")
    camera = next(s for s in project.sources.values() if s.status_name == "online")
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{simulator.url}/_sim/sources/p1/{camera.id}", json={"status": "offline"}),
    ):
        pass
    samples = await _poll(simulator)
    exported: Counter[str] = Counter()
    for labels, value in samples.series("vias_video_group_sources", project_id="p1").items():
        exported[dict(labels)["status"]] += int(value)
    statuses = Counter(s.status_name for s in project.sources.values())
    assert exported == {
        "online": statuses["online"],
        "offline": statuses["offline"],
        "exception": statuses["abnormal"],
    }
    group = project.groups[camera.group_id]
    offline = samples.value(
        "vias_video_group_sources",
        project_id="p1",
        video_group_id=group.id,
        video_group_name=group.name,
        status="offline",
    )
    assert offline == sum(
        1 for s in project.sources.values() if s.group_id == group.id and s.status_name == "offline"
    )
