"""The shared field types accept every variant the API reference lists; bad bodies become
typed errors. (Each list's own models are tested in tests/lists/.)"""

from datetime import UTC, datetime

import pytest

from exporter.errors import ViasResponseError
from exporter.lists.jobs import TaskPage
from exporter.models import check_json, normalize_deployment, parse_model, parse_time


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


@pytest.mark.parametrize(
    ("body", "retryable"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", True),
        (b'{"tasks": [{"id": "a", "na', True),
        (b'{"tasks": "oops"}', False),
        (b"[1, 2]", False),
        (b'{"tasks": [{"id": {"nested": 1}}]}', False),
    ],
)
def test_bad_bodies_raise_the_clients_typed_error(body: bytes, retryable: bool) -> None:
    with pytest.raises(ViasResponseError) as caught:
        parse_model(TaskPage, body, "/v2/{project_id}/tasks")
    assert caught.value.retryable is retryable
    assert caught.value.reason == "bad_response"
    assert "<" not in str(caught.value)  # HTML tags are stripped from the excerpt


@pytest.mark.parametrize(
    ("body", "whole"),
    [
        (b'{"tasks": [{"id": "a"}]}', True),
        (b'{"tasks": "oops"}', True),  # whole, if of the wrong shape: the parser says so
        (b'{"tasks": [{"id": "a", "na', False),
        (b"<html><body>502 Bad Gateway</body></html>", False),
    ],
)
def test_check_json_passes_whole_bodies_and_makes_cut_ones_retryable(
    body: bytes, whole: bool
) -> None:
    """What the paginator checks inside each retried page request, before keeping the
    body as bytes until its turn to be parsed."""
    if whole:
        assert check_json(body, "/v2/{project_id}/tasks") is body
        return
    with pytest.raises(ViasResponseError) as caught:
        check_json(body, "/v2/{project_id}/tasks")
    assert caught.value.retryable and caught.value.reason == "bad_response"
