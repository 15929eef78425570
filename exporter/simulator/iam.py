"""The simulated account's projects as IAM lists them, and the admin calls that change them.

`GET /v3/auth/projects` (any valid token of the account: the projects its user can access,
unpaged) and `GET /v3/projects` (AK/SK-signed or a token: the account's projects, with the
`domain_id`, `name`, `parent_id`, `enabled` and `is_domain` filters and `page`/`per_page`
paging, 1..5000, both or neither). A project's region is its name, or the part before the
first `_` for a sub-project.

Admin (no auth, not recorded): `GET /_sim/iam/projects`, `PUT /_sim/iam/projects/{id}`
(`{"name", "enabled", "description", "parent_id", "tasks"}`: add or change a project; a
new one is also created in the VIAS world, with `tasks` running jobs, unless it exists)
and `DELETE /_sim/iam/projects/{id}` (gone from IAM; its VIAS data stays).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from exporter.signing import verify_request
from exporter.simulator.answers import gateway_error, iam_error_answer, json_answer
from exporter.simulator.world import ProjectData, World

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator

DOMAIN_ID = "0970dd7a1300f5672ff2c003c60ae115"
DEFAULT_REGION = "cn-north-4"
MAX_PER_PAGE = 5000
IAM_PATHS = ("/v3/auth/projects", "/v3/projects")


@dataclass(slots=True)
class IamProject:
    id: str
    name: str
    parent_id: str = DOMAIN_ID
    enabled: bool = True
    is_domain: bool = False
    description: str = ""
    domain_id: str = DOMAIN_ID

    def to_json(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "domain_id": self.domain_id,
            "parent_id": self.parent_id,
            "enabled": self.enabled,
            "is_domain": self.is_domain,
            "description": self.description,
            "links": {"self": f"{base_url}/v3/projects/{self.id}"},
        }


class IamDirectory:
    """The projects of the simulated account (one domain), in creation order."""

    def __init__(self, projects: list[IamProject] | None = None) -> None:
        self.projects: dict[str, IamProject] = {p.id: p for p in projects or []}

    @classmethod
    def for_world(cls, world: World, region: str = DEFAULT_REGION) -> IamDirectory:
        """Every world project as a sub-project of `region` (`cn-north-4_p1`), plus two
        entries that are no VIAS project: OBS billing's (`MOS`, in no region) and one that
        is a domain (`is_domain`)."""
        return cls(
            [
                IamProject(id="mos-project", name="MOS", description="OBS billing"),
                IamProject(id=DOMAIN_ID, name=f"{region}_domain", is_domain=True),
                *(IamProject(id=pid, name=f"{region}_{pid}") for pid in world.projects),
            ]
        )

    def listing(self, query: dict[str, str]) -> list[IamProject]:
        """The projects matching `/v3/projects`' filters."""
        found = list(self.projects.values())
        for field in ("domain_id", "name", "parent_id"):
            if field in query:
                found = [p for p in found if getattr(p, field) == query[field]]
        for flag in ("enabled", "is_domain"):
            if flag in query:
                wanted = query[flag].lower() == "true"
                found = [p for p in found if getattr(p, flag) == wanted]
        return found


def _page(request: web.Request) -> tuple[int, int] | None:
    """`page` and `per_page`, both or neither (IAM refuses one alone), in bounds."""
    page, per_page = request.query.get("page"), request.query.get("per_page")
    if page is None and per_page is None:
        return None
    try:
        number, size = int(page or ""), int(per_page or "")
    except ValueError:
        number = size = 0
    if number < 1 or not 1 <= size <= MAX_PER_PAGE:
        raise _IamRefusal(400, f"page >= 1 and per_page 1..{MAX_PER_PAGE} go together")
    return number, size


class _IamRefusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def routes(sim: Simulator) -> list[web.RouteDef]:
    def base_url(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    def answer(request: web.Request, projects: list[IamProject], more: bool) -> web.Response:
        url = str(request.url)
        links = {"self": url, "previous": None, "next": url if more else None}
        listed = [project.to_json(base_url(request)) for project in projects]
        return json_answer(200, {"links": links, "projects": listed})

    async def authenticated(request: web.Request, *, aksk: bool) -> None:
        token = request.headers.get("X-Auth-Token")
        if token is not None:
            if sim.token_valid(token):
                return
            raise _IamRefusal(401, "The request you have made requires authentication.")
        if aksk and "Authorization" in request.headers:
            problem = verify_request(
                request.method,
                request.raw_path,
                request.headers,
                await request.read(),
                sim.access_keys.get,
                sim.now(),
            )
            if problem is None:
                return
            raise _IamRefusal(401, f"AK/SK authentication failed: {problem}")
        raise _IamRefusal(401, "The request you have made requires authentication.")

    async def auth_projects(request: web.Request) -> web.Response:
        try:
            await authenticated(request, aksk=False)
        except _IamRefusal as refusal:
            return iam_error_answer(refusal.status, "Unauthorized", str(refusal))
        return answer(request, list(sim.iam.projects.values()), more=False)

    async def projects(request: web.Request) -> web.Response:
        try:
            await authenticated(request, aksk=True)
            bounds = _page(request)
        except _IamRefusal as refusal:
            title = "Unauthorized" if refusal.status == 401 else "Bad Request"
            return iam_error_answer(refusal.status, title, str(refusal))
        found = sim.iam.listing(dict(request.query))
        if bounds is None:
            return answer(request, found, more=False)
        number, size = bounds
        if request.get("first_page_only"):  # the `repeat_page` fault
            number = 1
        return answer(
            request, found[(number - 1) * size : number * size], number * size < len(found)
        )

    return [
        web.get("/v3/auth/projects", auth_projects),
        web.get("/v3/projects", projects),
        *admin_routes(sim),
    ]


def admin_routes(sim: Simulator) -> list[web.RouteDef]:
    async def listing(request: web.Request) -> web.Response:
        return json_answer(200, {"projects": [p.to_json("") for p in sim.iam.projects.values()]})

    async def put_project(request: web.Request) -> web.Response:
        project_id = request.match_info["project_id"]
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise TypeError("a JSON object is expected")
            project = sim.iam.projects.get(project_id)
            if project is None:
                project = IamProject(id=project_id, name=str(body["name"]))
                sim.iam.projects[project_id] = project
                _ensure_world_project(sim.world, project_id, int(body.get("tasks", 0)))
            if "name" in body:
                project.name = str(body["name"])
            for flag in ("enabled", "is_domain"):
                if flag in body:
                    setattr(project, flag, bool(body[flag]))
            for text in ("description", "parent_id"):
                if text in body:
                    setattr(project, text, str(body[text]))
        except (ValueError, TypeError, KeyError) as error:
            raise gateway_error(400, "SIM.0001", f"bad project: {error!r}") from error
        return json_answer(200, project.to_json(""))

    async def delete_project(request: web.Request) -> web.Response:
        removed = sim.iam.projects.pop(request.match_info["project_id"], None)
        if removed is None:
            raise gateway_error(404, "SIM.0002", "no such project")
        return json_answer(200, removed.to_json(""))

    return [
        web.get("/_sim/iam/projects", listing),
        web.put("/_sim/iam/projects/{project_id}", put_project),
        web.delete("/_sim/iam/projects/{project_id}", delete_project),
    ]


def _ensure_world_project(world: World, project_id: str, tasks: int) -> None:
    """A project new to the account gets its (empty, or `tasks` running jobs) VIAS data."""
    if project_id in world.projects:
        return
    project = ProjectData(project_id, random.Random(f"iam/{project_id}"), world.now_ms)
    for _ in range(tasks):
        project.add_task(state="RUNNING")
    world.projects[project_id] = project
