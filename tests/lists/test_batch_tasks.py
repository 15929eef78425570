"""The batch-task list: its model, aggregation, its golden exposition, and its cardinality
budget (the states a batch task exports, the per-project cap) over real HTTP.

| change to the code (tried, seen red) | failing test |
|---|---|
| every documented state exported (zeros too) | ..._non_zero_and_problem_states..., test_golden |
| problem states left out at zero | ..._non_zero_and_problem_states..., test_golden |
| cap keeps the first listed | ..._keeps_the_most_urgent..., ..._over_http... |
| cap ignores how many jobs are in the problem state | ..._keeps_the_most_urgent... |
| dropped count not carried over a poll | ..._keeps_the_most_urgent..., ..._over_http... |
| `batch_task_series_limit` not passed by the poller | test_the_cap_over_http... |
"""

from __future__ import annotations

from collections import Counter

from exporter.lists.base import PROBLEM_ORDER, ListView, PollContext
from exporter.lists.batch_tasks import (
    BATCH_TASKS,
    BatchAggregator,
    BatchData,
    BatchTask,
    BatchTaskPage,
    render_batch_tasks,
)
from exporter.lists.jobs import PROBLEM_STATES
from exporter.models import parse_model
from exporter.service import Exporter
from tests.lists.golden import assert_golden
from tests.support import RunningSimulator, Samples, make_config, target


def test_lower_case_states_with_zeros_left_out() -> None:
    body = b"""{"count": 1, "batch_task_list": [{"id": "b1", "batch_task_name": "site",
      "alg_name": "helmet", "company": "hikvision", "type": "1", "num_task": 5,
      "video_group_name": "g1,g2", "created_at": 1686034773024, "priority": "low",
      "batch_task_status_info": {"running": 3, "abnormal": 2}}]}"""
    (batch,) = parse_model(BatchTaskPage, body, "x").items
    assert batch.state_counts == {"RUNNING": 3, "ABNORMAL": 2}
    assert (batch.name, batch.vendor, batch.algorithm, batch.deployment, batch.video_group) == (
        "site",
        "hikvision",
        "helmet",
        "edge",
        "g1,g2",
    )


def _batch(batch_id: str | None, name: str, **counts: int) -> BatchTask:
    return BatchTask.model_validate(
        {"id": batch_id, "batch_task_name": name, "batch_task_status_info": counts}
    )


async def test_listed_twice_counts_once_and_nameless_twins_are_summed() -> None:
    aggregator = BatchAggregator(PollContext(previous=None, problem_tasks_limit=10, now=1.0))
    aggregator.add([_batch("b1", "site", running=2), _batch(None, "yard", failed=1)])
    aggregator.add([_batch("b1", "site", running=2), _batch(None, "yard", failed=2)])
    data = await aggregator.finish()
    assert [(b.batch_task_id, b.name, dict(b.state_counts)) for b in data.batch_tasks] == [
        ("b1", "site", {"RUNNING": 2}),
        ("", "yard", {"FAILED": 3}),
    ]
    assert data.item_count == 2


async def test_golden() -> None:
    await assert_golden(BATCH_TASKS)


async def _aggregate(
    batch_tasks: list[BatchTask], limit: int | None = None, previous: BatchData | None = None
) -> BatchData:
    aggregator = BatchAggregator(
        PollContext(previous, problem_tasks_limit=10, now=1.0, batch_task_series_limit=limit)
    )
    aggregator.add(batch_tasks)
    return await aggregator.finish()


def _series(data: BatchData) -> Samples:
    view = ListView("p1", "batch_tasks", data, fresh=True, shown_problems=())
    samples = Samples()
    for family in render_batch_tasks([view]):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


async def test_only_non_zero_and_problem_states_are_exported() -> None:
    data = await _aggregate([_batch("b1", "site", running=3, stopped=0, abnormal=1)])
    states = {
        dict(labels)["state"]: value
        for labels, value in _series(data).series("vias_batch_task_tasks").items()
    }
    assert states == {"RUNNING": 3, "ABNORMAL": 1} | {
        state: 0 for state in PROBLEM_STATES if state != "ABNORMAL"
    }


async def test_the_cap_keeps_the_most_urgent_and_counts_the_rest() -> None:
    listed = [
        _batch("b1", "calm", running=9),
        _batch("b2", "few-lacking", lack_of_resources=1),
        _batch("b3", "failing", running=5, failed=1),
        _batch("b4", "many-lacking", lack_of_resources=4),
        _batch("b5", "abnormal", abnormal=2),
    ]
    data = await _aggregate(listed, limit=3)
    assert [b.batch_task_id for b in data.exported] == ["b3", "b4", "b5"]  # in listing order
    assert data.item_count == 5 and data.series_dropped_total == 2
    samples = _series(data)
    assert {dict(labels)["batch_task_id"] for labels in samples.series("vias_batch_task_info")} == {
        "b3",
        "b4",
        "b5",
    }
    assert samples.value("vias_batch_task_series_dropped_total", project_id="p1") == 2
    again = await _aggregate(listed, limit=3, previous=data)
    assert again.series_dropped_total == 4  # a counter: each poll adds what it leaves out
    assert (await _aggregate(listed, limit=None)).exported == tuple(data.batch_tasks)


def _most_urgent_batch(sim: RunningSimulator, project_id: str) -> str:
    project = sim.world.projects[project_id]

    def urgency(batch_id: str) -> tuple[int, int, str]:
        batch = project.batch_tasks[batch_id]
        states = Counter(project.tasks[task_id].state for task_id in batch.task_ids)
        present = [state for state in PROBLEM_ORDER if states[state]]
        rank = PROBLEM_ORDER.index(present[0]) if present else len(PROBLEM_ORDER)
        return (rank, -sum(states[state] for state in present), batch_id)

    return min(project.batch_tasks, key=urgency)


async def test_the_cap_over_http_against_the_simulator(simulator: RunningSimulator) -> None:
    config = make_config(
        [target(simulator.url, sources=["batch_tasks"])], batch_task_series_limit=1
    )
    batches = len(simulator.world.projects["p1"].batch_tasks)
    assert batches > 1
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        first = Samples.parse(exporter.exposition.body(openmetrics=False, gzipped=False).decode())
        await exporter.poll_all_once()
        second = Samples.parse(exporter.exposition.body(openmetrics=False, gzipped=False).decode())
    info = first.series("vias_batch_task_info", project_id="p1")
    assert [dict(labels)["batch_task_id"] for labels in info] == [
        _most_urgent_batch(simulator, "p1")
    ]
    assert first.value("vias_poll_items", project_id="p1", source="batch_tasks") == batches
    assert first.value("vias_batch_task_series_dropped_total", project_id="p1") == batches - 1
    assert second.value("vias_batch_task_series_dropped_total", project_id="p1") == 2 * (
        batches - 1
    )
