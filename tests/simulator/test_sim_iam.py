"""The simulator's IAM project list over real HTTP: `/v3/auth/projects` (a token of the
account), `/v3/projects` (AK/SK-signed, filters, `page`/`per_page` paging) and the admin
calls that add, disable and remove projects at run time.

| change to the code (tried, seen red) | failing test |
|---|---|
| `/v3/auth/projects` accepts a request without a token | test_auth_projects_needs_a_valid_token |
| `/v3/projects` skips the signature check | test_projects_needs_a_valid_signature |
| paging starts at `number * size` (page 1 skipped) | test_projects_pages_cover_the_account_once |
| `per_page` 5001 accepted | test_paging_parameters_go_together_and_in_bounds |
| the `enabled` filter ignored | test_projects_filters |
| an added project gets no VIAS data | test_admin_adds_disables_and_removes_projects |
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from exporter.signing import sign_request
from exporter.simulator.iam import DOMAIN_ID, IamProject

from .helpers import ACCESS_KEY, DOMAIN, PASSWORD, SECRET_KEY, USER, Live, Reply

PROJECT_KEYS = {"id", "name", "domain_id", "parent_id", "enabled", "is_domain", "description"}


async def signed(live: Live, path: str, *, secret: str = SECRET_KEY) -> Reply:
    url = live.url + path
    headers = sign_request("GET", url, {}, b"", ACCESS_KEY, secret, datetime.now(UTC))
    async with live.http.get(url, headers=headers) as response:
        return Reply(response.status, await response.read(), response.headers)


async def login(live: Live, scope: dict[str, Any]) -> str:
    user = {"name": USER, "password": PASSWORD, "domain": {"name": DOMAIN}}
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": user}}}}
    body["auth"]["scope"] = scope
    reply = await live.call("POST", "/v3/auth/tokens", token=None, body=body)
    assert reply.status == 201
    return reply.headers["X-Subject-Token"]


def names(reply: Reply) -> list[str]:
    assert reply.status == 200, reply.body
    return [project["name"] for project in reply.json()["projects"]]


async def test_auth_projects_lists_the_accounts_projects(live: Live) -> None:
    token = await login(live, {"domain": {"name": DOMAIN}})
    reply = await live.get("/v3/auth/projects", token=token)
    assert names(reply) == ["MOS", "cn-north-4_domain", "cn-north-4_p1", "cn-north-4_p2"]
    projects = reply.json()["projects"]
    assert all(set(project) >= PROJECT_KEYS for project in projects)
    assert [p["is_domain"] for p in projects] == [False, True, False, False]
    assert {p["domain_id"] for p in projects} == {DOMAIN_ID}
    assert [p["id"] for p in projects][2:] == ["p1", "p2"]


async def test_auth_projects_needs_a_valid_token(live: Live) -> None:
    project_token = await login(live, {"project": {"id": "p1"}})  # any token of the user
    assert (await live.get("/v3/auth/projects", token=project_token)).status == 200
    assert (await live.get("/v3/auth/projects", token=None)).status == 401
    refused = await live.get("/v3/auth/projects", token="MIIsim-forged")
    assert refused.status == 401
    assert refused.json()["error"]["code"] == 401
    live.sim.expire_tokens()
    assert (await live.get("/v3/auth/projects", token=project_token)).status == 401


async def test_projects_needs_a_valid_signature(live: Live) -> None:
    assert (await signed(live, "/v3/projects")).status == 200
    assert (await signed(live, "/v3/projects", secret="wrong")).status == 401
    assert (await live.get("/v3/projects", token=None)).status == 401
    assert [r.auth for r in live.sim.requests] == ["aksk", "aksk", "none"]


async def test_projects_pages_cover_the_account_once(live: Live) -> None:
    for i in range(7):
        live.sim.iam.projects[f"x{i}"] = IamProject(f"x{i}", f"r_{i}")
    everything = names(await signed(live, "/v3/projects"))
    assert len(everything) == 11
    seen: list[str] = []
    for page in range(1, 10):
        reply = await signed(live, f"/v3/projects?page={page}&per_page=3")
        seen += names(reply)
        if len(reply.json()["projects"]) < 3:
            assert reply.json()["links"]["next"] is None
            break
        assert reply.json()["links"]["next"] is not None
    assert seen == everything
    assert page == 4


async def test_paging_parameters_go_together_and_in_bounds(live: Live) -> None:
    for query in ("page=1", "per_page=10", "page=0&per_page=10", "page=1&per_page=5001"):
        reply = await signed(live, f"/v3/projects?{query}")
        assert reply.status == 400, query
        assert reply.json()["error"]["title"] == "Bad Request"
    assert (await signed(live, "/v3/projects?page=1&per_page=5000")).status == 200


async def test_projects_filters(live: Live) -> None:
    await live.call("PUT", "/_sim/iam/projects/p2", body={"enabled": False})
    assert names(await signed(live, "/v3/projects?enabled=false")) == ["cn-north-4_p2"]
    assert "cn-north-4_p2" not in names(await signed(live, "/v3/projects?enabled=true"))
    assert names(await signed(live, "/v3/projects?name=MOS")) == ["MOS"]
    assert names(await signed(live, "/v3/projects?is_domain=true")) == ["cn-north-4_domain"]
    assert len(names(await signed(live, f"/v3/projects?domain_id={DOMAIN_ID}"))) == 4
    assert names(await signed(live, "/v3/projects?domain_id=other")) == []


async def test_admin_adds_disables_and_removes_projects(live: Live) -> None:
    token = await login(live, {"domain": {"name": DOMAIN}})
    added = await live.call(
        "PUT", "/_sim/iam/projects/p9", body={"name": "cn-east-3_new", "tasks": 4}
    )
    assert added.status == 200 and added.json()["enabled"] is True
    assert "cn-east-3_new" in names(await live.get("/v3/auth/projects", token=token))
    assert len(live.world.projects["p9"].tasks) == 4  # VIAS serves the new project too
    assert (await live.get("/v2/p9/tasks")).json()["count"] == 4

    await live.call("PUT", "/_sim/iam/projects/p9", body={"enabled": False})
    listed = (await live.get("/v3/auth/projects", token=token)).json()["projects"]
    assert [p["enabled"] for p in listed if p["id"] == "p9"] == [False]

    assert (await live.call("DELETE", "/_sim/iam/projects/p9")).status == 200
    assert "cn-east-3_new" not in names(await live.get("/v3/auth/projects", token=token))
    assert (await live.call("DELETE", "/_sim/iam/projects/p9")).status == 404
    bad = await live.call("PUT", "/_sim/iam/projects/p10", body={"enabled": True})  # no name
    assert bad.status == 400
    admin = await live.get("/_sim/iam/projects")
    assert [p["id"] for p in admin.json()["projects"]][-2:] == ["p1", "p2"]
    assert not any(r.path.startswith("/_sim/") for r in live.sim.requests)
