"""Correlated incidents: what jobs stand on (a camera, an edge pool, an algorithm service)
goes down, the jobs on it go ABNORMAL a step later, and, for a demo incident, a few steps
on the jobs run again and then their cause recovers.

A cause and its jobs: a camera (`video_source_name`) and v2 jobs naming it; an edge pool
(`edge_pool_id`) and edge face-extraction jobs on it; an algorithm service (`service_id`)
and v2 jobs on it. The jobs recover one step before their cause, as a restarted camera's
jobs are seen running again only once it streams: a cause's alert never ends while its
jobs' alerts still fire.

The `demo` scenario starts one now and then (deterministic: each project draws from its own
generator, made from the project's state when the simulator starts, so the jobs' own draws
stay as they were). Tests drive them with the admin routes:

- `PUT /_sim/incidents/{project_id}/{cause_id}` `{"cause": "camera"|"edge_pool"|"service",
  "jobs": 5}`: the cause, healthy, with that many RUNNING jobs on it (kept if it exists);
- `POST /_sim/incidents/{project_id}/{cause_id}/down`: the cause goes down now, its jobs
  ABNORMAL at the next step;
- `POST /_sim/incidents/{project_id}/{cause_id}/recover`: its jobs RUNNING now, the cause
  back at the next step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from aiohttp import web

from exporter.simulator.answers import gateway_error, json_answer
from exporter.simulator.objects import DEFAULT_START_MS, ERRORS
from exporter.simulator.resources import SimPool, SimService
from exporter.simulator.sources import SimSource, status_object

if TYPE_CHECKING:
    from exporter.simulator.resources import Resources
    from exporter.simulator.server import Simulator
    from exporter.simulator.sources import SourceBook
    from exporter.simulator.world import ProjectData, World

Cause = Literal["camera", "edge_pool", "service"]
Phase = Literal["ready", "down", "jobs_down", "recovering"]
JOBS_PER_CAUSE = 5
DEMO_CHANCE = 0.1  # per step and project, while none of the project's causes is down
DEMO_STEPS_DOWN = (8, 24)  # how long a demo incident lasts (steps after its jobs broke)
DOWN_STATE = {"camera": "offline", "edge_pool": "Abnormal", "service": "service_failed"}
UP_STATE = {"camera": "online", "edge_pool": "Running", "service": "service_running"}


@dataclass(slots=True)
class Incident:
    project_id: str
    cause: Cause
    cause_id: str
    cause_name: str
    task_ids: tuple[str, ...]
    phase: Phase = "ready"
    steps_left: int | None = None  # demo: steps until the jobs recover; None: never

    def to_json(self, project: ProjectData) -> dict[str, Any]:
        jobs = project.face_edge_tasks if self.cause == "edge_pool" else project.tasks
        return {
            "cause": self.cause,
            "cause_id": self.cause_id,
            "cause_name": self.cause_name,
            "phase": self.phase,
            "task_ids": list(self.task_ids),
            "task_names": [jobs[i].name for i in self.task_ids if i in jobs],
        }


class Incidents:
    """The causes with jobs of every project, and their incidents, stepped with the world."""

    def __init__(self, world: World, sources: SourceBook, resources: Resources) -> None:
        self._world, self._sources, self._resources = world, sources, resources
        self.causes: dict[tuple[str, str], Incident] = {}  # (project_id, cause_id)
        self._demo_rngs = {
            project_id: random.Random(f"incidents/{project.rng.getstate()[1][:8]}")
            for project_id, project in world.projects.items()
        }
        world.after_step.append(self.step)

    def add(
        self, project_id: str, cause: Cause, cause_id: str, jobs: int = JOBS_PER_CAUSE
    ) -> Incident:
        """A healthy `cause` with `jobs` RUNNING jobs on it (the one there, if it exists)."""
        key = (project_id, cause_id)
        if key in self.causes:
            return self.causes[key]
        project = self._world.projects[project_id]
        rng = random.Random(f"incident/{project_id}/{cause_id}")
        name = {"camera": "camera", "edge_pool": "site", "service": "svc"}[cause]
        name = f"{name}-{cause_id[-6:]}"
        task_ids = tuple(f"{rng.getrandbits(128):032x}" for _ in range(jobs))
        for number, task_id in enumerate(task_ids):
            job_name = f"{name}-job-{number}"
            if cause == "edge_pool":
                project.add_face_edge_task(task_id=task_id, name=job_name, edge_pool_id=cause_id)
                continue
            project.add_task(
                task_id=task_id,
                name=job_name,
                video_source_name=name if cause == "camera" else None,
                service_id=cause_id if cause == "service" else None,
            )
        if cause == "camera":
            book = self._sources.of(project_id)
            book.sources[cause_id] = SimSource(
                cause_id, name, next(iter(book.groups)), "cloud", "vcn", project.now_ms, {}, jobs
            )
        elif cause == "edge_pool":
            pool = SimPool(cause_id, name, "Running", DEFAULT_START_MS)
            self._resources.project(project_id).pools[cause_id] = pool
        else:
            service = SimService(cause_id, name, "huawei", "cloud", "", DEFAULT_START_MS)
            self._resources.project(project_id).services[cause_id] = service
        incident = Incident(project_id, cause, cause_id, name, task_ids)
        self.causes[key] = incident
        self._set_cause(incident, UP_STATE[cause])
        return incident

    def down(self, incident: Incident, steps: int | None = None) -> None:
        """The cause goes down now; its jobs break at the next step, recover `steps` steps
        later (None: when told)."""
        incident.phase, incident.steps_left = "down", steps
        self._set_cause(incident, DOWN_STATE[incident.cause])

    def recover(self, incident: Incident) -> None:
        """Its jobs run again now; the cause recovers at the next step."""
        self._set_jobs(incident, "RUNNING")
        incident.phase = "recovering"

    def step(self, world: World) -> None:
        for incident in self.causes.values():
            if incident.phase == "down":
                self._set_jobs(incident, "ABNORMAL")
                incident.phase = "jobs_down"
            elif incident.phase == "recovering":
                self._set_cause(incident, UP_STATE[incident.cause])
                incident.phase = "ready"
            elif incident.phase == "jobs_down" and incident.steps_left is not None:
                incident.steps_left -= 1
                if incident.steps_left <= 0:
                    self.recover(incident)
        if world.scenario == "demo":
            for project_id, rng in self._demo_rngs.items():
                self._demo_step(project_id, rng)

    def _demo_step(self, project_id: str, rng: random.Random) -> None:
        """Now and then one of the project's three causes goes down with its jobs."""
        mine = [i for (p, _), i in self.causes.items() if p == project_id]
        if any(i.phase != "ready" for i in mine) or rng.random() >= DEMO_CHANCE:
            return
        cause: Cause = rng.choice(get_args(Cause))
        prefix = {"camera": "demo-camera", "edge_pool": "pool-demo", "service": "svc-demo"}
        incident = self.add(project_id, cause, f"{prefix[cause]}-{project_id}")
        self.down(incident, rng.randint(*DEMO_STEPS_DOWN))

    def _set_cause(self, incident: Incident, state: str) -> None:
        if incident.cause == "camera":
            source = self._sources.of(incident.project_id).sources[incident.cause_id]
            source.status = status_object(state)
        elif incident.cause == "edge_pool":
            self._resources.project(incident.project_id).pools[incident.cause_id].state = state
        else:
            services = self._resources.project(incident.project_id).services
            services[incident.cause_id].alg_status = state

    def _set_jobs(self, incident: Incident, state: str) -> None:
        """Jobs deleted meanwhile (a scenario step, a test) are left out."""
        project = self._world.projects[incident.project_id]
        for task_id in incident.task_ids:
            if incident.cause == "edge_pool":
                if task_id in project.face_edge_tasks:
                    project.set_face_edge_state(task_id, state)
            elif task_id in project.tasks:
                code, message = ERRORS.get(state, (None, None))
                project.set_state(task_id, state, code, message)


def routes(sim: Simulator) -> list[web.RouteDef]:
    incidents = sim.incidents

    def found(request: web.Request) -> Incident:
        project_id = sim.project(request).project_id  # 404 for a project not in the world
        incident = incidents.causes.get((project_id, request.match_info["cause_id"]))
        if incident is None:
            raise gateway_error(404, "SIM.0002", "no such cause: PUT it first")
        return incident

    def answer(incident: Incident) -> web.Response:
        return json_answer(200, incident.to_json(sim.world.projects[incident.project_id]))

    async def put(request: web.Request) -> web.Response:
        project_id = sim.project(request).project_id
        try:
            body = await request.json()
            cause = body["cause"]
            if cause not in get_args(Cause):
                raise ValueError(f"cause must be one of {get_args(Cause)}")
            jobs = int(body.get("jobs", JOBS_PER_CAUSE))
        except (ValueError, TypeError, KeyError) as error:
            raise gateway_error(400, "SIM.0001", f"bad incident: {error!r}") from error
        return answer(incidents.add(project_id, cause, request.match_info["cause_id"], jobs))

    async def down(request: web.Request) -> web.Response:
        incident = found(request)
        incidents.down(incident)
        return answer(incident)

    async def recover(request: web.Request) -> web.Response:
        incident = found(request)
        incidents.recover(incident)
        return answer(incident)

    return [
        web.put("/_sim/incidents/{project_id}/{cause_id}", put),
        web.post("/_sim/incidents/{project_id}/{cause_id}/down", down),
        web.post("/_sim/incidents/{project_id}/{cause_id}/recover", recover),
    ]
