"""The simulated algorithm services and edge pools (with their nodes) of each project, the
VIAS endpoints that list them, and admin routes to change them.

Generated deterministically per project from the world's first draws for that project
(its generator's state when the simulator starts: a function of the world seed and the
project id), without drawing from it, so the jobs stay as they were. Served through the
simulator's pipeline: auth, recording and faults apply as to the job lists.

The services jobs run on are among them: the v2 job listing names a job's service as
`svc-<algorithm>`, and services 1..5 are those (named after their algorithm), so a job
listed in the SDK's shape, without its vendor (`SimTask.sdk_shape`), finds it here.

Quirks served as documented: services page 5..200 by `page_num` and answer both `count`
(this page) and `total`; edge pools page 1..`edge_pool_max_page_size` (1000; a test may
lower it to see a server refuse our page with 400), answer `count` as the total, and a
project in `without_edge_pools` answers 404 like a region without the API.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from exporter.simulator.answers import gateway_error, json_answer, page_bounds, vias_error
from exporter.simulator.objects import ALGORITHMS, DEFAULT_START_MS, VENDORS, service_id_for

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator
    from exporter.simulator.world import World

SERVICE_STATUSES = ("service_running",) * 8 + ("service_deploying", "service_stopped")
SERVICE_NAMES = ("helmet", "intrusion", "crowd", "smoke", "plate", "face", "fall", "fire")
MAX_SERVICE_PAGE_SIZE = 200
MAX_EDGE_POOL_PAGE_SIZE = 1000
NO_API = "The API does not exist or has not been published"


@dataclass(slots=True)
class SimService:
    service_id: str
    service_name: str
    company: str
    deploy_type: str
    alg_status: str
    created_at: int
    alg_id: str = ""
    alg_class: str = "partner"
    request_mode: str = "async"
    error_msg: str = ""


@dataclass(slots=True)
class SimNode:
    id: str
    name: str
    state: str
    cpu: int
    memory: int  # MiB
    gpu_info: list[dict[str, str]] = field(default_factory=list)
    npu_info: list[dict[str, str]] = field(default_factory=list)
    arch: str = "x86_64"


@dataclass(slots=True)
class SimPool:
    id: str
    name: str
    state: str
    created_at: int
    nodes: dict[str, SimNode] = field(default_factory=dict)


@dataclass(slots=True)
class ProjectResources:
    services: dict[str, SimService] = field(default_factory=dict)
    pools: dict[str, SimPool] = field(default_factory=dict)


def generate(
    rng: random.Random, *, healthy: bool, services: int = 12, pools: int = 3
) -> ProjectResources:
    """Mostly running services and pools; unless `healthy`, the first service failed (one
    no job runs on), the last pool Abnormal and one node of the first pool Offline (an
    undocumented state). Services 1..5 are the jobs' (`svc-<algorithm>`)."""
    project = ProjectResources()
    for number in range(services):
        status = "service_running" if healthy else rng.choice(SERVICE_STATUSES)
        if not healthy and number == 0:
            status = "service_failed"
        service_id = f"svc-{rng.getrandbits(64):016x}"  # drawn always: later draws stay
        service_name = f"{SERVICE_NAMES[number % len(SERVICE_NAMES)]}-{number}"
        if 1 <= number <= len(ALGORITHMS):
            service_name = ALGORITHMS[number - 1]
            service_id = service_id_for(service_name)
        service = SimService(
            service_id=service_id,
            service_name=service_name,
            company=rng.choice(VENDORS),
            deploy_type=rng.choice(("cloud", "edge")),
            alg_status=status,
            created_at=DEFAULT_START_MS - number * 3_600_000,
            alg_id=f"alg-{rng.getrandbits(32):08x}",
            error_msg="image pull failed: no such package" if status == "service_failed" else "",
        )
        project.services[service.service_id] = service
    for number in range(pools):
        state = "Abnormal" if not healthy and number == pools - 1 else "Running"
        pool = SimPool(
            f"pool-{rng.getrandbits(64):016x}", f"site-{number}", state, DEFAULT_START_MS
        )
        for node_number in range(rng.randint(2, 4)):
            gpus = rng.randint(0, 2)
            node = SimNode(
                id=f"node-{rng.getrandbits(64):016x}",
                name=f"{pool.name}-node-{node_number}",
                state="Offline" if not healthy and number == 0 and node_number == 0 else state,
                cpu=rng.choice((8, 16, 32)),
                memory=rng.choice((15079, 31846, 64000)),
                gpu_info=[
                    {"name": "T4", "type": "nvidia", "capacity": "15079Mi", "driver_version": "1"}
                ]
                * gpus,
                npu_info=[{"name": "Ascend310", "type": "npu", "capacity": "8Gi"}]
                * rng.randint(0, 1),
            )
            pool.nodes[node.id] = node
        project.pools[pool.id] = pool
    return project


class Resources:
    """Services and edge pools per project, and how the edge-pool endpoint behaves."""

    def __init__(self, world: World) -> None:
        self._healthy = world.scenario == "healthy"
        self.projects: dict[str, ProjectResources] = {
            project_id: generate(random.Random(repr(project.rng.getstate())), healthy=self._healthy)
            for project_id, project in world.projects.items()
        }
        self.edge_pool_max_page_size = MAX_EDGE_POOL_PAGE_SIZE
        self.without_edge_pools: set[str] = set()

    def project(self, project_id: str) -> ProjectResources:
        """A project added to the world later gets resources from its id alone."""
        if project_id not in self.projects:
            rng = random.Random(f"resources/{project_id}")
            self.projects[project_id] = generate(rng, healthy=self._healthy)
        return self.projects[project_id]


def _pool_json(pool: SimPool, project_id: str, *, nodes: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": pool.id,
        "name": pool.name,
        "state": pool.state,
        "project_id": project_id,
        "workspace_id": "0",
        "created_at": pool.created_at,
        "updated_at": pool.created_at,
        "description": "",
    }
    if nodes:
        body["nodes"] = [asdict(node) for node in pool.nodes.values()]
    return body


def routes(sim: Simulator) -> list[web.RouteDef]:
    resources = sim.resources

    def project(request: web.Request) -> tuple[str, ProjectResources]:
        project_id = sim.project(request).project_id  # 404 for a project not in the world
        return project_id, resources.project(project_id)

    async def services(request: web.Request) -> web.Response:
        _, data = project(request)
        listing = sorted(data.services.values(), key=lambda s: (-s.created_at, s.service_id))
        if request.query.get("is_paged", "false").lower() == "true":
            page, size = page_bounds(
                request, "page_num", MAX_SERVICE_PAGE_SIZE, min_size=5, max_page=10000
            )
            listing = listing[(page - 1) * size : page * size]
        body = [asdict(service) for service in listing]
        return json_answer(
            200, {"count": len(body), "total": len(data.services), "service_list": body}
        )

    async def edge_pools(request: web.Request) -> web.Response:
        project_id, data = project(request)
        if project_id in resources.without_edge_pools:
            raise gateway_error(404, "APIGW.0101", NO_API)
        listing = list(data.pools.values())
        if request.query.get("is_paged", "true").lower() != "false":
            page, size = page_bounds(
                request, "page_num", resources.edge_pool_max_page_size, min_size=1, max_page=10000
            )
            listing = listing[(page - 1) * size : page * size]
        pools = [_pool_json(pool, project_id, nodes=False) for pool in listing]
        return json_answer(200, {"count": len(data.pools), "edge_pools": pools})

    async def edge_pool(request: web.Request) -> web.Response:
        project_id, data = project(request)
        pool = data.pools.get(request.match_info["edge_pool_id"])
        if project_id in resources.without_edge_pools or pool is None:
            raise vias_error(
                404, "VIAS.00010002", "The edge pool does not exist.", "not found", ["id"]
            )
        return json_answer(200, _pool_json(pool, project_id, nodes=True))

    async def put_service(request: web.Request) -> web.Response:
        """Set a service's status (creating the service if needed): {"status", "error_msg"}."""
        data = resources.project(request.match_info["project_id"])
        service_id = request.match_info["service_id"]
        body = await _body(request)
        service = data.services.get(service_id) or SimService(
            service_id, body.get("service_name", service_id), "", "cloud", "", DEFAULT_START_MS
        )
        service.alg_status = str(body.get("status", service.alg_status))
        service.error_msg = str(body.get("error_msg", ""))
        data.services[service_id] = service
        return json_answer(200, asdict(service))

    async def put_pool(request: web.Request) -> web.Response:
        """Set a pool's state, or a node's with `node_id`: {"state"}; {"available": false}
        on the project makes its edge-pool endpoint answer 404."""
        project_id = request.match_info["project_id"]
        data = resources.project(project_id)
        body = await _body(request)
        pool = data.pools.get(request.match_info["edge_pool_id"])
        node = pool.nodes.get(request.match_info.get("node_id", "")) if pool else None
        target = node if "node_id" in request.match_info else pool
        if target is None:
            raise gateway_error(404, "SIM.0002", "no such edge pool or node")
        if not isinstance(body.get("state"), str):
            raise gateway_error(400, "SIM.0001", 'say {"state": ...}')
        target.state = body["state"]
        return json_answer(200, {"id": target.id, "state": target.state})

    async def put_availability(request: web.Request) -> web.Response:
        project_id = request.match_info["project_id"]
        if (await _body(request)).get("available", True):
            resources.without_edge_pools.discard(project_id)
        else:
            resources.without_edge_pools.add(project_id)
        return json_answer(200, {"without_edge_pools": sorted(resources.without_edge_pools)})

    return [
        web.get("/v2/{project_id}/algorithm/services/user", services),
        web.get("/v2/{project_id}/edge-pools", edge_pools),
        web.get("/v2/{project_id}/edge-pools/{edge_pool_id}", edge_pool),
        web.put("/_sim/services/{project_id}/{service_id}", put_service),
        web.put("/_sim/edge-pools/{project_id}", put_availability),
        web.put("/_sim/edge-pools/{project_id}/{edge_pool_id}", put_pool),
        web.put("/_sim/edge-pools/{project_id}/{edge_pool_id}/nodes/{node_id}", put_pool),
    ]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as error:
        raise gateway_error(400, "SIM.0001", f"bad body: {error}") from error
    if not isinstance(body, dict):
        raise gateway_error(400, "SIM.0001", "the body must be a JSON object")
    return body
