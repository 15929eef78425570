from exporter.aggregation import (
    JobAggregator,
    count_transitions,
)
from exporter.models import Task


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


def test_counts_by_group_and_state_across_pages() -> None:
    aggregator = JobAggregator(problem_tasks_limit=10)
    aggregator.add([_task("a", "RUNNING"), _task("b", "RUNNING", deployment="1")])
    aggregator.add([_task("c", "ABNORMAL", error="E1"), _task("d", "RUNNING")])
    snapshot, index = aggregator.finish()
    assert snapshot.state_counts == {
        ("huawei", "helmet", "cloud"): {"RUNNING": 2, "ABNORMAL": 1},
        ("huawei", "helmet", "edge"): {"RUNNING": 1},
    }
    assert snapshot.item_count == 4
    assert [(p.task_id, p.state, p.error_code) for p in snapshot.problem_tasks] == [
        ("c", "ABNORMAL", "E1")
    ]
    assert index[hash("b")] == ("RUNNING", ("huawei", "helmet", "edge"))


def test_problem_tasks_are_capped_most_urgent_first() -> None:
    aggregator = JobAggregator(problem_tasks_limit=2)
    aggregator.add(
        [
            _task("z", "LACK_OF_RESOURCES"),
            _task("y", "ABNORMAL"),
            _task("x", "FAILED"),
            _task("w", "RUNNING"),
        ]
    )
    snapshot, _ = aggregator.finish()
    assert [p.task_id for p in snapshot.problem_tasks] == ["x", "y"]
    assert snapshot.problem_tasks_dropped == 1


def test_index_shares_one_tuple_per_state_and_group() -> None:
    aggregator = JobAggregator(problem_tasks_limit=0)
    aggregator.add(_task(str(i), "RUNNING") for i in range(100))
    _, index = aggregator.finish()
    assert len({id(value) for value in index.values()}) == 1


def test_transitions_changed_new_and_deleted_jobs() -> None:
    group = ("huawei", "helmet", "cloud")
    previous = {"a": ("RUNNING", group), "b": ("RUNNING", group), "c": ("FAILED", group)}
    current = {"a": ("ABNORMAL", group), "b": ("RUNNING", group), "d": ("FAILED", group)}
    assert count_transitions(previous, current) == {
        (group, "RUNNING", "ABNORMAL"): 1,
        (group, "NONE", "FAILED"): 1,
        (group, "FAILED", "DELETED"): 1,
    }
