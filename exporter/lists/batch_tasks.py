"""`GET /v2/{project_id}/batch-tasks` (with `is_paged=true`): batch tasks, each a group of
jobs reported as counts per state. `count` is the total; pages of at most 200.

A batch task is one object with a few series, so its series stay while the source is down
(their state is unknown, not recovered), like the named problem jobs of the job lists.

The cardinality budget: a batch task exports the states it has jobs in, and the problem
states always (0 when none, so that alerts on them keep a series); at most
`batch_task_series_limit` batch tasks per project have series, the most urgent first (jobs
in a problem state, the most urgent state first, then the most such jobs), the rest
counted in `vias_batch_task_series_dropped_total`. The cap is a budget of series, not a
loss of totals: `vias_project_batch_task_tasks` sums every batch task's tasks by state,
uncapped, as `vias_tasks` stands beside `vias_problem_task_info`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import Field

from exporter.lists.base import (
    PROBLEM_ORDER,
    ListView,
    NoProblemJobs,
    Paging,
    PollContext,
    ViasList,
    documented_then_seen,
)
from exporter.lists.jobs import PROBLEM_STATES, TASK_STATES
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
    # Those with series of their own (within the cap), in listing order.
    exported: tuple[BatchTaskSummary, ...]
    series_dropped_total: int = 0  # left out by the cap, summed over this source's polls

    @property
    def item_count(self) -> int:
        return len(self.batch_tasks)

    def state_totals(self) -> Counter[str]:
        """Tasks by state over every batch task, the ones the cap leaves out too."""
        totals: Counter[str] = Counter()
        for batch in self.batch_tasks:
            totals.update(batch.state_counts)
        return totals


def _urgency(batch: BatchTaskSummary) -> tuple[int, int, str, str]:
    """The order in which the cap keeps batch tasks: those with jobs in a problem state
    first, the most urgent state first, then the most such jobs; then by id and name."""
    problems = [state for state in PROBLEM_ORDER if batch.state_counts.get(state, 0) > 0]
    rank = PROBLEM_ORDER.index(problems[0]) if problems else len(PROBLEM_ORDER)
    jobs = sum(batch.state_counts[state] for state in problems)
    return (rank, -jobs, batch.batch_task_id, batch.name)


def within_budget(
    batch_tasks: Iterable[BatchTaskSummary], limit: int | None
) -> tuple[BatchTaskSummary, ...]:
    """The `limit` most urgent batch tasks, in their listing order."""
    listed = tuple(batch_tasks)
    if limit is None or len(listed) <= limit:
        return listed
    kept = {id(batch) for batch in sorted(listed, key=_urgency)[:limit]}
    return tuple(batch for batch in listed if id(batch) in kept)


class BatchAggregator:
    """One summary per batch task; one listed twice (offset paging shifted) counts once;
    batch tasks without an id but with the same name are one series, summed."""

    def __init__(self, context: PollContext[BatchData]) -> None:
        self._context = context
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
        batch_tasks = tuple(
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
        exported = within_budget(batch_tasks, self._context.batch_task_series_limit)
        previous = self._context.previous
        dropped = len(batch_tasks) - len(exported)
        return BatchData(
            batch_tasks,
            exported,
            dropped + (previous.series_dropped_total if previous is not None else 0),
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
    totals = GaugeMetricFamily(
        "vias_project_batch_task_tasks",
        "Tasks of all the project's batch tasks by state, whatever batch_task_series_limit "
        "leaves out: every documented state (0 when none) and any other seen.",
        labels=["project_id", "state"],
    )
    dropped = CounterMetricFamily(
        "vias_batch_task_series_dropped",
        "Batch tasks left without series by the per-project cap (batch_task_series_limit), "
        "added at every poll.",
        labels=["project_id"],
    )
    for view in views:
        for batch in view.data.exported:
            ids = [view.project_id, batch.batch_task_id, batch.name]
            info.add_metric(
                [*ids, batch.vendor, batch.algorithm, batch.deployment, batch.video_group], 1.0
            )
            counts = batch.state_counts
            for batch_state in documented_then_seen(BATCH_TASK_STATES, counts):
                count = counts.get(batch_state, 0)
                if count or batch_state in PROBLEM_STATES:
                    tasks.add_metric([*ids, batch_state], count)
        dropped.add_metric([view.project_id], view.data.series_dropped_total)
        if view.fresh:  # a sum over the batch tasks as last listed, like vias_tasks
            state_totals = view.data.state_totals()
            for batch_state in documented_then_seen(BATCH_TASK_STATES, state_totals):
                totals.add_metric([view.project_id, batch_state], state_totals[batch_state])
    yield from (tasks, info, totals, dropped)


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
    jobs=True,
    polled_by_default=True,
)
