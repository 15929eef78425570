"""Serving a simulator on loopback (in-process, for tests, benchmarks and `--demo`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from exporter.simulator.server import Simulator
from exporter.simulator.world import World


@contextlib.asynccontextmanager
async def run_simulator(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0, step_interval: float = 0.0
) -> AsyncIterator[str]:
    """Serve `sim` on host:port (0: a free port), yielding its base URL (also IAM's);
    with `step_interval` > 0 the world steps every that many seconds."""
    # handler_cancellation: a client that gives up on a stalled body frees its handler
    runner = web.AppRunner(
        sim.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
    await runner.setup()
    stepper = None
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        if step_interval > 0:
            stepper = asyncio.create_task(_step_every(sim.world, step_interval))
        yield f"http://{host}:{bound_port}"
    finally:
        if stepper is not None:
            stepper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stepper
        await runner.cleanup()


async def _step_every(world: World, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        world.step()
