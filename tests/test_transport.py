"""Transport edge cases that are awkward to stage on a real server (aioresponses): retries
within one budget, Retry-After, typed errors, the auth cool-down, the IAM token refresh.

The same paths against the simulator over real HTTP are in test_paginator_simulator.py.

`test_throttling_honours_retry_after` used to pass with Retry-After ignored (in 30 s); its
successor records the waits instead of sleeping them. Each change below was made (in
memory, by a pytest plugin) and the test seen failing:

| change (made in memory)              | failing test                                   |
|--------------------------------------|------------------------------------------------|
| Retry-After branch deleted from      | test_throttling_waits_the_retry_after_capped   |
| `Transport._backoff`                 | (all 3 cases)                                  |
| no retries (`stop_after_attempt(1)`) | test_a_cut_body_then_a_good_one_is_one_retry   |
|                                      | and every other retry test here                |
| a cut body retried in a budget of    | test_a_5xx_then_a_cut_body_exhausts_the_one_   |
| its own (parse outside the retry)    | budget                                         |
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import partial
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from pydantic import SecretStr
from tenacity import AsyncRetrying
from yarl import URL

import exporter.transport
from exporter.auth import Auth, CoolDown, IamPasswordAuth, TokenAuth
from exporter.errors import (
    ViasAuthCoolDown,
    ViasConnectionError,
    ViasHTTPError,
    ViasResponseError,
    ViasTimeoutError,
)
from exporter.lists.jobs import DETAIL_ENDPOINT, Task, TaskPage
from exporter.models import parse_model
from exporter.settings import GlobalConfig
from exporter.telemetry import Telemetry
from exporter.transport import Transport, retry_after_seconds
from tests.mocked_vias import BASE, FAST, Handler, mocked_transport, serve
from tests.support import job_items, telemetry_registry

LIST = "/v1/{project_id}/infer/tasks"
PARSE_PAGE = partial(parse_model, TaskPage, endpoint=LIST)
PAGE_1 = {"page": "1", "page_size": "50"}


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The transport's retry waits, recorded instead of slept."""
    waited: list[float] = []

    async def record(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(exporter.transport, "AsyncRetrying", partial(AsyncRetrying, sleep=record))
    return waited


def _transport(
    session: aiohttp.ClientSession,
    telemetry: Telemetry,
    settings: GlobalConfig = FAST,
    auth: Auth | None = None,
) -> Transport:
    return mocked_transport(session, telemetry, settings, auth)


def _in_turn(*answers: CallbackResult) -> Handler:
    """Each request gets the next answer; a request beyond them fails the test."""
    queue = iter(answers)
    return lambda url: next(queue)


def _count(telemetry: Telemetry, metric: str, **labels: str) -> float:
    return telemetry_registry(telemetry).get_sample_value(metric, labels) or 0.0


def _requests(telemetry: Telemetry, code: str, endpoint: str = LIST) -> float:
    return _count(
        telemetry, "vias_api_requests_total", project_id="p1", endpoint=endpoint, code=code
    )


async def _first_page(transport: Transport) -> TaskPage:
    return await transport.get(LIST, PAGE_1, PARSE_PAGE)


GOOD = CallbackResult(payload={"count": 3, "tasks": job_items(0, 3)})
CUT = CallbackResult(body='{"count": 3, "tasks": [{"id"')
UNAVAILABLE = CallbackResult(status=503, body="<html><h1>503 Service Unavailable</h1></html>")


async def test_the_request_carries_the_path_query_and_credentials(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    headers: list[dict[str, str]] = []

    def handler(url: URL, **kwargs: Any) -> CallbackResult:
        headers.append(kwargs["headers"])
        return GOOD

    mocked.get(re.compile(r".*"), callback=handler)
    page = await _first_page(_transport(session, Telemetry()))
    assert [t.id for t in page.items] == ["job-0", "job-1", "job-2"]
    ((method, url),) = mocked.requests
    assert (method, url.path, dict(url.query)) == ("GET", "/v1/p1/infer/tasks", PAGE_1)
    assert headers == [{"X-Auth-Token": "tok"}]


async def test_path_fields_are_quoted(session: aiohttp.ClientSession, mocked: aioresponses) -> None:
    mocked.get(re.compile(r".*"), payload={"id": "a/b c", "state": "FAILED"})
    parse = partial(parse_model, Task, endpoint=DETAIL_ENDPOINT)
    task = await _transport(session, Telemetry()).get(DETAIL_ENDPOINT, {}, parse, task_id="a/b c")
    assert (task.id, task.state) == ("a/b c", "FAILED")
    assert [url.raw_path for _, url in mocked.requests] == ["/v1/p1/infer/tasks/a%2Fb%20c"]


async def test_retries_5xx_then_succeeds_and_counts_every_attempt(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    telemetry = Telemetry()
    serve(
        mocked,
        "/v1/p1/infer/tasks",
        _in_turn(
            UNAVAILABLE,
            CallbackResult(status=500, payload={"error_code": "VIAS.00010006", "error_msg": "x"}),
            GOOD,
        ),
    )
    assert len((await _first_page(_transport(session, telemetry))).items) == 3
    for code in ("503", "500", "200"):
        assert _requests(telemetry, code) == 1


@pytest.mark.parametrize(
    ("retry_after", "waited"),
    [("2", 2.0), ("600", 10.0), ("0", 0.0)],
    ids=["as-sent", "capped-at-backoff-max", "zero"],
)
async def test_throttling_waits_the_retry_after_capped(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    sleeps: list[float],
    retry_after: str,
    waited: float,
) -> None:
    # Without Retry-After the first wait would be 1-2 s (exponential with jitter).
    settings = GlobalConfig(backoff_initial_seconds=1, backoff_max_seconds=10, max_retries=1)
    throttled = CallbackResult(
        status=429,
        headers={"Retry-After": retry_after},
        payload={"error_code": "APIGW.0308", "error_msg": "throttled", "request_id": "r-1"},
    )
    serve(mocked, "/v1/p1/infer/tasks", _in_turn(throttled, GOOD))
    assert len((await _first_page(_transport(session, Telemetry(), settings))).items) == 3
    assert sleeps == [waited]


async def test_backoff_without_retry_after_is_exponential(
    session: aiohttp.ClientSession, mocked: aioresponses, sleeps: list[float]
) -> None:
    settings = GlobalConfig(backoff_initial_seconds=1, backoff_max_seconds=10, max_retries=2)
    serve(mocked, "/v1/p1/infer/tasks", _in_turn(UNAVAILABLE, UNAVAILABLE, GOOD))
    await _first_page(_transport(session, Telemetry(), settings))
    assert len(sleeps) == 2
    assert 1 <= sleeps[0] <= 2 and 2 <= sleeps[1] <= 3  # initial * 2**n + jitter(initial)


def test_retry_after_header_values() -> None:
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("-3") == 0.0
    assert 55 <= (retry_after_seconds(in_a_minute) or 0) <= 60
    assert retry_after_seconds("Mon, 01 Jan 2001 00:00:00 GMT") == 0.0  # in the past
    for meaningless in (None, "", "soon"):
        assert retry_after_seconds(meaningless) is None


async def test_html_gateway_error_after_retries_is_typed_with_a_safe_excerpt(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    asked = serve(
        mocked,
        "/v1/p1/infer/tasks",
        lambda url: CallbackResult(
            status=502, body="<html><body><h1>502 Bad Gateway</h1>" + "x" * 5000 + "</body></html>"
        ),
    )
    with pytest.raises(ViasHTTPError) as caught:
        await _first_page(_transport(session, Telemetry()))
    assert len(asked) == 1 + FAST.max_retries
    error = caught.value
    assert (error.status, error.reason, error.retryable) == (502, "server_error", True)
    assert error.excerpt.startswith("502 Bad Gateway") and len(error.excerpt) <= 200


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures_are_not_retried(
    session: aiohttp.ClientSession, mocked: aioresponses, status: int
) -> None:
    asked = serve(
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
        await _first_page(_transport(session, Telemetry()))
    assert len(asked) == 1
    error = caught.value
    assert (error.error_code, error.request_id, error.reason, error.retryable) == (
        "APIGW.0301",
        "abc123",
        "auth",
        False,
    )
    assert "tok" not in str(error)


@pytest.mark.parametrize(("pause", "sent"), [(30.0, 1), (0.0, 2)])
async def test_refused_credentials_pause_the_next_requests(
    session: aiohttp.ClientSession, mocked: aioresponses, pause: float, sent: int
) -> None:
    asked = serve(
        mocked,
        "/v1/p1/infer/tasks",
        lambda url: CallbackResult(status=401, payload={"error_code": "APIGW.0301"}),
    )
    settings = FAST.model_copy(update={"auth_backoff_seconds": pause})
    transport = _transport(session, Telemetry(), settings)
    with pytest.raises(ViasHTTPError) as refused:
        await _first_page(transport)
    assert refused.value.error_code == "APIGW.0301"
    # Within the pause nothing is sent: the request is skipped, saying why and until when.
    expected = ViasAuthCoolDown if pause else ViasHTTPError
    with pytest.raises(expected) as caught:
        await _first_page(transport)
    assert caught.value.error_code == "APIGW.0301"
    if pause:
        assert re.fullmatch(
            r"skipped: credentials refused \(APIGW\.0301\) 0 s ago, next try in 30 s",
            str(caught.value),
        )
    assert len(asked) == sent


async def test_a_success_ends_the_doubling_of_the_pause(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    """Refused, then accepted after the pause, then refused again: the pause starts over at
    30 s (without the reset on success it would double to 60 s, then 120 s)."""
    refused = CallbackResult(status=401, payload={"error_code": "APIGW.0301"})
    serve(mocked, "/v1/p1/infer/tasks", _in_turn(refused, GOOD, refused))
    now = [0.0]
    transport = Transport(
        session=session,
        base_url=BASE,
        project_id="p1",
        auth=TokenAuth(SecretStr("tok")),
        telemetry=Telemetry(),
        settings=FAST,
        account_cool_down=CoolDown(30, 600, clock=lambda: now[0]),
    )
    with pytest.raises(ViasHTTPError):
        await _first_page(transport)
    now[0] += 31
    assert len((await _first_page(transport)).items) == 3
    with pytest.raises(ViasHTTPError):
        await _first_page(transport)
    with pytest.raises(ViasAuthCoolDown) as skipped:
        await _first_page(transport)
    assert str(skipped.value).endswith("next try in 30 s")


async def test_a_403_pauses_its_endpoint_alone(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    """A permission missing on one endpoint: the next request to it is skipped (nothing
    sent), another endpoint's is sent."""
    forbidden = serve(
        mocked,
        "/v1/p1/infer/tasks",
        lambda url: CallbackResult(status=403, payload={"error_code": "VIAS.00010003"}),
    )
    asked = serve(mocked, "/v2/p1/tasks", lambda url: GOOD)
    transport = _transport(session, Telemetry())
    with pytest.raises(ViasHTTPError):
        await _first_page(transport)
    with pytest.raises(ViasAuthCoolDown) as skipped:
        await _first_page(transport)
    assert str(skipped.value).startswith("skipped: permission refused (VIAS.00010003)")
    page = await transport.get("/v2/{project_id}/tasks", PAGE_1, PARSE_PAGE)
    assert len(page.items) == 3
    assert (len(forbidden), len(asked)) == (1, 1)


async def test_timeouts_and_connection_errors_are_typed(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.get(re.compile(r".*/infer/tasks.*"), exception=TimeoutError(), repeat=True)
    mocked.get(
        re.compile(r".*/v2/p1/tasks.*"),
        exception=aiohttp.ClientConnectionError("refused"),
        repeat=True,
    )
    telemetry = Telemetry()
    transport = _transport(session, telemetry)
    with pytest.raises(ViasTimeoutError):
        await _first_page(transport)
    with pytest.raises(ViasConnectionError):
        await transport.get("/v2/{project_id}/tasks", PAGE_1, PARSE_PAGE)
    assert _requests(telemetry, "timeout") == 1 + FAST.max_retries
    assert _requests(telemetry, "connection_error", "/v2/{project_id}/tasks") == 3


async def test_cut_json_is_retried_wrong_shape_is_not(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    cut = serve(mocked, "/v1/p1/infer/tasks", lambda url: CUT)
    wrong = serve(mocked, "/v2/p1/tasks", lambda url: CallbackResult(payload={"tasks": "oops"}))
    transport = _transport(session, Telemetry())
    with pytest.raises(ViasResponseError) as cut_error:
        await _first_page(transport)
    with pytest.raises(ViasResponseError) as wrong_error:
        await transport.get("/v2/{project_id}/tasks", PAGE_1, PARSE_PAGE)
    assert (cut_error.value.retryable, wrong_error.value.retryable) == (True, False)
    assert (len(cut), len(wrong)) == (1 + FAST.max_retries, 1)


async def test_a_cut_body_then_a_good_one_is_one_retry(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    telemetry = Telemetry()
    asked = serve(mocked, "/v1/p1/infer/tasks", _in_turn(CUT, GOOD))
    settings = FAST.model_copy(update={"max_retries": 1})
    assert len((await _first_page(_transport(session, telemetry, settings))).items) == 3
    assert len(asked) == 2 and _requests(telemetry, "200") == 2


async def test_a_5xx_then_a_cut_body_exhausts_the_one_budget(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    asked = serve(mocked, "/v1/p1/infer/tasks", _in_turn(UNAVAILABLE, CUT, GOOD))
    settings = FAST.model_copy(update={"max_retries": 1})
    with pytest.raises(ViasResponseError):
        await _first_page(_transport(session, Telemetry(), settings))
    assert len(asked) == 2  # the good third answer is never asked for


async def test_revoked_iam_token_is_refreshed_once(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
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
        return GOOD

    mocked.get(re.compile(r".*/infer/tasks.*"), callback=handler, repeat=True)
    auth = IamPasswordAuth(
        session=session,
        iam_endpoint=BASE,
        username="u",
        password=SecretStr("pw"),
        domain_name="d",
        project_id="p1",
        telemetry=telemetry,
        cool_down=CoolDown(30, 600),
    )
    page = await _first_page(_transport(session, telemetry, auth=auth))
    assert len(page.items) == 3
    assert auth.logins == 2
    assert _requests(telemetry, "401") == 1 and _requests(telemetry, "200") == 1
    assert (
        _count(telemetry, "vias_auth_token_expiry_timestamp_seconds", project_id="p1") == 4070908800
    )
