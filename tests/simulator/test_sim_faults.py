"""Every injectable fault, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from exporter.simulator import Fault

from .helpers import TOKEN, Live


async def test_fault_applies_times_then_stops(live: Live) -> None:
    live.sim.faults.add(Fault(kind="server_error_html", match="/v2/p1/tasks", times=2, status=503))
    statuses = [(await live.get("/v2/p1/tasks")).status for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert [r.fault for r in live.sim.requests] == ["server_error_html"] * 2 + [None]


async def test_fault_matches_by_path_substring(live: Live) -> None:
    live.sim.faults.add(Fault(kind="server_error_json", match="/batch-tasks"))
    assert (await live.get("/v2/p1/tasks")).status == 200
    assert (await live.get("/v2/p1/batch-tasks")).status == 500
    assert (await live.get("/v2/p2/batch-tasks")).status == 500  # times=None: until cleared
    live.sim.faults.clear()
    assert (await live.get("/v2/p1/batch-tasks")).status == 200


async def test_server_error_html(live: Live) -> None:
    live.sim.faults.add(Fault(kind="server_error_html", times=1))
    reply = await live.get("/v2/p1/tasks")
    assert reply.status == 502 and reply.headers["Content-Type"].startswith("text/html")
    assert b"502 Bad Gateway" in reply.body
    assert "X-Request-Id" in reply.headers


async def test_server_error_json(live: Live) -> None:
    live.sim.faults.add(Fault(kind="server_error_json", times=1))
    reply = await live.get("/v2/p1/tasks")
    assert reply.status == 500
    assert reply.json()["error_code"] == "VIAS.00010006"
    assert reply.json()["request_id"] == reply.headers["X-Request-Id"]


@pytest.mark.parametrize(("retry_after", "header"), [(3, "3"), (0.5, "0.5"), (None, None)])
async def test_throttle(live: Live, retry_after: float | None, header: str | None) -> None:
    live.sim.faults.add(Fault(kind="throttle", times=1, retry_after=retry_after))
    reply = await live.get("/v2/p1/tasks")
    assert reply.status == 429 and reply.json()["error_code"] == "APIGW.0308"
    assert reply.headers.get("Retry-After") == header


async def test_unauthorized_even_with_a_good_token(live: Live) -> None:
    live.sim.faults.add(Fault(kind="unauthorized", times=1))
    reply = await live.get("/v2/p1/tasks")
    assert reply.status == 401 and reply.json()["error_code"] == "APIGW.0301"
    assert (await live.get("/v2/p1/tasks")).status == 200


async def test_cut_json(live: Live) -> None:
    whole = (await live.get("/v2/p1/tasks")).body
    live.sim.faults.add(Fault(kind="cut_json", times=1))
    reply = await live.get("/v2/p1/tasks")
    assert reply.status == 200 and reply.body == whole[: len(whole) // 2]
    with pytest.raises(json.JSONDecodeError):
        reply.json()


async def test_wrong_shape(live: Live) -> None:
    live.sim.faults.add(Fault(kind="wrong_shape", times=1))
    live.sim.faults.add(Fault(kind="wrong_shape", times=1, body=[1, 2]))
    first = await live.get("/v2/p1/tasks")
    assert first.status == 200 and first.json()["tasks"] == "oops"
    assert (await live.get("/v2/p1/batch-tasks")).json() == [1, 2]


async def test_repeat_page_answers_page_one_forever(live: Live) -> None:
    live.sim.faults.add(Fault(kind="repeat_page", match="/v2/p1/tasks"))
    pages = [
        (await live.get("/v2/p1/tasks", params={"page": page, "page_size": 5})).json()
        for page in (1, 2, 50)
    ]
    assert pages[0]["tasks"] == pages[1]["tasks"] == pages[2]["tasks"]
    assert all(page["count"] == 5 for page in pages)
    live.sim.faults.clear()
    second = (await live.get("/v2/p1/tasks", params={"page": 2, "page_size": 5})).json()
    assert second["tasks"] != pages[0]["tasks"]


async def test_latency_fault_and_global_latency(live: Live) -> None:
    live.sim.faults.add(Fault(kind="latency", seconds=0.2, times=1))
    live.sim.faults.add(Fault(kind="throttle", times=1))
    started = time.monotonic()
    assert (await live.get("/v2/p1/tasks")).status == 429  # latency stacks with another fault
    assert time.monotonic() - started >= 0.2
    live.sim.latency_seconds = 0.1
    started = time.monotonic()
    assert (await live.get("/v2/p1/tasks")).status == 200
    assert time.monotonic() - started >= 0.1


async def test_slow_body_stalls_after_the_headers(live: Live) -> None:
    whole = (await live.get("/v2/p1/tasks")).body
    live.sim.faults.add(Fault(kind="slow_body", seconds=30, times=1))
    timeout = aiohttp.ClientTimeout(sock_read=0.3)
    async with live.http.get(
        live.url + "/v2/p1/tasks", headers={"X-Auth-Token": TOKEN}, timeout=timeout
    ) as response:
        assert response.status == 200  # the headers came
        with pytest.raises(asyncio.TimeoutError):
            await response.read()
    live.sim.faults.add(Fault(kind="slow_body", seconds=0.05, times=1))
    assert (await live.get("/v2/p1/tasks")).body == whole


def test_unknown_fault_kind() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault(kind="meteor")  # type: ignore[arg-type]


async def test_the_gateway_throttles_past_its_rate(live: Live) -> None:
    """`PUT /_sim/throttle`: at most `per_second` API requests in any second, the others
    429 APIGW.0308; IAM and the admin API are not counted; null turns it off."""
    now = [100.0]
    live.sim.gateway._clock = lambda: now[0]  # a still clock: every request in one second
    assert (await live.call("PUT", "/_sim/throttle", body={"per_second": 2})).status == 200
    statuses = [(await live.get("/v2/p1/tasks")).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = await live.get("/v2/p1/tasks")
    assert json.loads(refused.body)["error_code"] == "APIGW.0308"
    now[0] += 1.0  # a second later the window is empty again
    assert (await live.get("/v2/p1/tasks")).status == 200
    state = json.loads((await live.get("/_sim/throttle")).body)
    assert state == {"per_second": 2.0, "passed": 3, "refused": 2}
    bad = await live.call("PUT", "/_sim/throttle", body={"per_second": -1})
    assert bad.status == 400
    assert (await live.call("PUT", "/_sim/throttle", body={"per_second": None})).status == 200
    assert all([(await live.get("/v2/p1/tasks")).status == 200 for _ in range(5)])
