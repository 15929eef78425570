"""`GET /v2/{project_id}/video-group/groups` (with `is_paged=true`): the project's video
groups, each with its sources online / in exception / offline (`group_status`).
`total_number` is the total, `quota_number` the project's group quota; pages of 5..200.

A group is one object with a few series, bounded by the group quota: each group has its
series (while the data is fresh), like batch tasks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import Field

from exporter.lists.base import ListView, NoProblemJobs, Paging, PollContext, ViasList
from exporter.lists.video_sources import Count, LowerText
from exporter.models import ApiModel, Deployment, Items, OptionalText, Page, Text

GROUP_SOURCE_STATUSES: tuple[str, ...] = ("online", "exception", "offline")


class GroupStatus(ApiModel):
    online: Count = Field(default=None, alias="num_online")
    exception: Count = Field(default=None, alias="num_exception")
    offline: Count = Field(default=None, alias="num_offline")


class VideoGroup(ApiModel):
    id: OptionalText = Field(default=None, alias="video_group_id")
    name: Text = Field(default="", alias="video_group_name")
    access_type: Deployment = ""
    type: LowerText = ""
    num_video_source: Count = None
    group_status: GroupStatus | None = None


@dataclass(frozen=True, slots=True)
class ListedGroup:
    """A group with the page's group quota (the aggregator sees items only)."""

    group: VideoGroup
    quota: int | None

    @property
    def id(self) -> str | None:
        return self.group.id


class VideoGroupPage(Page[ListedGroup]):
    count: Count = Field(default=None, alias="total_number")
    quota_number: Count = None
    video_group_list: Items[VideoGroup] = Field(default_factory=list)

    @property
    def items(self) -> list[ListedGroup]:
        return [ListedGroup(group, self.quota_number) for group in self.video_group_list]


@dataclass(frozen=True, slots=True)
class GroupSummary:
    video_group_id: str
    name: str
    access_type: str
    type: str
    # status -> sources; a count the answer left out is absent
    sources: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class VideoGroupData(NoProblemJobs):
    groups: tuple[GroupSummary, ...]
    quota: int | None

    @property
    def item_count(self) -> int:
        return len(self.groups)


class VideoGroupAggregator:
    """One summary per group id (offset paging can list one twice)."""

    def __init__(self, context: PollContext[VideoGroupData]) -> None:
        self._seen: set[str] = set()
        self._groups: list[GroupSummary] = []
        self._quota: int | None = None

    def add(self, items: Sequence[ListedGroup]) -> None:
        for item in items:
            group = item.group
            if item.quota is not None:
                self._quota = item.quota
            if group.id is not None:
                if group.id in self._seen:
                    continue
                self._seen.add(group.id)
            status = group.group_status or GroupStatus()
            counts = zip(
                GROUP_SOURCE_STATUSES,
                (status.online, status.exception, status.offline),
                strict=True,
            )
            self._groups.append(
                GroupSummary(
                    video_group_id=group.id or "",
                    name=group.name,
                    access_type=group.access_type,
                    type=group.type,
                    sources=tuple((s, n) for s, n in counts if n is not None),
                )
            )

    async def finish(self) -> VideoGroupData:
        return VideoGroupData(tuple(self._groups), self._quota)


def render_video_groups(views: Sequence[ListView[VideoGroupData]]) -> Iterator[Metric]:
    keys = ["project_id", "video_group_id", "video_group_name"]
    sources = GaugeMetricFamily(
        "vias_video_group_sources",
        "Video sources of each group by status (online, exception, offline).",
        labels=[*keys, "status"],
    )
    info = GaugeMetricFamily(
        "vias_video_group_info",
        "1 per video group; labels for joins.",
        labels=[*keys, "access_type", "type"],
    )
    groups = GaugeMetricFamily("vias_video_groups", "Video groups.", labels=["project_id"])
    quota = GaugeMetricFamily(
        "vias_video_group_quota", "The project's video-group quota.", labels=["project_id"]
    )
    for view in views:
        if not view.fresh:
            continue
        data = view.data
        groups.add_metric([view.project_id], data.item_count)
        if data.quota is not None:
            quota.add_metric([view.project_id], data.quota)
        for group in data.groups:
            ids = [view.project_id, group.video_group_id, group.name]
            info.add_metric([*ids, group.access_type, group.type], 1.0)
            for status, count in group.sources:
                sources.add_metric([*ids, status], count)
    yield from (sources, info, groups, quota)


VIDEO_GROUPS = ViasList[ListedGroup, VideoGroupData](
    name="video_groups",
    endpoint="/v2/{project_id}/video-group/groups",
    paging=Paging(
        end="total", page_size=200, page_param="page_num", extra_params={"is_paged": "true"}
    ),
    page_model=VideoGroupPage,
    states=GROUP_SOURCE_STATUSES,
    aggregator=VideoGroupAggregator,
    render=render_video_groups,
    # opt-in: a 403 for an IAM user without the right would pause the project (docs/metrics.md)
)
