"""Job aggregation (shared by the three job lists): counts, the problem-job cap, the
compact index and transitions between polls."""

from __future__ import annotations

from collections import Counter

from exporter.lists.base import PollContext
from exporter.lists.jobindex import Transition, counting_transitions
from exporter.lists.jobs import JobAggregator, JobData, Task


def _task(
    task_id: str,
    state: str,
    vendor: str = "huawei",
    algorithm: str = "helmet",
    deployment: str = "0",
    error: str | None = None,
) -> Task:
    data: dict[str, object] = {
        "id": task_id,
        "state": state,
        "company": vendor,
        "title": algorithm,
        "type": deployment,
        "name": f"job {task_id}",
    }
    if error:
        data["error"] = {"code": error, "message": "x"}
    return Task.model_validate(data)


def _aggregator(
    limit: int = 10, previous: JobData | None = None, now: float = 1.0
) -> JobAggregator:
    return JobAggregator(PollContext(previous=previous, problem_tasks_limit=limit, now=now))


async def test_counts_by_group_and_state_across_pages() -> None:
    aggregator = _aggregator()
    aggregator.add([_task("a", "RUNNING"), _task("b", "RUNNING", deployment="1")])
    aggregator.add([_task("c", "ABNORMAL", error="E1"), _task("d", "RUNNING")])
    data = await aggregator.finish()
    assert data.state_counts == {
        ("huawei", "helmet", "cloud", ""): {"RUNNING": 2, "ABNORMAL": 1},
        ("huawei", "helmet", "edge", ""): {"RUNNING": 1},
    }
    assert data.item_count == 4
    assert [(p.task_id, p.state, p.error_code) for p in data.problem_tasks] == [
        ("c", "ABNORMAL", "E1")
    ]
    assert data.index[hash("b")] == ("RUNNING", ("huawei", "helmet", "edge", ""))


async def test_a_job_listed_twice_counts_once() -> None:
    """Offset paging shifts while jobs change: the same job can come on two pages."""
    aggregator = _aggregator()
    aggregator.add([_task("a", "RUNNING"), _task("b", "FAILED")])
    aggregator.add([_task("b", "FAILED"), _task("c", "RUNNING")])
    data = await aggregator.finish()
    assert data.item_count == 3
    assert data.state_counts[("huawei", "helmet", "cloud", "")] == {"RUNNING": 2, "FAILED": 1}
    assert [p.task_id for p in data.problem_tasks] == ["b"]


async def test_problem_tasks_are_capped_most_urgent_first() -> None:
    aggregator = _aggregator(limit=2)
    aggregator.add(
        [
            _task("z", "LACK_OF_RESOURCES"),
            _task("y", "ABNORMAL"),
            _task("x", "FAILED"),
            _task("w", "RUNNING"),
        ]
    )
    data = await aggregator.finish()
    assert [p.task_id for p in data.problem_tasks] == ["x", "y"]
    assert data.problem_tasks_dropped == 1


async def test_index_shares_one_tuple_per_state_and_group() -> None:
    aggregator = _aggregator(limit=0)
    aggregator.add([_task(str(i), "RUNNING") for i in range(100)])
    data = await aggregator.finish()
    assert len({id(value) for value in data.index.values()}) == 1


def test_transitions_changed_new_and_deleted_jobs() -> None:
    group = ("huawei", "helmet", "cloud", "")
    previous = {1: ("RUNNING", group), 2: ("RUNNING", group), 3: ("FAILED", group)}
    current = {1: ("ABNORMAL", group), 2: ("RUNNING", group), 4: ("FAILED", group)}
    transitions: Counter[Transition] = Counter()
    for _ in counting_transitions(previous, current, transitions, chunk=1):
        pass
    assert transitions == {
        (group, "RUNNING", "ABNORMAL"): 1,
        (group, "NONE", "FAILED"): 1,
        (group, "FAILED", "DELETED"): 1,
    }


async def test_a_job_changing_group_but_not_state_is_no_transition() -> None:
    """A job whose vendor or algorithm label changes (its listing filled them in, say) has
    not changed state: no RUNNING -> RUNNING transition."""
    first = _aggregator(now=100.0)
    first.add([_task("a", "RUNNING", vendor=""), _task("b", "RUNNING")])
    second = _aggregator(previous=await first.finish(), now=200.0)
    second.add([_task("a", "RUNNING", vendor="huawei"), _task("b", "RUNNING", algorithm="x")])
    assert (await second.finish()).transitions == {}


async def test_first_listing_is_a_baseline_and_later_ones_add_up_with_their_first_time() -> None:
    first = _aggregator(now=100.0)
    first.add([_task("a", "RUNNING"), _task("b", "RUNNING")])
    baseline = await first.finish()
    assert baseline.transitions == {}

    second = _aggregator(previous=baseline, now=200.0)
    second.add([_task("a", "FAILED"), _task("b", "RUNNING")])
    after_one = await second.finish()
    third = _aggregator(previous=after_one, now=300.0)
    third.add([_task("a", "FAILED"), _task("b", "FAILED")])
    after_two = await third.finish()

    group = ("huawei", "helmet", "cloud", "")
    assert after_two.transitions == {(group, "RUNNING", "FAILED"): (2, 200.0)}
