"""What the job lists (v2 tasks, v1 infer tasks, c-face-edge tasks) share: the job state
vocabulary, the v2/v1 job model, aggregation into counts, problem jobs and transitions,
and the job metric families.

Vendor and algorithm: the SDK's v2 job list item carries `service_id` but no `company` (and
`title` may be empty). Such jobs are counted under their service as well (`JobGroup`, the
fourth element); `service_join.py` fills in the missing vendor and algorithm from the
project's algorithm services at render time, and the renderer sums the groups that come
out the same (the service is not a label).

Memory stays proportional to the number of jobs only through the compact index the next
poll needs for transitions (`jobindex.py`: sorted arrays of the job ids' hashes and
(state, group) codes, a few bytes a job), never to the pages.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import Field

from exporter.lists.base import (
    GONE,
    PROBLEM_ORDER,
    DetailAnswer,
    Details,
    GroupKey,
    ListView,
    PollContext,
    ProblemTask,
    documented_then_seen,
)
from exporter.lists.jobindex import (
    CompactJobIndex,
    IndexBuilder,
    JobGroup,
    JobIndex,
    Transition,
    counting_transitions,
)
from exporter.lists.jobproblems import ProblemShortlist
from exporter.models import (
    ApiModel,
    DeploymentCode,
    Items,
    OptionalText,
    Page,
    Text,
    normalize_deployment,
    state_type,
)

# The 17 states the /v2/tasks filter documents, in its order.
TASK_STATES: tuple[str, ...] = (
    "PENDING",
    "RECOVERING",
    "STARTING",
    "UPGRADING",
    "CREATE_FAILED",
    "START_FAILED",
    "RUNNING",
    "STOPPING",
    "STOPPED",
    "ABNORMAL",
    "SUCCEEDED",
    "FAILED",
    "DELETING",
    "FREEZING",
    "FROZEN",
    "SCHEDULING",
    "LACK_OF_RESOURCES",
)
PROBLEM_STATES: frozenset[str] = frozenset(PROBLEM_ORDER)
K = TypeVar("K")  # what groups are summed by: the exported group, or a completed one

if TYPE_CHECKING:
    State = str
else:
    State = state_type(TASK_STATES)


class Job(Protocol):
    """What aggregation needs of a job, whichever endpoint listed it."""

    @property
    def id(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def vendor(self) -> str: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def deployment(self) -> str: ...
    @property
    def error_code(self) -> str: ...
    @property
    def video_source_name(self) -> str: ...
    @property
    def edge_pool_id(self) -> str: ...
    @property
    def service_id(self) -> str: ...


class TaskError(ApiModel):
    code: Text = ""


class Task(ApiModel):
    """A job from /v2/tasks, /v1/infer/tasks or the /v1 job detail. Only what the metrics
    use is kept: a page of models is held in memory at a time."""

    id: OptionalText = None
    name: Text = ""
    state: State = "UNKNOWN"
    vendor: Text = Field(default="", alias="company")
    algorithm: Text = Field(default="", alias="title")
    # As sent ("0" in the real /v2 listing): mapped by `deployment`, where the aggregator
    # reads it, not by a validator (a Python call for each job of every page).
    type_code: DeploymentCode = Field(default="", alias="type")
    error: TaskError | None = None
    video_source_name: Text = ""
    service_id: Text = ""

    edge_pool_id: ClassVar[str] = ""  # not in the v1/v2 listings

    @property
    def deployment(self) -> str:
        return normalize_deployment(self.type_code)

    @property
    def error_code(self) -> str:
        return self.error.code if self.error else ""


class TaskPage(Page[Task]):
    tasks: Items[Task] = Field(default_factory=list)

    @property
    def items(self) -> list[Task]:
        return self.tasks


class TransitionCount(NamedTuple):
    total: int
    # Unix time the series first counted, exposed as its `_created` sample: it lets the
    # new-failure alert tell a series born minutes ago from one Prometheus has just met.
    created: float


@dataclass(frozen=True, slots=True)
class JobData:
    """One job list's aggregates from one complete listing, and what the next poll needs."""

    state_counts: Mapping[JobGroup, Mapping[str, int]]
    problem_tasks: tuple[ProblemTask, ...]
    problem_tasks_dropped: int
    item_count: int
    # The jobs of this listing, for the next poll's transitions: not part of what the data
    # shows, so not compared (equal data renders the same lines).
    index: JobIndex = field(compare=False)
    transitions: Mapping[Transition, TransitionCount]  # since the exporter started
    # Error codes fetched from the job detail endpoint, by (job id, state): kept while
    # the job stays in that state, so each problem job costs one detail call.
    detail_codes: Mapping[tuple[str, str], str] = field(default_factory=dict)


class JobAggregator:
    """Feed it pages of jobs with `add`; `finish` gives the list's data."""

    def __init__(self, context: PollContext[JobData]) -> None:
        self._context = context
        self._counts: dict[JobGroup, Counter[str]] = {}
        self._problems = ProblemShortlist(context.problem_tasks_limit)
        self._index = IndexBuilder()
        self._anonymous = 0

    def add(self, jobs: Iterable[Job]) -> None:
        counts, index = self._counts, self._index
        for job in jobs:
            vendor, algorithm = job.vendor, job.algorithm
            service = "" if vendor and algorithm else job.service_id
            code, (state, group) = index.intern(
                (job.state, (vendor, algorithm, job.deployment, service))
            )
            group_counts = counts.get(group)
            if group_counts is None:
                group_counts = counts[group] = Counter()
            group_counts[state] += 1
            # A job listed twice (offset paging shifted while jobs changed) is taken back
            # out when the index is sorted: the first listing counts.
            place = None
            if job.id is None:
                self._anonymous += 1
            else:
                place = index.add(hash(job.id), code)
            if state in PROBLEM_STATES:
                problem = ProblemTask(
                    job.id or "",
                    job.name,
                    state,
                    job.error_code,
                    (vendor, algorithm, job.deployment),
                    job.video_source_name,
                    job.edge_pool_id,
                    job.service_id,
                )
                self._problems.add(problem, place)

    async def _sorted_index(self, duplicates: set[tuple[int, int]]) -> CompactJobIndex:
        """The index, the later listings of a job (into `duplicates`) taken back out of the
        counts."""
        for index, found in self._index.finish():
            for bucket, position, code in found:
                duplicates.add((bucket, position))
                state, group = self._index.states[code]
                group_counts = self._counts[group]
                group_counts[state] -= 1
                if not group_counts[state]:
                    del group_counts[state]
                    if not group_counts:
                        del self._counts[group]
            if index is not None:
                return index
            await asyncio.sleep(0)  # scrapes go on while 1,000,000s of jobs are sorted
        raise AssertionError("IndexBuilder.finish ends with the index")

    async def finish(self) -> JobData:
        duplicates: set[tuple[int, int]] = set()
        index = await self._sorted_index(duplicates)
        previous = self._context.previous
        transitions = dict(previous.transitions) if previous else {}
        if previous is not None:
            # The first listing is a baseline: its jobs are not transitions.
            changes: Counter[Transition] = Counter()
            for _ in counting_transitions(previous.index, index, changes):
                await asyncio.sleep(0)  # scrapes go on while 100,000s of jobs are compared
            for transition, count in sorted(changes.items()):
                total, created = transitions.get(transition, (0, self._context.now))
                transitions[transition] = TransitionCount(total + count, created)
        kept, dropped = self._problems.finish(duplicates)
        return JobData(
            state_counts=MappingProxyType(
                {group: MappingProxyType(dict(c)) for group, c in self._counts.items()}
            ),
            problem_tasks=kept,
            problem_tasks_dropped=dropped,
            item_count=len(index) + self._anonymous,
            index=index,
            transitions=MappingProxyType(transitions),
        )


DETAIL_ENDPOINT = "/v1/{project_id}/infer/tasks/{task_id}"


def _codes_wanted(data: JobData, previous: JobData | None) -> Iterator[str]:
    """Listings without `error` (v1, c-face-edge): the named problem jobs whose detail has
    not answered in their present state yet, most urgent first."""
    known = previous.detail_codes if previous else {}
    for problem in data.problem_tasks:
        key = (problem.task_id, problem.state)
        if problem.task_id and not problem.error_code and key not in known:
            yield problem.task_id


def _with_codes(
    data: JobData, previous: JobData | None, answers: Mapping[str, DetailAnswer[Task]]
) -> JobData:
    """The codes the details gave, and those of earlier polls. What an answer said (a
    code, no code, a 404) is kept while the job stays in its state; a failed, refused or
    skipped call leaves the code empty for now, to be asked again."""
    known = previous.detail_codes if previous else {}
    codes: dict[tuple[str, str], str] = {}
    problems = []
    for problem in data.problem_tasks:
        key = (problem.task_id, problem.state)
        code = problem.error_code or known.get(key)
        answer = answers.get(problem.task_id) if code is None else None
        if answer == GONE:
            code = ""  # the job is gone since the listing
        elif isinstance(answer, Task):
            code = answer.error_code
        if code is not None:
            codes[key] = code
            problem = replace(problem, error_code=code)
        problems.append(problem)
    return replace(data, problem_tasks=tuple(problems), detail_codes=MappingProxyType(codes))


# The error codes of named problem jobs from the job detail endpoint, one call a job.
ERROR_CODE_DETAILS = Details[JobData, Task](
    endpoint=DETAIL_ENDPOINT,
    path_field="task_id",
    model=Task,
    wanted=_codes_wanted,
    complete=_with_codes,
)


GROUP_LABELS = ["project_id", "source", "vendor", "algorithm", "deployment"]


def render_jobs(views: Sequence[ListView[JobData]]) -> Iterator[Metric]:
    """The job families of every job list: counts while fresh, the named problem jobs while
    known (through an outage too: their state is unknown, not recovered), transitions."""
    tasks = GaugeMetricFamily("vias_tasks", "Jobs in each state.", labels=[*GROUP_LABELS, "state"])
    transitions = CounterMetricFamily(
        "vias_task_state_transitions",
        "State changes seen between consecutive polls.",
        labels=[*GROUP_LABELS, "from_state", "to_state"],
    )
    problems = GaugeMetricFamily(
        "vias_problem_task_info",
        "1 for each job in a problem state (capped per project).",
        labels=[
            "project_id",
            "source",
            "task_id",
            "task_name",
            "state",
            "error_code",
            "vendor",
            "algorithm",
            "deployment",
            "video_source_name",
            "edge_pool_id",
            "service_id",
        ],
    )
    for view in views:
        where = [view.project_id, view.source]
        if view.fresh:
            for group, counts in merged_counts(view.data.state_counts, _exported).items():
                for job_state in documented_then_seen(TASK_STATES, counts):
                    tasks.add_metric([*where, *group, job_state], counts.get(job_state, 0))
        for problem in view.shown_problems:
            problems.add_metric(
                [
                    *where,
                    problem.task_id,
                    problem.task_name,
                    problem.state,
                    problem.error_code,
                    *problem.group,
                    problem.video_source_name,
                    problem.edge_pool_id,
                    problem.service_id,
                ],
                1.0,
            )
        for (group, before, after), (total, created) in merged_transitions(
            view.data.transitions, _exported
        ).items():
            transitions.add_metric([*where, *group, before, after], total, created=created)
    yield from (tasks, transitions, problems)


def _exported(group: JobGroup) -> GroupKey:
    return group[:3]


def merged_counts(
    counts: Mapping[JobGroup, Mapping[str, int]], key: Callable[[JobGroup], K]
) -> dict[K, Counter[str]]:
    """Counts summed by `key` of their group, in the order the keys were first met."""
    merged: dict[K, Counter[str]] = {}
    for group, group_counts in counts.items():
        merged.setdefault(key(group), Counter()).update(group_counts)
    return merged


def merged_transitions(
    transitions: Mapping[Transition, TransitionCount], key: Callable[[JobGroup], K]
) -> dict[tuple[K, str, str], TransitionCount]:
    """Transitions summed by `key` of their group, the earliest first-count time kept."""
    merged: dict[tuple[K, str, str], TransitionCount] = {}
    for (group, before, after), count in transitions.items():
        merged_key = (key(group), before, after)
        seen = merged.get(merged_key)
        merged[merged_key] = (
            count
            if seen is None
            else TransitionCount(seen.total + count.total, min(seen.created, count.created))
        )
    return merged
