"""Simulated video sources (cameras) and video groups, their two list APIs and an admin
route to change a camera.

Each project's cameras are generated once, when the simulator starts, from a
`random.Random` seeded with the project's id and its seeded generator's state (the world
keeps no seed of its own: that state is a function of the world seed and the project id).
Half of them are the cameras the project's jobs name (`camera-{task id[:6]}`, as the v2
job answers spell `video_source_name`), so a job can be tied to its camera.

The lists behave as documented: `is_paged` defaults to false (everything in one answer,
page parameters ignored); with `is_paged=true`, `page_size` 5..200 and `page_num`
1..100000, a 400 outside. `total_number` is the total, `video_source_number` /
`video_group_number` the number on this page, `quota_number` the project's quota.
Groups' `group_status` is counted from their cameras at each request.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from exporter.simulator.answers import gateway_error, json_answer, page_bounds

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator
    from exporter.simulator.world import ProjectData, World

Json = dict[str, Any]
SOURCES_MAX_PAGE_SIZE = 200
GROUPS_MAX_PAGE_SIZE = 200
MAX_PAGE_NUM = 100_000
STATUS_CODES = {"online": 1, "offline": 2, "abnormal": 9}
STATUS_LEVELS = {"online": "normal", "offline": "critical", "abnormal": "major"}
SOURCE_TYPES = ("vcn", "camera", "url", "restful", "ivm", "obs", "vcn_restful")
QUALITY = ("Blurry", "BlackScreen", "ScreenFreeze", "Occlude", "AbnormalLight")


@dataclass(slots=True)
class SimSource:
    id: str
    name: str
    group_id: str
    access_type: str
    type: str
    created_at_ms: int
    status: Json  # as answered: {status, name, level}
    num_tasks: int = 0
    quality: list[str] = field(default_factory=list)

    @property
    def status_name(self) -> str:
        return str(self.status.get("name", "")).lower()


@dataclass(slots=True)
class SimGroup:
    id: str
    name: str
    access_type: str
    created_at_ms: int


@dataclass(slots=True)
class ProjectSources:
    sources: dict[str, SimSource] = field(default_factory=dict)
    groups: dict[str, SimGroup] = field(default_factory=dict)
    quota: int = 1000
    group_quota: int = 100


def status_object(name: str) -> Json:
    """The `status` object of a camera in status `name` (an undocumented name gets code 0)."""
    return {
        "status": STATUS_CODES.get(name, 0),
        "name": name.capitalize(),
        "level": STATUS_LEVELS.get(name, "info"),
    }


class SourceBook:
    """The cameras and groups of every project of a world."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.projects = {
            project_id: generate(project, healthy=world.scenario == "healthy")
            for project_id, project in world.projects.items()
        }

    def of(self, project_id: str) -> ProjectSources:
        if project_id not in self.projects:  # a project added to the world later
            self.projects[project_id] = generate(self._world.projects[project_id])
        return self.projects[project_id]


def generate(
    project: ProjectData, *, healthy: bool = False, count: int | None = None
) -> ProjectSources:
    """`count` cameras (by default 20 + one per 10 jobs, at most 400) in groups of ~20."""
    rng = random.Random(f"sources/{project.project_id}/{project.rng.getstate()[1][:8]}")
    count = min(20 + len(project.tasks) // 10, 400) if count is None else count
    made = ProjectSources(quota=max(100, (count * 3 // 200 + 1) * 100), group_quota=50)
    for number in range(3 + count // 20):
        group_id = f"{rng.getrandbits(64):016x}"
        made.groups[group_id] = SimGroup(
            group_id, f"group-{number:02d}", rng.choice(("cloud", "edge")), project.now_ms
        )
    job_cameras: dict[str, int] = {}
    for task_id in sorted(project.tasks):
        name = project.tasks[task_id].camera
        job_cameras[name] = job_cameras.get(name, 0) + 1
    named = list(job_cameras.items())[: count // 2]
    group_ids = list(made.groups)
    for number in range(count):
        name, jobs = named[number] if number < len(named) else (f"cam-{number:04d}", 0)
        status = "online"
        quality: list[str] = []
        if not healthy:
            # the first three are always there: offline with jobs, abnormal, poor quality
            draw = rng.random()
            if number == 0 or (number > 2 and draw < 0.08):
                status = "offline"
            elif number == 1 or (number > 2 and draw < 0.12):
                status = "abnormal"
            if number == 2 or (number > 2 and rng.random() < 0.1):
                quality = sorted(rng.sample(QUALITY, rng.randint(1, 2)))
        source_id = f"{rng.getrandbits(128):032x}"
        made.sources[source_id] = SimSource(
            id=source_id,
            name=name,
            group_id=group_ids[number % len(group_ids)],
            access_type=rng.choice(("cloud", "edge")),
            type=rng.choice(SOURCE_TYPES),
            created_at_ms=project.now_ms - number * 60_000,
            status=status_object(status),
            num_tasks=jobs or (1 if number == 0 else rng.randint(0, 2)),
            quality=quality,
        )
    return made


def source_answer(source: SimSource, project_id: str) -> Json:
    return {
        "video_source_id": source.id,
        "video_source_name": source.name,
        "status": source.status,
        "access_type": source.access_type,
        "type": source.type,
        "latitude": "39.9",
        "longitude": "116.4",
        "create_at": source.created_at_ms,
        "video_packages": [],
        "num_tasks": source.num_tasks,
        "num_service_config_templates": 0,
        "tag": [],
        "stream_path": f"rtsp://{project_id}.example.com/{source.name}",
        "scene_recommend": [],
        "video_source_quality": source.quality,
    }


def group_answer(group: SimGroup, sources: list[SimSource]) -> Json:
    statuses = [source.status_name for source in sources]
    offline = statuses.count("offline")
    online = statuses.count("online")
    return {
        "video_group_id": group.id,
        "video_group_name": group.name,
        "num_video_source": len(sources),
        "group_status": {
            "num_online": online,
            "num_exception": len(statuses) - online - offline,
            "num_offline": offline,
        },
        "access_type": group.access_type,
        "create_at": group.created_at_ms,
        "modify_at": group.created_at_ms,
        "num_batch_task": 0,
        "type": "normal",
    }


def _page(request: web.Request, items: list[Any], max_size: int) -> list[Any]:
    """Everything unless `is_paged=true` (the documented default is false)."""
    if request.query.get("is_paged", "false").lower() != "true":
        return items
    page, size = page_bounds(request, "page_num", max_size, max_page=MAX_PAGE_NUM)
    return items[(page - 1) * size : page * size]


def routes(sim: Simulator) -> list[web.RouteDef]:
    def book(request: web.Request) -> tuple[str, ProjectSources]:
        project_id = sim.project(request).project_id  # 404 for an unknown project
        return project_id, sim.video_sources.of(project_id)

    async def list_sources(request: web.Request) -> web.Response:
        project_id, project = book(request)
        every = sorted(project.sources.values(), key=lambda s: (-s.created_at_ms, s.id))
        listed = _page(request, every, SOURCES_MAX_PAGE_SIZE)
        return json_answer(
            200,
            {
                "video_source_number": len(listed),
                "total_number": len(every),
                "quota_number": project.quota,
                "video_source_list": [source_answer(s, project_id) for s in listed],
            },
        )

    async def list_groups(request: web.Request) -> web.Response:
        _, project = book(request)
        members: dict[str, list[SimSource]] = {group_id: [] for group_id in project.groups}
        for source in project.sources.values():
            members.setdefault(source.group_id, []).append(source)
        every = sorted(project.groups.values(), key=lambda g: (-g.created_at_ms, g.name))
        listed = _page(request, every, GROUPS_MAX_PAGE_SIZE)
        return json_answer(
            200,
            {
                "video_group_number": len(listed),
                "total_number": len(every),
                "quota_number": project.group_quota,
                "video_group_list": [group_answer(g, members[g.id]) for g in listed],
            },
        )

    async def put_source(request: web.Request) -> web.Response:
        """Change (or add) a camera: {"status": name or raw object, "quality": [...],
        "num_tasks": n, "name": ...}; fields left out stay."""
        _, project = book(request)
        source_id = request.match_info["video_source_id"]
        try:
            body = await request.json()
            source = project.sources.get(source_id)
            if source is None:
                group_id = next(iter(project.groups))
                source = SimSource(source_id, source_id, group_id, "cloud", "vcn", 0, {})
                source.status = status_object("online")
                project.sources[source_id] = source
            if "status" in body:
                raw = body["status"]
                source.status = raw if isinstance(raw, dict) else status_object(str(raw))
            if "quality" in body:
                source.quality = [str(kind) for kind in body["quality"]]
            if "num_tasks" in body:
                source.num_tasks = int(body["num_tasks"])
            if "name" in body:
                source.name = str(body["name"])
        except (ValueError, TypeError, KeyError, StopIteration) as error:
            raise gateway_error(400, "SIM.0001", f"bad source: {error!r}") from error
        return json_answer(200, source_answer(source, request.match_info["project_id"]))

    async def put_quotas(request: web.Request) -> web.Response:
        """Set the quotas: {"quota": n, "group_quota": m} (either may be left out)."""
        _, project = book(request)
        try:
            body = await request.json()
            project.quota = int(body.get("quota", project.quota))
            project.group_quota = int(body.get("group_quota", project.group_quota))
        except (ValueError, TypeError, AttributeError) as error:
            raise gateway_error(400, "SIM.0001", f"bad quotas: {error!r}") from error
        return json_answer(200, {"quota": project.quota, "group_quota": project.group_quota})

    return [
        web.get("/v2/{project_id}/source/sources", list_sources),
        web.get("/v2/{project_id}/video-group/groups", list_groups),
        web.put("/_sim/sources/{project_id}/{video_source_id}", put_source),
        web.put("/_sim/source-quotas/{project_id}", put_quotas),
    ]
