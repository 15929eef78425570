"""Turns listed jobs into what the metrics need, page by page, keeping only aggregates.

Memory stays proportional to the number of jobs only through the compact index the next
poll needs for transitions (hash of the job id -> shared (state, group) tuple), never to
the pages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from exporter.models import PROBLEM_STATES, BatchTask, Job

GroupKey = tuple[str, str, str]  # vendor, algorithm, deployment
JobState = tuple[str, GroupKey]  # state, group
Transition = tuple[GroupKey, str, str]  # group, from_state, to_state
# Keyed by hash(job id): an int costs less than half an id string, and two of 100,000
# ids sharing a 64-bit hash is a one-in-billions event (it would merge two jobs' counts).
JobIndex = Mapping[int, JobState]

NEW_JOB_STATE = "NONE"
DELETED_JOB_STATE = "DELETED"
# Problem jobs beyond the cap are chosen in this order: the most urgent kept first.
_PROBLEM_ORDER = {
    state: rank
    for rank, state in enumerate(
        ("FAILED", "ABNORMAL", "START_FAILED", "CREATE_FAILED", "LACK_OF_RESOURCES")
    )
}


@dataclass(frozen=True, slots=True)
class ProblemTask:
    task_id: str
    task_name: str
    state: str
    error_code: str
    group: GroupKey


def problem_rank(problem: ProblemTask) -> tuple[int, str]:
    """The order in which the cap keeps problem jobs: most urgent state first, then by id."""
    return (_PROBLEM_ORDER[problem.state], problem.task_id)


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """One job source's aggregates from one complete listing."""

    state_counts: Mapping[GroupKey, Mapping[str, int]]
    problem_tasks: tuple[ProblemTask, ...]
    problem_tasks_dropped: int
    item_count: int


@dataclass(frozen=True, slots=True)
class BatchTaskSummary:
    batch_task_id: str
    name: str
    vendor: str
    algorithm: str
    deployment: str
    video_group: str
    state_counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class BatchSnapshot:
    batch_tasks: tuple[BatchTaskSummary, ...]

    @property
    def item_count(self) -> int:
        return len(self.batch_tasks)


class JobAggregator:
    """Feed it pages of jobs with `add`; `finish` gives the snapshot and the job index."""

    def __init__(self, problem_tasks_limit: int) -> None:
        self._limit = problem_tasks_limit
        self._counts: dict[GroupKey, Counter[str]] = {}
        self._problems: list[ProblemTask] = []
        self._index: dict[int, JobState] = {}
        self._shared: dict[JobState, JobState] = {}  # one tuple per (state, group) in use
        self._anonymous = 0

    def add(self, jobs: Iterable[Job]) -> None:
        counts, index, shared = self._counts, self._index, self._shared
        for job in jobs:
            key_id = None if job.id is None else hash(job.id)
            if key_id is not None and key_id in index:
                continue  # listed twice: offset paging shifted while jobs changed
            key = (job.state, (job.vendor, job.algorithm, job.deployment))
            job_state = shared.setdefault(key, key)
            state, group = job_state
            group_counts = counts.get(group)
            if group_counts is None:
                group_counts = counts[group] = Counter()
            group_counts[state] += 1
            if key_id is None:
                self._anonymous += 1
            else:
                index[key_id] = job_state
            if state in PROBLEM_STATES:
                self._problems.append(
                    ProblemTask(job.id or "", job.name, state, job.error_code, group)
                )

    def finish(self) -> tuple[JobSnapshot, JobIndex]:
        # dict.fromkeys: jobs without an id can be identical in every label: one series
        ranked = sorted(dict.fromkeys(self._problems), key=problem_rank)
        kept = tuple(ranked[: self._limit])
        snapshot = JobSnapshot(
            state_counts=MappingProxyType(
                {group: MappingProxyType(dict(c)) for group, c in self._counts.items()}
            ),
            problem_tasks=kept,
            problem_tasks_dropped=len(ranked) - len(kept),
            item_count=len(self._index) + self._anonymous,
        )
        return snapshot, MappingProxyType(self._index)


def count_transitions(previous: JobIndex, current: JobIndex) -> Counter[Transition]:
    """State changes between two consecutive listings, new jobs from NONE, gone to DELETED."""
    transitions: Counter[Transition] = Counter()
    for _ in counting_transitions(previous, current, transitions):
        pass
    return transitions


def counting_transitions(
    previous: JobIndex, current: JobIndex, transitions: Counter[Transition], chunk: int = 4096
) -> Iterator[None]:
    """`count_transitions` into `transitions`, pausing (yielding) after every `chunk` jobs so
    an event loop can serve scrapes in between: 100,000 jobs take tens of milliseconds."""
    for number, (job_id, (state, group)) in enumerate(current.items(), 1):
        before = previous.get(job_id)
        if before is None:
            transitions[(group, NEW_JOB_STATE, state)] += 1
        elif before[0] != state:
            transitions[(group, before[0], state)] += 1
        if number % chunk == 0:
            yield
    for number, (job_id, (state, group)) in enumerate(previous.items(), 1):
        if job_id not in current:
            transitions[(group, state, DELETED_JOB_STATE)] += 1
        if number % chunk == 0:
            yield


def summarize_batch_tasks(batch_tasks: Iterable[BatchTask]) -> BatchSnapshot:
    summaries: dict[tuple[str, str], BatchTaskSummary] = {}
    for batch in batch_tasks:
        key = (batch.id or "", batch.name)
        counts = Counter(batch.state_counts)
        earlier = summaries.get(key)
        if earlier is not None:  # batch tasks without an id, same name: one series, summed
            counts.update(earlier.state_counts)
        summaries[key] = earlier or BatchTaskSummary(
            batch_task_id=key[0],
            name=batch.name,
            vendor=batch.vendor,
            algorithm=batch.algorithm,
            deployment=batch.deployment,
            video_group=batch.video_group,
            state_counts=MappingProxyType({}),
        )
        summaries[key] = replace(summaries[key], state_counts=MappingProxyType(dict(counts)))
    return BatchSnapshot(tuple(summaries.values()))
