"""The compact job index (exporter/lists/jobindex.py): what the aggregator keeps of each
job for the next poll's transitions, at a few bytes a job.

Break → failing test (each seen red once):
- `finish` keeps the last listing of a duplicate id (sorting by (hash, -position)) →
  test_a_job_listed_twice_in_two_states_counts_once_as_first_listed
- duplicates not taken back out of the counts → the same test and
  test_a_duplicate_alone_in_its_group_leaves_no_group_behind
- the bucket from the low byte of the hash (buckets out of order) →
  test_lookup_and_order_across_buckets_and_the_extremes_of_the_hash
- the merge walk ending with the current listing (the rest of the previous one not
  counted as deleted) → test_no_jobs_left_every_job_deleted_and_an_empty_index
- the index's codes stored as array('L') (8 bytes a code) →
  test_an_index_costs_at_most_ten_bytes_a_job
- the problem shortlist not taking duplicates out, or counting the pruned ones as dropped
  only up to the shortlist →
  test_thousands_of_problem_jobs_name_the_most_urgent_as_ranking_them_all_would
"""

from __future__ import annotations

from collections import Counter

from exporter.lists.base import PROBLEM_ORDER, PollContext
from exporter.lists.jobindex import (
    CompactJobIndex,
    IndexBuilder,
    JobState,
    Transition,
    counting_transitions,
)
from exporter.lists.jobs import JobAggregator, JobData, Task

GROUP = ("huawei", "helmet", "cloud", "")
OTHER = ("acme", "fire", "edge", "")


def _task(task_id: str, state: str, vendor: str = "huawei", algorithm: str = "helmet") -> Task:
    data = {"id": task_id, "state": state, "company": vendor, "title": algorithm, "type": "0"}
    return Task.model_validate(data)


async def _listing(*pages: list[Task], previous: JobData | None = None) -> JobData:
    aggregator = JobAggregator(PollContext(previous=previous, problem_tasks_limit=10, now=1.0))
    for page in pages:
        aggregator.add(page)
    return await aggregator.finish()


def _index(entries: dict[int, JobState]) -> CompactJobIndex:
    builder = IndexBuilder()
    for key, job_state in entries.items():
        code, _ = builder.intern(job_state)
        builder.add(key, code)
    *_, (index, _) = builder.finish()
    assert index is not None
    return index


async def test_a_job_listed_twice_in_two_states_counts_once_as_first_listed() -> None:
    """Offset paging shifts while jobs change: a job can come again, in its new state, on a
    later page. The first listing counts (as before the compact index), in counts, in the
    index and among the problem jobs."""
    data = await _listing(
        [_task("a", "RUNNING"), _task("b", "RUNNING")],
        [_task("b", "FAILED"), _task("c", "ABNORMAL")],
    )
    assert data.item_count == 3
    assert data.state_counts == {GROUP: {"RUNNING": 2, "ABNORMAL": 1}}
    assert data.index[hash("b")] == ("RUNNING", GROUP)
    assert [p.task_id for p in data.problem_tasks] == ["c"]


async def test_a_duplicate_alone_in_its_group_leaves_no_group_behind() -> None:
    data = await _listing(
        [_task("a", "RUNNING")], [_task("a", "FAILED", vendor="acme", algorithm="fire")]
    )
    assert data.state_counts == {GROUP: {"RUNNING": 1}}
    assert data.problem_tasks == ()


async def test_a_job_leaving_counts_once() -> None:
    first = await _listing([_task(str(n), "RUNNING") for n in range(1000)])
    second = await _listing([_task(str(n), "RUNNING") for n in range(1, 1000)], previous=first)
    assert second.item_count == 999
    assert second.transitions == {(GROUP, "RUNNING", "DELETED"): (1, 1.0)}


async def test_no_jobs_left_every_job_deleted_and_an_empty_index() -> None:
    first = await _listing([_task(str(n), "FAILED") for n in range(300)])
    empty = await _listing([], previous=first)
    assert empty.item_count == 0 and len(empty.index) == 0 and empty.state_counts == {}
    assert empty.transitions == {(GROUP, "FAILED", "DELETED"): (300, 1.0)}
    again = await _listing([_task("new", "RUNNING")], previous=empty)
    assert again.transitions[(GROUP, "NONE", "RUNNING")] == (1, 1.0)


def test_ids_sharing_a_hash_are_one_job() -> None:
    """Two ids with one 64-bit hash (one-in-billions) are one job, the first listed: as
    with the dict the index replaces."""
    builder = IndexBuilder()
    running, _ = builder.intern(("RUNNING", GROUP))
    failed, _ = builder.intern(("FAILED", GROUP))
    builder.add(42, running)
    builder.add(42, failed)
    *found, (index, _) = builder.finish()
    assert [duplicates for _, duplicates in found] == [[((42 >> 56) + 128, 1, failed)]]
    assert index is not None and dict(index) == {42: ("RUNNING", GROUP)}


def test_lookup_and_order_across_buckets_and_the_extremes_of_the_hash() -> None:
    keys = [-(2**63), -(2**63) + 1, -5, 0, 7, 2**56, 2**56 - 1, 2**63 - 1, -(2**56)]
    entries = {key: (("RUNNING" if key % 2 else "FAILED"), GROUP) for key in keys}
    index = _index(entries)
    assert list(index) == sorted(keys)
    assert dict(index) == entries
    assert 3 not in index and index.get(3) is None
    assert all(index[key] == entries[key] for key in keys)


def test_transitions_between_compact_indexes_match_those_between_dicts() -> None:
    previous = {n * 7919 - 500_000: ("RUNNING", GROUP if n % 3 else OTHER) for n in range(500)}
    current = dict(previous)
    for n in range(0, 500, 5):
        del current[n * 7919 - 500_000]  # gone
    for n in range(1, 500, 7):
        current[n * 7919 - 500_000] = ("FAILED", current.get(n * 7919 - 500_000, (0, OTHER))[1])
    for n in range(500, 560):
        current[n * 7919 - 500_000] = ("PENDING", OTHER)  # new
    expected: Counter[Transition] = Counter()
    for key, (state, group) in current.items():
        if key not in previous:
            expected[(group, "NONE", state)] += 1
        elif previous[key][0] != state:
            expected[(group, previous[key][0], state)] += 1
    for key, (state, group) in previous.items():
        if key not in current:
            expected[(group, state, "DELETED")] += 1
    counted: Counter[Transition] = Counter()
    for _ in counting_transitions(_index(previous), _index(current), counted, chunk=64):
        pass
    assert counted == expected


async def test_an_index_shares_one_tuple_per_state_and_group() -> None:
    data = await _listing([_task(str(n), "RUNNING" if n % 2 else "FAILED") for n in range(50)])
    assert len({id(value) for value in data.index.values()}) == 2


async def test_an_index_costs_at_most_ten_bytes_a_job() -> None:
    data = await _listing(*([_task(f"{p}-{n}", "RUNNING") for n in range(1000)] for p in range(50)))
    assert isinstance(data.index, CompactJobIndex) and len(data.index) == 50_000
    assert data.index.nbytes <= 10 * len(data.index)


async def test_thousands_of_problem_jobs_name_the_most_urgent_as_ranking_them_all_would() -> None:
    """The aggregator keeps a shortlist of problem jobs (pruned past ~1,000): the named
    ones and the count of the others are those of ranking every problem job, duplicates
    (a later listing, here in a more urgent state) and identical anonymous jobs included."""
    states = ["LACK_OF_RESOURCES", "ABNORMAL", "FAILED", "START_FAILED", "RUNNING"]
    jobs = [_task(f"{n:05d}", states[n * 7 % 5]) for n in range(6000)]
    late = [_task(f"{n:05d}", "FAILED") for n in range(0, 6000, 50)]  # listed again
    anonymous = [Task.model_validate({"state": "FAILED", "name": "x"}) for _ in range(3)]
    pages = [jobs[:3000], late, anonymous, jobs[3000:]]
    data = await _listing(*pages)
    first: dict[str, str] = {}
    for job in (job for page in pages for job in page):
        first.setdefault(job.id or "", job.state)  # the anonymous ones are one series
    problems = sorted(
        ((state, task_id) for task_id, state in first.items() if state in PROBLEM_ORDER),
        key=lambda problem: (PROBLEM_ORDER.index(problem[0]), problem[1]),
    )
    assert data.item_count == 6003
    assert [(p.state, p.task_id) for p in data.problem_tasks] == problems[:10]
    assert data.problem_tasks_dropped == len(problems) - 10
