"""The simulator's admin API (no auth, not recorded): step the world, inject faults,
expire tokens, read the truth, set a job's state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from exporter.simulator.answers import gateway_error, json_answer
from exporter.simulator.faults import Fault
from exporter.simulator.objects import ERRORS

if TYPE_CHECKING:
    from exporter.simulator.server import Simulator


def admin_routes(sim: Simulator) -> list[web.RouteDef]:
    async def step(request: web.Request) -> web.Response:
        sim.world.step()
        return json_answer(200, {"ticks": sim.world.ticks, "now_ms": sim.world.now_ms})

    async def faults(request: web.Request) -> web.Response:
        return json_answer(200, {"faults": [fault.to_json() for fault in sim.faults.active()]})

    async def add_faults(request: web.Request) -> web.Response:
        try:
            new = [Fault.from_json(item) for item in await request.json()]
        except (ValueError, TypeError) as error:
            raise gateway_error(400, "SIM.0001", f"bad fault list: {error}") from error
        sim.faults.add(*new)
        return await faults(request)

    async def clear_faults(request: web.Request) -> web.Response:
        sim.faults.clear()
        return await faults(request)

    async def expire_tokens(request: web.Request) -> web.Response:
        return json_answer(200, {"expired": sim.expire_tokens()})

    async def truth(request: web.Request) -> web.Response:
        return json_answer(200, sim.project(request).truth())

    async def put_task(request: web.Request) -> web.Response:
        """Set a job's state, creating the job if needed: {"state": ..., "name": ...,
        "batch_id": ..., "video_source_name": ..., "service_id": ...} (all but the state
        only when creating). The error code is the one the scenarios give that state."""
        project = sim.project(request)
        task_id = request.match_info["task_id"]
        try:
            body = await request.json()
            state = str(body["state"])
            code, message = ERRORS.get(state, (None, None))
            if task_id in project.tasks:
                project.set_state(task_id, state, code, message)
            else:
                member: dict[str, Any] = {}
                if body.get("batch_id"):
                    batch = project.batch_tasks[body["batch_id"]]
                    member = {
                        "batch_id": batch.id,
                        "vendor": batch.vendor,
                        "algorithm": batch.algorithm,
                        "deployment": batch.deployment,
                        "video_group": batch.video_group,
                    }
                for key in ("video_source_name", "service_id"):
                    if body.get(key):
                        member[key] = str(body[key])
                project.add_task(
                    task_id=task_id,
                    name=body.get("name"),
                    state=state,
                    error_code=code,
                    error_message=message,
                    **member,
                )
        except (ValueError, TypeError, KeyError) as error:
            raise gateway_error(400, "SIM.0001", f"bad task: {error!r}") from error
        return json_answer(200, {"id": task_id, "state": state})

    return [
        web.post("/_sim/step", step),
        web.get("/_sim/faults", faults),
        web.post("/_sim/faults", add_faults),
        web.delete("/_sim/faults", clear_faults),
        web.post("/_sim/expire-tokens", expire_tokens),
        web.get("/_sim/truth/{project_id}", truth),
        web.put("/_sim/tasks/{project_id}/{task_id}", put_task),
    ]
