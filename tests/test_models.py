"""The models accept every variant the API reference lists."""

from datetime import UTC, datetime

import pytest

from exporter.errors import ViasResponseError
from exporter.models import (
    UNKNOWN_STATE,
    BatchTaskPage,
    FaceEdgeTaskPage,
    TaskPage,
    normalize_deployment,
    parse_model,
    parse_time,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", "cloud"),
        ("1", "edge"),
        ("cloud", "cloud"),
        ("EDGE", "edge"),
        (0, "cloud"),
        ("hybrid", "hybrid"),
        (None, ""),
    ],
)
def test_deployment_is_normalized_and_unknown_values_are_kept(raw: object, expected: str) -> None:
    assert normalize_deployment(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "1686034773024",
        1686034773024,
        1686034773024.0,
        "2023-06-06T06:59:33.024Z",
        "2023-06-06T06:59:33.024+00:00",
    ],
)
def test_times_in_every_documented_form(raw: str | int | float) -> None:
    assert parse_time(raw) == datetime(2023, 6, 6, 6, 59, 33, 24000, tzinfo=UTC)


def test_missing_time_is_none() -> None:
    assert parse_time(None) is None
    assert parse_time("") is None


def test_task_page_as_documented() -> None:
    body = b"""{"count": 2, "page": 1, "page_size": 10, "tasks": [
      {"id": "a", "name": "gate", "state": "RUNNING", "company": "huawei", "title": "helmet",
       "type": "0", "created_at": "1686034773024", "unknown_field": {"x": 1}},
      {"id": "b", "name": "yard", "state": "abnormal", "company": null, "title": "fire",
       "type": "edge", "error": {"code": "VIAS.10010002", "message": "stream lost"}}]}"""
    page = parse_model(TaskPage, body, "/v2/{project_id}/tasks")
    first, second = page.items
    assert (first.id, first.state, first.vendor, first.algorithm, first.deployment) == (
        "a",
        "RUNNING",
        "huawei",
        "helmet",
        "cloud",
    )
    assert first.created == datetime(2023, 6, 6, 6, 59, 33, 24000, tzinfo=UTC)
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


def test_batch_task_lower_case_states_with_zeros_left_out() -> None:
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


def test_face_edge_jobs_are_edge_face_extraction() -> None:
    body = b"""{"count": 1, "tasks": [{"id": "f1", "name": "door", "state": "RUNNING",
      "created_at": "2020-09-10T07:41:59Z", "input": {"type": "edgecamera"}}]}"""
    (job,) = parse_model(FaceEdgeTaskPage, body, "x").items
    assert (job.deployment, job.algorithm, job.vendor) == ("edge", "face_extraction", "")
    assert job.created == datetime(2020, 9, 10, 7, 41, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "transient"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", True),
        (b'{"tasks": [{"id": "a", "na', True),
        (b'{"tasks": "oops"}', False),
        (b"[1, 2]", False),
        (b'{"tasks": [{"id": {"nested": 1}}]}', False),
    ],
)
def test_bad_bodies_raise_the_clients_typed_error(body: bytes, transient: bool) -> None:
    with pytest.raises(ViasResponseError) as caught:
        parse_model(TaskPage, body, "/v2/{project_id}/tasks")
    assert caught.value.transient is transient
    assert caught.value.reason == "bad_response"
    assert "<" not in str(caught.value)  # HTML tags are stripped from the excerpt
