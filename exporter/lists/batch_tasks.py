"""`GET /v2/{project_id}/batch-tasks` (with `is_paged=true`): batch tasks, each a group of
jobs reported as counts per state. `count` is the total; pages of at most 200.

A batch task is one object with a few series, so its series stay while the source is down
(their state is unknown, not recovered), like the named problem jobs of the job lists.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import Field

from exporter.lists.base import (
    ListView,
    NoProblemJobs,
    Paging,
    PollContext,
    ViasList,
    documented_then_seen,
)
from exporter.lists.jobs import TASK_STATES
from exporter.models import ApiModel, Deployment, Items, OptionalText, Page, StateCounts, Text

# Batch tasks know one more state than jobs: pending after the service was redeployed.
BATCH_TASK_STATES: tuple[str, ...] = (*TASK_STATES, "STOPPED_NO_SERVICE")


class BatchTask(ApiModel):
    id: OptionalText = None
    name: Text = Field(default="", alias="batch_task_name")
    vendor: Text = Field(default="", alias="company")
    algorithm: Text = Field(default="", alias="alg_name")
    deployment: Deployment = Field(default="", alias="type")
    video_group: Text = Field(default="", alias="video_group_name")
    # `batch_task_status_info`: lower-case states with only the non-zero ones present.
    state_counts: StateCounts = Field(default_factory=dict, alias="batch_task_status_info")


class BatchTaskPage(Page[BatchTask]):
    batch_task_list: Items[BatchTask] = Field(default_factory=list)

    @property
    def items(self) -> list[BatchTask]:
        return self.batch_task_list


@dataclass(frozen=True, slots=True)
class BatchTaskSummary:
    batch_task_id: str
    name: str
    vendor: str
    algorithm: str
    deployment: str
    video_group: str
    state_counts: MappingProxyType[str, int]


@dataclass(frozen=True, slots=True)
class BatchData(NoProblemJobs):
    batch_tasks: tuple[BatchTaskSummary, ...]

    @property
    def item_count(self) -> int:
        return len(self.batch_tasks)


class BatchAggregator:
    """One summary per batch task; one listed twice (offset paging shifted) counts once;
    batch tasks without an id but with the same name are one series, summed."""

    def __init__(self, context: PollContext[BatchData]) -> None:
        self._seen_ids: set[str] = set()
        self._counts: dict[tuple[str, str], Counter[str]] = {}
        self._first: dict[tuple[str, str], BatchTask] = {}

    def add(self, batch_tasks: Sequence[BatchTask]) -> None:
        for batch in batch_tasks:
            if batch.id is not None:
                if batch.id in self._seen_ids:
                    continue
                self._seen_ids.add(batch.id)
            key = (batch.id or "", batch.name)
            self._first.setdefault(key, batch)
            self._counts.setdefault(key, Counter()).update(batch.state_counts)

    async def finish(self) -> BatchData:
        return BatchData(
            tuple(
                BatchTaskSummary(
                    batch_task_id=key[0],
                    name=first.name,
                    vendor=first.vendor,
                    algorithm=first.algorithm,
                    deployment=first.deployment,
                    video_group=first.video_group,
                    state_counts=MappingProxyType(dict(self._counts[key])),
                )
                for key, first in self._first.items()
            )
        )


def render_batch_tasks(views: Sequence[ListView[BatchData]]) -> Iterator[Metric]:
    keys = ["project_id", "batch_task_id", "batch_task_name"]
    tasks = GaugeMetricFamily(
        "vias_batch_task_tasks", "Tasks of each batch task by state.", labels=[*keys, "state"]
    )
    info = GaugeMetricFamily(
        "vias_batch_task_info",
        "1 per batch task; labels for joins.",
        labels=[*keys, "vendor", "algorithm", "deployment", "video_group"],
    )
    for view in views:
        for batch in view.data.batch_tasks:
            ids = [view.project_id, batch.batch_task_id, batch.name]
            info.add_metric(
                [*ids, batch.vendor, batch.algorithm, batch.deployment, batch.video_group], 1.0
            )
            for batch_state in documented_then_seen(BATCH_TASK_STATES, batch.state_counts):
                tasks.add_metric([*ids, batch_state], batch.state_counts.get(batch_state, 0))
    yield from (tasks, info)


BATCH_TASKS = ViasList[BatchTask, BatchData](
    name="batch_tasks",
    endpoint="/v2/{project_id}/batch-tasks",
    paging=Paging(
        end="total", page_size=200, page_param="page_num", extra_params={"is_paged": "true"}
    ),
    page_model=BatchTaskPage,
    states=BATCH_TASK_STATES,
    aggregator=BatchAggregator,
    render=render_batch_tasks,
    polled_by_default=True,
)
