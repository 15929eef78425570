"""The `global` request limits, end to end: the exporter polls the simulator over real HTTP
and the simulator measures what arrives (`peak_in_flight`, each request's arrival time).

Only bounds that must hold on any machine are asserted, never upper bounds on time: a
slow machine makes a limited client slower still, never faster.

| change to the code (tried, seen red) | failing test |
|---|---|
| client: `asyncio.Semaphore(100_000)` | test_max_concurrency_bounds_requests_in_flight |
| client: `AsyncLimiter(1e9)` | test_rate_limit_spaces_requests_at_the_server |
"""

from __future__ import annotations

import time

from exporter.service import Exporter
from exporter.simulator import World, run_simulator
from tests.support import make_config, make_simulator, target

SOURCES = ["tasks", "batch_tasks", "infer_tasks", "face_edge_tasks"]


def _world(tasks: int) -> World:
    return World.generate(
        seed=5,
        project_ids=["p1"],
        tasks_per_project=tasks,
        batch_tasks_per_project=450,
        face_edge_tasks_per_project=350,
        scenario="demo",
    )


async def test_max_concurrency_bounds_requests_in_flight() -> None:
    """Four sources, each fetching a window of 4 pages at once, would have up to 16
    requests out (the connection pool allows max_concurrency + 2); each answer takes 50 ms,
    so they pile up unless the client holds them back."""
    sim = make_simulator(_world(tasks=500), latency_seconds=0.05)
    async with run_simulator(sim) as url:
        config = make_config(
            [target(url, sources=SOURCES)],
            max_concurrency=2,
            page_window=4,
            rate_limit_per_second=10_000,
        )
        async with Exporter(config) as exporter:
            await exporter.poll_all_once()
            states = exporter.store.current.sources.values()
            assert all(state.up for state in states)
    assert len(sim.requests) >= 20
    assert sim.peak_in_flight <= 2
    assert sim.peak_in_flight == 2  # the set-up does make requests wait for each other


async def test_rate_limit_spaces_requests_at_the_server() -> None:
    """At R requests per second with a burst of at most R, the k-th request (counting from
    1) cannot be sent before (k - R) / R seconds have passed; it arrives later still. Sorted
    arrival times at the simulator must respect that for every k."""
    rate = 20
    sim = make_simulator(_world(tasks=3000))
    async with run_simulator(sim) as url:
        config = make_config(
            [target(url, sources=["infer_tasks"])],  # 50 jobs a page: 60 pages and more
            rate_limit_per_second=rate,
            max_concurrency=4,
            page_window=4,
        )
        async with Exporter(config) as exporter:
            started = time.monotonic()
            await exporter.poll_all_once()
            (state,) = exporter.store.current.sources.values()
            assert state.up
    arrivals = sorted(record.received - started for record in sim.requests)
    assert len(arrivals) >= 3 * rate  # an unlimited client would take a fraction of 2 s
    early = [
        (k, round(at, 3))
        for k, at in enumerate(arrivals, start=1)
        if at < (k - rate) / rate - 0.001  # 1 ms for clock rounding
    ]
    assert early == [], f"requests arrived faster than {rate}/s: (k, seconds) {early[:5]}"
