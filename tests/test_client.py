"""Client edge cases that are awkward to stage on a real server (aioresponses).

The complete paths run against the simulator over real HTTP in test_client_simulator.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from pydantic import SecretStr
from yarl import URL

from exporter.auth import IamPasswordAuth, TokenAuth
from exporter.client import ClientOptions, ViasClient
from exporter.errors import (
    ViasConnectionError,
    ViasHTTPError,
    ViasResponseError,
    ViasTimeoutError,
)
from exporter.telemetry import Telemetry

BASE = "http://vias.test"
FAST = ClientOptions(backoff_initial_seconds=0.001, backoff_max_seconds=0.01, max_retries=2)
Handler = Callable[[URL], CallbackResult]


def _jobs(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"job-{i}", "state": "RUNNING", "company": "v", "title": "a", "type": "0"}
        for i in range(start, start + count)
    ]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def mocked() -> AsyncIterator[aioresponses]:
    with aioresponses() as mock:
        yield mock


def _client(
    session: aiohttp.ClientSession,
    telemetry: Telemetry,
    options: ClientOptions = FAST,
    auth: Any = None,
) -> ViasClient:
    return ViasClient(
        session=session,
        base_url=BASE,
        project_id="p1",
        auth=auth or TokenAuth(SecretStr("tok")),
        telemetry=telemetry,
        options=options,
    )


def _serve(mock: aioresponses, path: str, handler: Handler) -> list[URL]:
    """Route every GET of `path` (any query) to handler; return the list of URLs asked."""
    seen: list[URL] = []

    def callback(url: URL, **_: Any) -> CallbackResult:
        seen.append(url)
        return handler(url)

    mock.get(re.compile(re.escape(BASE + path) + r"(\?.*)?$"), callback=callback, repeat=True)
    return seen


def _page_of(jobs: list[dict[str, Any]]) -> Handler:
    def handler(url: URL) -> CallbackResult:
        page, size = int(url.query["page"]), int(url.query["page_size"])
        items = jobs[(page - 1) * size : page * size]
        return CallbackResult(payload={"count": len(items), "tasks": items})

    return handler


def _count(telemetry: Telemetry, metric: str, **labels: str) -> float:
    return telemetry.registry.get_sample_value(metric, labels) or 0.0


async def test_pages_until_a_short_page_within_window(session, mocked) -> None:
    telemetry = Telemetry()
    asked = _serve(mocked, "/v1/p1/infer/tasks", _page_of(_jobs(0, 110)))
    jobs = await _client(session, telemetry).list_all("infer_tasks")
    assert [j.id for j in jobs] == [f"job-{i}" for i in range(110)]
    assert {u.query["page_size"] for u in asked} == {"50"}
    # 3 pages hold the data; the look-ahead window may add at most window-1 requests.
    assert 3 <= len(asked) <= 3 + FAST.page_window - 1


async def test_duplicates_across_pages_are_removed(session, mocked) -> None:
    jobs = _jobs(0, 50) + _jobs(40, 20)  # offset paging shifted: 10 jobs seen twice
    _serve(mocked, "/v1/p1/infer/tasks", _page_of(jobs))
    listed = await _client(session, Telemetry()).list_all("infer_tasks")
    assert len(listed) == 60 and len({j.id for j in listed}) == 60


async def test_repeated_page_stops_the_listing(session, mocked) -> None:
    telemetry = Telemetry()
    asked = _serve(
        mocked, "/v1/p1/infer/tasks", lambda url: CallbackResult(payload={"tasks": _jobs(0, 50)})
    )
    listed = await _client(session, telemetry).list_all("infer_tasks")
    assert len(listed) == 50
    assert len(asked) <= 1 + FAST.page_window
    assert (
        _count(
            telemetry,
            "vias_pagination_stops_total",
            project_id="p1",
            source="infer_tasks",
            reason="repeated_page",
        )
        == 1
    )


async def test_page_cap_bounds_a_server_that_never_ends(session, mocked) -> None:
    telemetry = Telemetry()
    counter = iter(range(10**6))
    asked = _serve(
        mocked,
        "/v1/p1/infer/tasks",
        lambda url: CallbackResult(payload={"tasks": _jobs(next(counter) * 50, 50)}),
    )
    options = ClientOptions(max_pages=7, backoff_initial_seconds=0.001)
    listed = await _client(session, telemetry, options).list_all("infer_tasks")
    assert len(asked) == 7 and len(listed) == 350
    assert (
        _count(
            telemetry,
            "vias_pagination_stops_total",
            project_id="p1",
            source="infer_tasks",
            reason="page_cap",
        )
        == 1
    )


async def test_face_edge_server_that_ignores_paging(session, mocked) -> None:
    everything = [{"id": f"f{i}", "state": "RUNNING"} for i in range(250)]
    asked = _serve(
        mocked,
        "/v2/p1/services/c-face-edge/tasks",
        lambda url: CallbackResult(payload={"count": 250, "tasks": everything}),
    )
    listed = await _client(session, Telemetry()).list_all("face_edge_tasks")
    assert len(listed) == 250 and len(asked) == 1


async def test_total_count_limits_look_ahead(session, mocked) -> None:
    batches = [{"id": f"b{i}", "batch_task_name": "n"} for i in range(400)]

    def handler(url: URL) -> CallbackResult:
        page = int(url.query["page_num"])
        return CallbackResult(
            payload={"count": 400, "batch_task_list": batches[(page - 1) * 200 : page * 200]}
        )

    asked = _serve(mocked, "/v2/p1/batch-tasks", handler)
    listed = await _client(session, Telemetry()).list_all("batch_tasks")
    assert len(listed) == 400 and len(asked) == 2


async def test_retries_5xx_then_succeeds_and_counts_every_attempt(session, mocked) -> None:
    telemetry = Telemetry()
    answers = iter(
        [
            CallbackResult(status=503, body="<html><h1>503 Service Unavailable</h1></html>"),
            CallbackResult(status=500, payload={"error_code": "VIAS.00010006", "error_msg": "x"}),
            CallbackResult(payload={"tasks": _jobs(0, 3)}),
        ]
    )
    _serve(mocked, "/v1/p1/infer/tasks", lambda url: next(answers))
    assert len(await _client(session, telemetry).list_all("infer_tasks")) == 3
    endpoint = "/v1/{project_id}/infer/tasks"
    for code in ("503", "500", "200"):
        assert (
            _count(
                telemetry, "vias_api_requests_total", project_id="p1", endpoint=endpoint, code=code
            )
            == 1
        )


async def test_throttling_honours_retry_after(session, mocked) -> None:
    answers = iter(
        [
            CallbackResult(
                status=429,
                headers={"Retry-After": "0"},
                payload={"error_code": "APIGW.0308", "error_msg": "throttled", "request_id": "r-1"},
            ),
            CallbackResult(payload={"tasks": _jobs(0, 1)}),
        ]
    )
    _serve(mocked, "/v1/p1/infer/tasks", lambda url: next(answers))
    options = ClientOptions(backoff_initial_seconds=60, max_retries=1)  # only Retry-After is short
    assert len(await _client(session, Telemetry(), options).list_all("infer_tasks")) == 1


async def test_html_gateway_error_after_retries_is_typed_with_a_safe_excerpt(
    session, mocked
) -> None:
    asked = _serve(
        mocked,
        "/v1/p1/infer/tasks",
        lambda url: CallbackResult(
            status=502, body="<html><body><h1>502 Bad Gateway</h1>" + "x" * 5000 + "</body></html>"
        ),
    )
    with pytest.raises(ViasHTTPError) as caught:
        await _client(session, Telemetry()).list_all("infer_tasks")
    assert len(asked) == 1 + FAST.max_retries
    error = caught.value
    assert (error.status, error.reason) == (502, "server_error")
    assert error.excerpt.startswith("502 Bad Gateway") and len(error.excerpt) <= 200


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures_are_not_retried(session, mocked, status: int) -> None:
    asked = _serve(
        mocked,
        "/v1/p1/infer/tasks",
        lambda url: CallbackResult(
            status=status,
            payload={
                "error_code": "APIGW.0301",
                "error_msg": "Incorrect IAM authentication information",
                "request_id": "abc123",
            },
        ),
    )
    with pytest.raises(ViasHTTPError) as caught:
        await _client(session, Telemetry()).list_all("infer_tasks")
    assert len(asked) == 1
    assert (caught.value.error_code, caught.value.request_id, caught.value.reason) == (
        "APIGW.0301",
        "abc123",
        "auth",
    )
    assert "tok" not in str(caught.value)


async def test_timeouts_and_connection_errors_are_typed(session, mocked) -> None:
    mocked.get(re.compile(r".*/infer/tasks.*"), exception=TimeoutError(), repeat=True)
    mocked.get(
        re.compile(r".*/v2/p1/tasks.*"),
        exception=aiohttp.ClientConnectionError("refused"),
        repeat=True,
    )
    telemetry = Telemetry()
    client = _client(session, telemetry)
    with pytest.raises(ViasTimeoutError):
        await client.list_all("infer_tasks")
    with pytest.raises(ViasConnectionError):
        await client.list_all("tasks")
    assert (
        _count(
            telemetry,
            "vias_api_requests_total",
            project_id="p1",
            endpoint="/v1/{project_id}/infer/tasks",
            code="timeout",
        )
        == 3
    )


async def test_cut_json_is_retried_wrong_shape_is_not(session, mocked) -> None:
    cut = _serve(mocked, "/v1/p1/infer/tasks", lambda url: CallbackResult(body='{"tasks": [{"id"'))
    wrong = _serve(mocked, "/v2/p1/tasks", lambda url: CallbackResult(payload={"tasks": "oops"}))
    client = _client(session, Telemetry())
    for source in ("infer_tasks", "tasks"):
        with pytest.raises(ViasResponseError):
            await client.list_all(source)
    assert (len(cut), len(wrong)) == (3, 1)


async def test_revoked_iam_token_is_refreshed_once(session, mocked) -> None:
    telemetry = Telemetry()
    tokens = iter(["token-1", "token-2"])
    mocked.post(
        f"{BASE}/v3/auth/tokens",
        repeat=True,
        callback=lambda url, **kw: CallbackResult(
            status=201,
            headers={"X-Subject-Token": next(tokens)},
            payload={"token": {"expires_at": "2099-01-01T00:00:00.000000Z"}},
        ),
    )

    def handler(url: URL, **kwargs: Any) -> CallbackResult:
        if kwargs["headers"]["X-Auth-Token"] != "token-2":
            return CallbackResult(status=401, payload={"error_code": "APIGW.0301"})
        return CallbackResult(payload={"tasks": _jobs(0, 2)})

    mocked.get(re.compile(r".*/infer/tasks.*"), callback=handler, repeat=True)
    auth = IamPasswordAuth(
        session=session,
        iam_endpoint=BASE,
        username="u",
        password=SecretStr("pw"),
        domain_name="d",
        project_id="p1",
        telemetry=telemetry,
    )
    assert len(await _client(session, telemetry, auth=auth).list_all("infer_tasks")) == 2
    assert auth.logins == 2
    assert (
        _count(telemetry, "vias_auth_token_expiry_timestamp_seconds", project_id="p1") == 4070908800
    )
