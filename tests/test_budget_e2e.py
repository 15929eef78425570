"""The API budget plan over real HTTP against the simulator: an account asking for more
than its budget is polled at stretched intervals (planned, not overruns), never faster
than its budget; a throttling gateway lowers the budget until 429s stop; shards of one
account share its budget; the plan is logged, exported and shown.

| change to the code (tried, seen red) | failing test |
|---|---|
| `stretch_factors` always 1.0 (today: no plan) | test_an_account_over_budget_is_polled_on_a_plan |
| no decrease on 429 | test_a_throttling_gateway_lowers_the_budget_until_429s_stop |
| the budget not split among shards | test_shards_of_one_account_share_its_budget |
| no log line in `AccountPlan.report` | test_the_plan_is_logged_exported_and_shown |
| `max_age` in configured intervals | test_a_stretched_source_is_not_stale_sooner |
| rate-limit headers ignored | test_the_gateways_rate_limit_headers_cap_the_budget |
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import aiohttp
import structlog
from aiohttp import web

from exporter.service import Exporter
from exporter.sharding import Sharding
from exporter.simulator import Fault, Simulator, World
from exporter.simulator.serve import run_simulator
from exporter.simulator.server import RequestRecord
from tests.support import (
    TOKEN,
    Samples,
    make_config,
    make_simulator,
    serving,
    serving_app,
    target,
)

PROJECTS = [f"b{n:02d}" for n in range(20)]


@contextlib.asynccontextmanager
async def fleet_simulator(
    projects: Sequence[str] = PROJECTS,
) -> AsyncIterator[tuple[Simulator, str]]:
    world = World.generate(
        seed=3,
        project_ids=list(projects),
        tasks_per_project=40,
        batch_tasks_per_project=1,
        face_edge_tasks_per_project=0,
        scenario="demo",
    )
    sim = make_simulator(world)
    async with run_simulator(sim) as url:
        yield sim, url


def fleet_targets(
    url: str, interval: float, projects: Sequence[str] = PROJECTS
) -> list[dict[str, object]]:
    return [
        target(url, project_id=p, sources=["tasks"], poll_interval_seconds=interval)
        for p in projects
    ]


def busiest_second(requests: Sequence[RequestRecord]) -> int:
    """The most requests the simulator received within any one second."""
    times = sorted(r.received for r in requests)
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def checked_after_polls(exporters: Sequence[Exporter], holds: Callable[[], bool]) -> asyncio.Event:
    """An event set once `holds()` is true, checked after every poll of these exporters'
    pollers (installed before they start)."""
    done = asyncio.Event()
    for exporter in exporters:
        for poller in exporter.pollers:

            async def checked(update: Callable[[], Awaitable[None]] = poller._on_update) -> None:
                await update()
                if holds():
                    done.set()

            poller._on_update = checked
    return done


async def until(
    exporters: Sequence[Exporter], holds: Callable[[], bool], deadline: float = 120
) -> None:
    """Until `holds()` (a deadline against a hang, not a timing)."""
    await asyncio.wait_for(checked_after_polls(exporters, holds).wait(), deadline)


async def samples(exporter: Exporter) -> Samples:
    await exporter.exposition.refresh()
    body = await exporter.exposition.serve(openmetrics=False, gzipped=False)
    return Samples.parse(body.decode())


def values_of(metrics: Samples, name: str) -> list[float]:
    return list(metrics.series(name).values())


async def test_an_account_over_budget_is_polled_on_a_plan() -> None:
    """20 sources every 0.25 s ask for ~80 requests/s; the account may send 8. The plan
    stretches their intervals, no poll counts as an overrun, at most 2 polls run at once,
    and no second sees more than the budget's one second of burst plus its rate."""
    async with fleet_simulator() as (sim, url):
        config = make_config(
            fleet_targets(url, 0.25), rate_limit_per_second=8, max_polls_in_flight=2
        )
        async with Exporter(config) as exporter:
            polled = checked_after_polls(
                [exporter], lambda: min(p.polls for p in exporter.pollers) >= 3
            )
            exporter.start()
            await asyncio.wait_for(polled.wait(), 120)
            await exporter.stop()
            (plan,) = exporter._accounts.plans()
            metrics = await samples(exporter)
    assert not values_of(metrics, "vias_poll_overruns_total")
    summary = plan.summary()
    assert summary.demand > 8 and summary.stretch >= 5
    effective = values_of(metrics, "vias_poll_effective_interval_seconds")
    assert len(effective) == len(PROJECTS)
    assert min(effective) >= 0.25 * 5  # the stretched interval is reported per source
    assert set(values_of(metrics, "vias_poll_interval_seconds")) == {0.25}
    assert plan.slots.peak <= 2
    assert sim.peak_in_flight <= 2 * config.global_.page_window
    assert busiest_second(sim.requests) <= 2 * 8


async def test_a_throttling_gateway_lowers_the_budget_until_429s_stop() -> None:
    """The gateway allows 30 requests a second; the configuration says 200. Once the
    budget has come down, under 1 % of the requests are refused, and every source is
    polled all along."""
    projects = PROJECTS[:10]
    async with fleet_simulator(projects) as (sim, url):
        sim.gateway.per_second = 30
        config = make_config(fleet_targets(url, 0.1, projects), rate_limit_per_second=200)
        async with Exporter(config) as exporter:
            (plan,) = exporter._accounts.plans()
            exporter.start()
            # Once the first 429s have brought the budget down:
            await until([exporter], lambda: plan.budget.rate < 30)
            seen = len(sim.requests)
            polls = {(p.project_id, p.source): p.polls for p in exporter.pollers}
            await until([exporter], lambda: len(sim.requests) >= seen + 400)
            await exporter.stop()
            later = sim.requests[seen:]
            polled = [p.polls - polls[(p.project_id, p.source)] for p in exporter.pollers]
    refused = sum(1 for r in later if r.status == 429)
    assert refused / len(later) < 0.01, (refused, len(later))
    assert min(polled) >= 1  # every source kept being polled
    assert plan.budget.decreases >= 1


async def test_shards_of_one_account_share_its_budget() -> None:
    """4 replicas of one account with rate_limit_per_second 20: each may send 5 a second,
    so the account's requests stay within 20 a second together (not 4 x 20)."""
    async with fleet_simulator() as (sim, url):
        config = make_config(fleet_targets(url, 0.1), rate_limit_per_second=20)
        async with contextlib.AsyncExitStack() as stack:
            shards = [
                await stack.enter_async_context(Exporter(config, sharding=Sharding(n, 4)))
                for n in range(4)
            ]
            for shard in shards:
                shard.start()
            await until(shards, lambda: len(sim.requests) >= 200)
            for shard in shards:
                await shard.stop()
            budgets = [
                values_of(
                    await samples(shard), "vias_account_configured_budget_requests_per_second"
                )
                for shard in shards
            ]
    assert budgets == [[5.0]] * 4
    times = sorted(r.received for r in sim.requests)
    # After the first second (each bucket starts full: 5 requests of burst a shard):
    steady = [t for t in times if t >= times[0] + 1.0]
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert rate <= 20 * 1.1, rate


async def test_the_plan_is_logged_exported_and_shown() -> None:
    async with fleet_simulator() as (_, url):
        config = make_config(fleet_targets(url, 1.0), rate_limit_per_second=5)
        with structlog.testing.capture_logs() as logs:
            async with (
                Exporter(config) as exporter,
                serving(exporter) as web_url,
                aiohttp.ClientSession() as session,
                session.get(web_url + "/") as response,
            ):
                page = await response.text()
                metrics = await samples(exporter)
    lines = [line for line in logs if line["event"] == "API budget too small"]
    assert len(lines) == 1  # one line for the one account over its budget
    (line,) = lines
    account = line["account"]
    assert account.startswith("token:") and TOKEN not in account
    assert line["demand_requests_per_second"] == 20 * 2 / 1.0  # estimated: 2 a poll
    assert line["budget_requests_per_second"] == 5
    assert line["stretch"] == 10.0
    assert "rate_limit_per_second to 50" in line["advice"]
    labels = {"account": account}
    assert metrics.value("vias_account_budget_requests_per_second", **labels) == 5
    assert metrics.value("vias_account_demand_requests_per_second", **labels) == 40
    assert metrics.value("vias_account_interval_stretch_ratio", **labels) == 10
    assert metrics.value("vias_account_requests_total", **labels) == 0
    assert account in page and "10.00" in page and TOKEN not in page


async def test_a_stretched_source_is_not_stale_sooner() -> None:
    """max_age_intervals counts in effective intervals: a source the plan polls 12.5x less
    often keeps showing its counts through a failed poll for 3 of its own intervals."""
    now = [1000.0]
    projects = PROJECTS[:2]
    async with fleet_simulator(projects) as (sim, url):
        config = make_config(
            fleet_targets(url, 0.1, projects), rate_limit_per_second=2, max_retries=0
        )
        async with Exporter(config, clock=lambda: now[0]) as exporter:
            await exporter.poll_all_once()  # 2 sources of 1 request every 0.1 s: 20/s asked
            poller = exporter.pollers[0]
            effective = poller.effective_interval
            assert effective >= 0.1 * 12
            sim.faults.add(Fault(kind="server_error_json"))
            now[0] += 4 * 3 * 0.1  # 4 times max_age_intervals configured intervals
            state = await poller.poll_once()
            assert (state.up, state.fresh) == (False, True)
            now[0] = 1000.0 + 3 * effective + 0.1
            state = await poller.poll_once()
            assert (state.up, state.fresh) == (False, False)


async def test_the_gateways_rate_limit_headers_cap_the_budget() -> None:
    """An answer carrying Huawei's `X-Apig-RateLimit-user` (as with `X-Apig-Mode: debug`)
    caps the account's budget at the gateway's limit; the configured value stays shown."""

    async def tasks(request: web.Request) -> web.Response:
        limit = {"X-Apig-RateLimit-user": "remain:39,limit:40,time:1 second"}
        return web.json_response({"tasks": [], "count": 0}, headers=limit)

    app = web.Application()
    app.router.add_get("/v2/{project_id}/tasks", tasks)
    async with serving_app(app) as url:
        config = make_config([target(url, sources=["tasks"])], rate_limit_per_second=200)
        async with Exporter(config) as exporter:
            await exporter.poll_all_once()
            (plan,) = exporter.plans()
    assert (plan.budget, plan.configured) == (40, 200)
