"""The v2 job list: its model and its golden exposition."""

from __future__ import annotations

from exporter.lists.jobs import TaskPage
from exporter.lists.tasks import TASKS
from exporter.models import UNKNOWN_STATE, parse_model
from tests.lists.golden import assert_golden


def test_page_as_documented() -> None:
    body = b"""{"count": 2, "page": 1, "page_size": 10, "tasks": [
      {"id": "a", "name": "gate", "state": "RUNNING", "company": "huawei", "title": "helmet",
       "type": "0", "created_at": "1686034773024", "unknown_field": {"x": 1}},
      {"id": "b", "name": "yard", "state": "abnormal", "company": null, "title": "fire",
       "type": "edge", "error": {"code": "VIAS.10010002", "message": "stream lost"}}]}"""
    first, second = parse_model(TaskPage, body, TASKS.endpoint).items
    assert (first.id, first.state, first.vendor, first.algorithm, first.deployment) == (
        "a",
        "RUNNING",
        "huawei",
        "helmet",
        "cloud",
    )
    assert (second.state, second.vendor, second.deployment, second.error_code) == (
        "ABNORMAL",
        "",
        "edge",
        "VIAS.10010002",
    )


def test_missing_and_null_fields_and_unknown_states() -> None:
    page = parse_model(
        TaskPage, b'{"tasks": [{"id": 7}, {"state": "NEW_STATE_2027"}, {"state": null}]}', "x"
    )
    assert [t.id for t in page.items] == ["7", None, None]
    assert [t.state for t in page.items] == [UNKNOWN_STATE, "NEW_STATE_2027", UNKNOWN_STATE]
    assert page.count is None
    assert parse_model(TaskPage, b'{"count": 0, "tasks": null}', "x").items == []


async def test_golden() -> None:
    await assert_golden(TASKS)
