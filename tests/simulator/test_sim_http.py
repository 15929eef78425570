"""The simulator over real HTTP: the five VIAS APIs, IAM, token and AK/SK auth, admin API."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from exporter.signing import sign_request
from exporter.simulator import World, run_simulator

from .helpers import ACCESS_KEY, DOMAIN, PASSWORD, SECRET_KEY, TOKEN, USER, Live, make_sim

VIAS_ERROR_KEYS = {"error_code", "error_msg", "detail", "params", "reason", "advice", "request_id"}


async def all_pages(live: Live, path: str, page_param: str, size: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in range(1, 100):
        reply = await live.get(path, params={page_param: page, "page_size": size})
        assert reply.status == 200
        body = reply.json()
        chunk = body.get("tasks", body.get("batch_task_list"))
        items += chunk
        if len(chunk) < size:
            return items
    raise AssertionError("paging never ended")


def assert_request_id(reply: Any) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", reply.headers["X-Request-Id"])
    if reply.headers.get("Content-Type", "").startswith("application/json"):
        body = reply.json()
        if isinstance(body, dict) and "error_code" in body:
            assert body["request_id"] == reply.headers["X-Request-Id"]


# --- GET /v2/{project_id}/tasks ---


async def test_v2_tasks_page_shape(live: Live) -> None:
    reply = await live.get("/v2/p1/tasks")
    assert reply.status == 200
    assert_request_id(reply)
    assert reply.headers["X-ratelimit"] == "200" and int(reply.headers["X-ratelimit-used"]) >= 1
    body = reply.json()
    assert (body["count"], body["page"], body["page_size"], len(body["tasks"])) == (10, 1, 10, 10)
    for item in body["tasks"]:
        task = live.world.projects["p1"].tasks[item["id"]]
        assert item["type"] == {"cloud": "0", "edge": "1"}[task.deployment]
        assert item["created_at"] == str(task.created_at_ms) and item["state"] == task.state
        assert (item["company"], item["title"], item["group_name"]) == (
            task.vendor,
            task.algorithm,
            task.video_group,
        )


async def test_v2_tasks_all_pages_newest_first_and_count_is_per_page(live: Live) -> None:
    project = live.world.projects["p1"]
    items = await all_pages(live, "/v2/p1/tasks", "page", 50)
    assert [i["id"] for i in items] == [t.id for t in project.newest_first(0, 10_000)]
    last = (await live.get("/v2/p1/tasks", params={"page": 3, "page_size": 50})).json()
    assert last["count"] == len(last["tasks"]) == 20
    beyond = (await live.get("/v2/p1/tasks", params={"page": 9, "page_size": 50})).json()
    assert beyond["count"] == 0 and beyond["tasks"] == []


async def test_v2_error_only_on_jobs_that_have_one(live: Live) -> None:
    items = await all_pages(live, "/v2/p1/tasks", "page", 1000)
    broken = [i for i in items if "error" in i]
    assert broken and all(i["error"]["code"].startswith("VIAS.") for i in broken)
    assert {i["id"] for i in broken} == {
        t.id for t in live.world.projects["p1"].tasks.values() if t.error_code
    }


async def test_listing_reflects_changes_immediately(live: Live) -> None:
    project = live.world.projects["p1"]
    first = (await live.get("/v2/p1/tasks")).json()["tasks"][0]
    project.set_state(first["id"], "ABNORMAL", "VIAS.10010002")
    again = (await live.get("/v2/p1/tasks")).json()["tasks"][0]
    assert again["state"] == "ABNORMAL" and again["error"]["code"] == "VIAS.10010002"
    added = project.add_task(state="STOPPED")
    assert (await live.get("/v2/p1/tasks")).json()["tasks"][0]["id"] == added.id


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v2/p1/tasks", {"page_size": 4}),
        ("/v2/p1/tasks", {"page_size": 1001}),
        ("/v2/p1/tasks", {"page_size": "ten"}),
        ("/v2/p1/tasks", {"page": 0}),
        ("/v1/p1/infer/tasks", {"page_size": 51}),
        ("/v2/p1/batch-tasks", {"page_size": 201}),
        ("/v2/p1/batch-tasks", {"page_num": 0}),
        ("/v2/p1/batch-tasks", {"page_num": 10001}),
        ("/v2/p1/services/c-face-edge/tasks", {"page_size": 101}),
    ],
)
async def test_out_of_range_paging_is_400(live: Live, path: str, params: dict[str, Any]) -> None:
    reply = await live.get(path, params=params)
    assert reply.status == 400
    body = reply.json()
    assert set(body) == VIAS_ERROR_KEYS
    assert body["error_code"] == "VIAS.00010001" and body["params"] == list(params)
    assert_request_id(reply)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v2/p1/tasks", {"page_size": 1000, "page": 1}),
        ("/v2/p1/tasks", {"page_size": 5}),
        ("/v2/p1/batch-tasks", {"page_size": 200, "page_num": 10000}),
        ("/v1/p1/infer/tasks", {"page_size": 50}),
    ],
)
async def test_paging_bounds_are_inclusive(live: Live, path: str, params: dict[str, Any]) -> None:
    assert (await live.get(path, params=params)).status == 200


# --- GET /v2/{project_id}/batch-tasks ---


async def test_batch_tasks(live: Live) -> None:
    project = live.world.projects["p1"]
    reply = await live.get("/v2/p1/batch-tasks", params={"page_size": 5})
    body = reply.json()
    assert body["count"] == len(body["batch_task_list"]) == 3
    for item in body["batch_task_list"]:
        batch = project.batch_tasks[item["id"]]
        states = item["batch_task_status_info"]
        assert states == batch.status_counts() and sum(states.values()) == item["num_task"]
        assert all(state.islower() and n > 0 for state, n in states.items())
        assert isinstance(item["created_at"], int) and item["type"] in {"0", "1"}
        assert (item["alg_name"], item["company"]) == (batch.algorithm, batch.vendor)


async def test_batch_tasks_count_is_total(live: Live) -> None:
    project = live.world.projects["p1"]
    for number in range(10):
        project.add_batch_task(name=f"extra-{number}")
    second = (await live.get("/v2/p1/batch-tasks", params={"page_size": 5, "page_num": 3})).json()
    assert second["count"] == 13 and len(second["batch_task_list"]) == 3
    whole = (await live.get("/v2/p1/batch-tasks", params={"is_paged": "false"})).json()
    assert len(whole["batch_task_list"]) == 13


async def test_batch_states_follow_member_jobs(live: Live) -> None:
    project = live.world.projects["p2"]
    batch = project.add_batch_task(name="staged")
    for state in ("RUNNING", "RUNNING", "ABNORMAL"):
        project.add_task(state=state, batch_id=batch.id)
    listing = (await live.get("/v2/p2/batch-tasks", params={"is_paged": "false"})).json()
    (item,) = [b for b in listing["batch_task_list"] if b["id"] == batch.id]
    assert item["batch_task_status_info"] == {"running": 2, "abnormal": 1}


# --- /v1 infer tasks ---


async def test_v1_list_same_jobs_with_word_types(live: Live) -> None:
    v1 = await all_pages(live, "/v1/p1/infer/tasks", "page", 50)
    v2 = await all_pages(live, "/v2/p1/tasks", "page", 1000)
    assert [i["id"] for i in v1] == [i["id"] for i in v2]
    assert {i["type"] for i in v1} == {"cloud", "edge"}
    page = (await live.get("/v1/p1/infer/tasks", params={"page_size": 50, "page": 3})).json()
    assert page["count"] == len(page["tasks"]) == 20


async def test_v1_detail(live: Live) -> None:
    project = live.world.projects["p1"]
    healthy = project.add_task(state="RUNNING", deployment="edge")
    broken = project.add_task(state="FAILED", error_code="VIAS.10030001")
    body = (await live.get(f"/v1/p1/infer/tasks/{healthy.id}")).json()
    assert (body["id"], body["type"], body["error"], body["state"]) == (
        healthy.id,
        "edge",
        None,
        "RUNNING",
    )
    assert "service_id" not in body
    body = (await live.get(f"/v1/p1/infer/tasks/{broken.id}")).json()
    assert body["error"]["code"] == "VIAS.10030001" and body["error"]["message"]
    missing = await live.get("/v1/p1/infer/tasks/nope")
    assert missing.status == 404 and missing.json()["error_code"] == "VIAS.00010002"
    assert_request_id(missing)


# --- face-edge tasks ---


async def test_face_edge_paging_and_total_count(live: Live) -> None:
    first = (await live.get("/v2/p1/services/c-face-edge/tasks")).json()
    assert first["count"] == 25 and len(first["tasks"]) == 10
    last = (
        await live.get("/v2/p1/services/c-face-edge/tasks", params={"page": 3, "page_size": 10})
    ).json()
    assert last["count"] == 25 and len(last["tasks"]) == 5
    item = first["tasks"][0]
    assert datetime.strptime(item["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert not {"company", "title", "type"} & set(item)
    assert item["state"] == live.world.projects["p1"].face_edge_tasks[item["id"]].state


async def test_face_edge_without_paging_returns_everything(sim_world: World) -> None:
    sim = make_sim(sim_world, face_edge_paging=False)
    async with run_simulator(sim) as url, aiohttp.ClientSession() as http:
        live = Live(sim, url, http)
        reply = await live.get("/v2/p1/services/c-face-edge/tasks", params={"page_size": 10})
        assert reply.json()["count"] == len(reply.json()["tasks"]) == 25
        again = await live.get("/v2/p1/services/c-face-edge/tasks", params={"page": 2})
        assert again.body == reply.body


# --- routing errors ---


async def test_unknown_project_and_route(live: Live) -> None:
    for path in ("/v2/nope/tasks", "/v2/p1/unknown"):
        reply = await live.get(path)
        assert reply.status == 404 and reply.json()["error_code"] == "APIGW.0101"
        assert_request_id(reply)


# --- token auth ---


@pytest.mark.parametrize("token", [None, "wrong", "sim-tökén"])
async def test_bad_or_missing_token_is_401(live: Live, token: str | None) -> None:
    reply = await live.get("/v2/p1/tasks", token=token)
    assert reply.status == 401
    assert set(reply.json()) == {"error_code", "error_msg", "request_id"}
    assert reply.json()["error_code"] == "APIGW.0301"
    assert_request_id(reply)


async def test_requests_are_recorded(live: Live) -> None:
    await live.get("/v2/p1/tasks", params={"page": 2, "page_size": 5})
    await live.get("/v2/p1/tasks", token=None)
    await live.call("POST", "/_sim/step")
    assert [(r.method, r.path, r.query, r.status, r.auth) for r in live.sim.requests] == [
        ("GET", "/v2/p1/tasks", {"page": "2", "page_size": "5"}, 200, "token"),
        ("GET", "/v2/p1/tasks", {}, 401, "none"),
    ]


# --- IAM ---


def login_body(password: str = PASSWORD, project_id: str = "p1") -> dict[str, Any]:
    user = {"name": USER, "password": password, "domain": {"name": DOMAIN}}
    return {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"id": project_id}},
        }
    }


async def login(live: Live, **kwargs: Any) -> str:
    reply = await live.call("POST", "/v3/auth/tokens", token=None, body=login_body(**kwargs))
    assert reply.status == 201
    expires = datetime.strptime(reply.json()["token"]["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    in_a_day = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    assert abs(expires - in_a_day) < timedelta(minutes=1)
    return reply.headers["X-Subject-Token"]


async def test_iam_login_issues_a_project_scoped_token(live: Live) -> None:
    token = await login(live)
    assert (await live.get("/v2/p1/tasks", token=token)).status == 200
    assert (await live.get("/v2/p2/tasks", token=token)).status == 401
    assert (await live.get("/v2/p2/tasks", token=await login(live, project_id="p2"))).status == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (login_body(password="wrong"), 401),
        (login_body(password="pässwörd"), 401),
        ({"auth": {}}, 400),
        ("not an object", 400),
    ],
)
async def test_iam_login_refused(live: Live, body: Any, status: int) -> None:
    reply = await live.call("POST", "/v3/auth/tokens", token=None, body=body)
    assert reply.status == status and reply.json()["error"]["code"] == status
    assert "X-Subject-Token" not in reply.headers


async def test_expired_and_revoked_tokens(live: Live) -> None:
    token = await login(live)
    live.sim.clock_offset = timedelta(hours=25)
    assert (await live.get("/v2/p1/tasks", token=token)).status == 401
    live.sim.clock_offset = timedelta(0)
    assert (await live.get("/v2/p1/tasks", token=token)).status == 200
    assert (await live.call("POST", "/_sim/expire-tokens")).json() == {"expired": 1}
    assert (await live.get("/v2/p1/tasks", token=token)).status == 401
    assert (await live.get("/v2/p1/tasks")).status == 200  # the static token is not issued
    assert (await live.get("/v2/p1/tasks", token=await login(live))).status == 200


# --- AK/SK ---


async def signed_get(
    live: Live,
    path: str,
    *,
    secret: str = SECRET_KEY,
    access_key: str = ACCESS_KEY,
    project_id: str = "p1",
    skew: timedelta = timedelta(0),
) -> int:
    url = live.url + path
    base = {"X-Project-Id": project_id}
    now = datetime.now(UTC) + skew
    headers = {**base, **sign_request("GET", url, base, b"", access_key, secret, now)}
    async with live.http.get(url, headers=headers) as response:
        if response.status == 401:
            assert (await response.json())["error_code"] == "APIGW.0301"
        return response.status


async def test_aksk_signed_requests_are_accepted(live: Live) -> None:
    assert await signed_get(live, "/v2/p1/tasks?page=1&page_size=1000") == 200
    assert await signed_get(live, "/v1/p1/infer/tasks?task_name=a%20b~%C3%A9&page=1") == 200
    assert await signed_get(live, "/v2/p1/batch-tasks") == 200
    assert [r.auth for r in live.sim.requests] == ["aksk"] * 3


@pytest.mark.parametrize(
    "change",
    [
        {"secret": "wrong"},
        {"access_key": "AKUNKNOWN"},
        {"skew": timedelta(minutes=16)},
        {"skew": -timedelta(minutes=16)},
        {"project_id": "p2"},
    ],
)
async def test_aksk_refused(live: Live, change: dict[str, Any]) -> None:
    assert await signed_get(live, "/v2/p1/tasks", **change) == 401


async def test_aksk_skew_is_measured_on_the_simulator_clock(live: Live) -> None:
    live.sim.clock_offset = timedelta(minutes=20)
    assert await signed_get(live, "/v2/p1/tasks") == 401
    assert await signed_get(live, "/v2/p1/tasks", skew=timedelta(minutes=20)) == 200


# --- admin API ---


async def test_admin_step_and_truth(live: Live) -> None:
    before = (await live.call("GET", "/_sim/truth/p1", token=None)).json()
    assert before == live.world.projects["p1"].truth()
    assert {"tasks", "batch_tasks", "face_edge_tasks"} <= set(before)
    stepped = (await live.call("POST", "/_sim/step", token=None)).json()
    assert stepped["ticks"] == live.world.ticks == 1
    after = (await live.call("GET", "/_sim/truth/p1", token=None)).json()
    assert after != before and after == live.world.projects["p1"].truth()
    assert (await live.call("GET", "/_sim/truth/nope", token=None)).status == 404


async def test_admin_faults(live: Live) -> None:
    faults = [{"kind": "throttle", "match": "/batch-tasks", "times": 1, "retry_after": 2}]
    added = await live.call("POST", "/_sim/faults", token=None, body=faults)
    assert added.json()["faults"][0]["kind"] == "throttle"
    assert (await live.get("/v2/p1/batch-tasks")).status == 429
    assert (await live.call("GET", "/_sim/faults")).json() == {"faults": []}
    await live.call("POST", "/_sim/faults", body=[{"kind": "unauthorized"}])
    assert (await live.get("/v2/p1/tasks")).status == 401
    await live.call("DELETE", "/_sim/faults")
    assert (await live.get("/v2/p1/tasks")).status == 200
    for bad in ([{"kind": "meteor"}], [{"kind": "latency", "nope": 1}], {"kind": "latency"}):
        assert (await live.call("POST", "/_sim/faults", body=bad)).status == 400


@pytest.fixture
async def stepping(sim_world: World) -> AsyncIterator[World]:
    async with run_simulator(make_sim(sim_world), step_interval=0.01):
        yield sim_world


async def test_background_stepping(stepping: World) -> None:
    stepped = asyncio.Event()
    step = stepping.step

    def observed_step() -> None:
        step()
        stepped.set()

    stepping.step = observed_step  # type: ignore[method-assign]
    await asyncio.wait_for(stepped.wait(), timeout=5)
    assert stepping.ticks >= 1


async def test_static_token_can_be_disabled(sim_world: World) -> None:
    sim = make_sim(sim_world)
    sim.token = None
    async with run_simulator(sim) as url, aiohttp.ClientSession() as http:
        assert (await Live(sim, url, http).get("/v2/p1/tasks", token=TOKEN)).status == 401
