"""The batch-task list: its model, aggregation and its golden exposition."""

from __future__ import annotations

from exporter.lists.base import PollContext
from exporter.lists.batch_tasks import BATCH_TASKS, BatchAggregator, BatchTask, BatchTaskPage
from exporter.models import parse_model
from tests.lists.golden import assert_golden


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
