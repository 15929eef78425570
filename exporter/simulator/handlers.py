"""The simulator's API handlers, registered as the exporter's lists are: one module per
group of endpoints with a `routes(sim)` function, one line here. A new list's double is a
module of its own and a line below; `tests/lists/test_registry.py` asks the simulator for
every registered list's first page."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from exporter.simulator import admin, iam, incidents, jobs, resources, sources

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator

HANDLERS: tuple[Callable[[Simulator], list[web.RouteDef]], ...] = (
    jobs.routes,  # tasks, infer_tasks, batch_tasks, face_edge_tasks, the job detail
    resources.routes,  # algorithm_services, edge_pools and the pool details
    sources.routes,  # video_sources, video_groups
    incidents.routes,  # /_sim/incidents: a camera, edge pool or service down with its jobs
    iam.routes,  # the account's projects (discovery)
    admin.admin_routes,  # /_sim/: faults, world steps, truth
)
