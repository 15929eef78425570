"""The `global` request limits, end to end, per account where credentials are shared: the
exporter polls the simulator over real HTTP and the simulator measures what arrives
(`peak_in_flight`, each request's arrival time).

Only bounds that must hold on any machine are asserted, never upper bounds on time: a
slow machine makes a limited client slower still, never faster.

| change to the code (tried, seen red) | failing test |
|---|---|
| client: `asyncio.Semaphore(100_000)` | test_max_concurrency_bounds_requests_in_flight |
| client: `RateLimiter(AimdBudget(1e9))` | test_rate_limit_spaces_requests_at_the_server |
| `Accounts.of`: a new limiter per target | test_one_rate_limit_for_the_projects_of_one_account |
| `account_key`: the project id added for AK/SK | test_a_refused_access_key_pauses_... |
| transport: a 401 pauses only its project | test_a_refused_access_key_pauses_every_project_... |
| transport: a 403 pauses the account | test_a_refused_access_key_pauses_every_project_... |
| transport: a 403 pauses the project | test_a_403_on_an_opt_in_list_pauses_that_list_alone |
"""

from __future__ import annotations

import time

from exporter.service import Exporter
from exporter.simulator import Fault, World, run_simulator
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


async def test_one_rate_limit_for_the_projects_of_one_account() -> None:
    """Three projects with the same credentials: the gateway counts their requests
    together, so together they keep to the rate (each alone at the rate would be 3x)."""
    rate = 10
    world = World.generate(seed=5, project_ids=["p1", "p2", "p3"], tasks_per_project=1000)
    sim = make_simulator(world)
    async with run_simulator(sim) as url:
        targets = [target(url, p, sources=["infer_tasks"]) for p in ("p1", "p2", "p3")]
        config = make_config(targets, rate_limit_per_second=rate, page_window=4)
        async with Exporter(config) as exporter:
            started = time.monotonic()
            await exporter.poll_all_once()
            assert all(state.up for state in exporter.store.current.sources.values())
    arrivals = sorted(record.received - started for record in sim.requests)
    assert len(arrivals) >= 3 * rate  # 20 pages a project: unlimited, a fraction of 1 s
    early = [
        (k, round(at, 3))
        for k, at in enumerate(arrivals, start=1)
        if at < (k - rate) / rate - 0.001
    ]
    assert early == [], f"the account's requests beat {rate}/s: (k, seconds) {early[:5]}"


async def test_a_refused_access_key_pauses_every_project_of_the_account() -> None:
    """A 401 to a signed request refuses the key itself: the other projects signing with
    it send nothing until the pause ends (Huawei locks a key after 5 refusals in a row).
    A 403 is a permission missing on one endpoint: it pauses that endpoint only."""
    world = World.generate(seed=5, project_ids=["p1", "p2", "p3"], tasks_per_project=20)
    sim = make_simulator(world)
    async with run_simulator(sim) as url:
        targets = [target(url, p, auth="aksk", sources=["tasks"]) for p in ("p1", "p2", "p3")]
        async with Exporter(make_config(targets, max_retries=0)) as exporter:
            p1, p2, p3 = exporter.pollers
            sim.faults.add(Fault("server_error_html", match="/p1/", status=403, times=1))
            await p1.poll_once()
            assert not (await p2.poll_once()).last_error  # a 403 stays with its project
            sim.faults.add(Fault("unauthorized"))
            asked = len(sim.requests)
            assert "HTTP 401" in ((await p2.poll_once()).last_error or "")
            for poller in (p2, p3):
                state = await poller.poll_once()
                assert state.last_error is not None and state.last_error.startswith("skipped")
            assert len(sim.requests) == asked + 1


async def test_a_403_on_an_opt_in_list_pauses_that_list_alone() -> None:
    """Enabling `video_sources` without the permission: its endpoint answers 403 and pauses
    (nothing sent to it until the pause ends), while the jobs go on being polled."""
    world = World.generate(seed=5, project_ids=["p1"], tasks_per_project=20)
    sim = make_simulator(world)
    async with run_simulator(sim) as url:
        config = make_config([target(url, sources=["tasks", "video_sources"])], max_retries=0)
        async with Exporter(config) as exporter:
            sim.faults.add(Fault("server_error_html", match="/source/sources", status=403))
            tasks, video_sources = sorted(exporter.pollers, key=lambda poller: poller.source)
            assert "HTTP 403" in ((await video_sources.poll_once()).last_error or "")
            asked = len(sim.requests)
            assert (await tasks.poll_once()).up
            skipped = (await video_sources.poll_once()).last_error or ""
            assert skipped.startswith("skipped: permission refused"), skipped
            assert [r.path for r in sim.requests[asked:]] == ["/v2/p1/tasks"]
