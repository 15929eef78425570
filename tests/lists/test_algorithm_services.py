"""The algorithm services list: its page model's quirks (`total` is the total, `count` never
is; statuses lower-cased, unknown ones kept), its golden exposition, and over real HTTP
against the simulator: complete paging, failed services named within the cap and through
an outage, a status changed by the simulator's admin route, other lists unaffected.

| change (tried, seen red) | failing test |
|---|---|
| page model reads `count` (populate_by_name=True) | test_total_is_the_total_and_count_never_is |
| `count` as the alias of the total | the same, and test_paging_reads_total_not_count |
| status not normalized (as sent) | test_statuses_are_lower_cased_and_unknown_ones_kept |
| cap ignored (`ranked` not sliced) | test_failed_services_are_named_within_the_cap |
| failed services named only while fresh | test_an_outage_keeps_the_failed_services_named |
"""

from __future__ import annotations

import aiohttp

from exporter.lists.algorithm_services import (
    ALGORITHM_SERVICES,
    AlgorithmServicePage,
)
from exporter.models import parse_model
from exporter.simulator import Fault
from exporter.simulator.resources import SimService
from tests.lists.golden import assert_golden
from tests.support import RunningSimulator, StartExporter, make_config, target

SOURCE = "algorithm_services"


def page(body: str) -> AlgorithmServicePage:
    return parse_model(AlgorithmServicePage, body.encode(), "x")


def test_total_is_the_total_and_count_never_is() -> None:
    assert page('{"count": 200, "total": 450, "service_list": []}').count == 450
    assert page('{"total": 450, "count": 200}').count == 450
    assert page('{"count": 200, "service_list": null}').count is None


def test_statuses_are_lower_cased_and_unknown_ones_kept() -> None:
    services = page(
        """{"service_list": [
        {"service_id": "a", "alg_status": "SERVICE_FAILED", "deploy_type": "1"},
        {"service_id": "b", "alg_status": " service_hibernating "},
        {"service_id": "c", "alg_status": null, "company": 42}]}"""
    ).items
    assert [(s.status, s.deployment) for s in services] == [
        ("service_failed", "edge"),
        ("service_hibernating", ""),
        ("unknown", ""),
    ]
    assert services[2].vendor == "42"


async def test_golden() -> None:
    await assert_golden(ALGORITHM_SERVICES)


def add_services(simulator: RunningSimulator, count: int, status: str) -> list[str]:
    services = simulator.sim.resources.project("p1").services
    ids = [f"extra-{status}-{n:04d}" for n in range(count)]
    for number, service_id in enumerate(ids):
        services[service_id] = SimService(service_id, service_id, "acme", "cloud", status, number)
    return ids


async def test_paging_reads_total_not_count(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    """450 more services: three pages of at most 200, each answering `count` = its own
    length; reading `count` as the total would stop after the first page."""
    add_services(simulator, 450, "service_running")
    listed = len(simulator.sim.resources.project("p1").services)
    config = make_config([target(simulator.url, sources=[SOURCE])])
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await running.metrics()
    assert samples.value("vias_poll_items", project_id="p1", source=SOURCE) == listed
    counted = samples.series("vias_algorithm_services", project_id="p1")
    assert sum(counted.values()) == listed
    pages = [r.query for r in simulator.sim.requests if r.path.endswith("/services/user")]
    assert [(q["page_num"], q["page_size"]) for q in pages] == [
        ("1", "200"),
        ("2", "200"),
        ("3", "200"),
    ]


async def test_failed_services_are_named_within_the_cap(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    failed = add_services(simulator, 3, "service_failed")  # and the simulator's own one
    config = make_config([target(simulator.url, sources=[SOURCE])], problem_tasks_limit=2)
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await running.metrics()
    named = samples.series("vias_problem_algorithm_service_info", project_id="p1")
    assert {dict(labels)["service_id"] for labels in named} == set(failed[:2])
    assert all(dict(labels)["status"] == "service_failed" for labels in named)
    counted = samples.series("vias_algorithm_services", project_id="p1", status="service_failed")
    assert sum(counted.values()) == 4


async def test_a_status_set_by_the_admin_route_is_counted_as_sent(
    simulator: RunningSimulator,
    start_exporter: StartExporter,
    session: aiohttp.ClientSession,
) -> None:
    config = make_config([target(simulator.url, sources=[SOURCE])])
    service_id = next(iter(simulator.sim.resources.project("p1").services))
    async with start_exporter(config) as running:
        async with session.put(
            f"{simulator.url}/_sim/services/p1/{service_id}", json={"status": "Service_Melting"}
        ) as response:
            assert response.status == 200
        await running.exporter.poll_all_once()
        samples = await running.metrics()
    melting = samples.series("vias_algorithm_services", project_id="p1", status="service_melting")
    assert sum(melting.values()) == 1
    assert samples.value("vias_up", project_id="p1", source=SOURCE) == 1


async def test_an_outage_keeps_the_failed_services_named(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    """While the list fails (a 500 every time) its source is down, the failed services stay
    named (their state is unknown, not recovered) even once the counts are too old to show
    (a maximum age of 60 µs), and the job list polls on unaffected."""
    config = make_config(
        [target(simulator.url, sources=[SOURCE, "tasks"])], max_retries=0, max_age_intervals=1e-6
    )
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        before = (await running.metrics()).series("vias_problem_algorithm_service_info")
        simulator.sim.faults.add(Fault("server_error_json", match="/algorithm/services"))
        await running.exporter.poll_all_once()
        samples = await running.metrics()
    assert len(before) == 1
    assert not samples.series("vias_algorithm_services")  # stale counts are not shown
    assert samples.series("vias_problem_algorithm_service_info") == before
    assert samples.value("vias_up", project_id="p1", source=SOURCE) == 0
    assert samples.value("vias_up", project_id="p1", source="tasks") == 1
    errors = samples.value(
        "vias_poll_errors_total", project_id="p1", source=SOURCE, reason="server_error"
    )
    assert errors == 1
