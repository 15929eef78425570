"""Job vendors and algorithms from the algorithm services: the SDK's v2 job list item names
its `service_id` but no `company` (and may have no `title`); when `algorithm_services` is
polled, such a job's series take the vendor and algorithm of its service. Both shapes of
job list item, over real HTTP against the simulator (its v2 listing gives a job marked
`sdk_shape` in the SDK's shape, on service `svc-<algorithm>`).

Changes tried, each seen red (failing tests):
- no fill-in (`completed` returns the group as listed): the HTTP fill-in, summing,
  outage and unit tests;
- a listed vendor overwritten (`service.vendor or vendor`): test_a_listed_vendor_and_...;
- the algorithm not filled: test_a_job_without_vendor_takes_its_services and the unit tests;
- the service in every count key, not only where needed: test_a_listed_vendor_and_...;
- merged counts replaced instead of added up: test_transitions_and_counts_..., test_groups_...;
- merged transitions keeping the later first-count time: test_groups_completing_alike_...;
- the services taken from fresh data only: test_the_services_outlive_an_outage_...;
- the simulator listing `company`/`title` for an SDK-shaped job: test_the_simulator_...;
- the join skipped (`service_join.with_services` returning the view as it is): the HTTP
  fill-in, summing, outage and first-met tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import aiohttp
import pytest

from exporter.lists.algorithm_services import ServiceAlgorithm
from exporter.lists.base import GroupKey, ListView
from exporter.lists.jobindex import JobGroup, Transition
from exporter.lists.jobs import JobData, TransitionCount, render_jobs
from exporter.lists.service_join import completed, with_services
from exporter.simulator import Fault, World
from exporter.simulator.objects import SimTask
from tests.support import TOKEN, RunningSimulator, Samples, StartExporter, make_config, target

JOBS_AND_SERVICES = ["tasks", "algorithm_services"]


@pytest.fixture
def world() -> World:
    """No generated jobs: each test's jobs are the only ones counted."""
    return World.generate(seed=7, project_ids=["p1"], tasks_per_project=0, scenario="healthy")


def service(simulator: RunningSimulator, algorithm: str) -> tuple[str, str]:
    """The (vendor, name) of the simulator's service for `algorithm`."""
    sim_service = simulator.sim.resources.project("p1").services[f"svc-{algorithm}"]
    return sim_service.company, sim_service.service_name


def sdk_job(simulator: RunningSimulator, **fields: str) -> SimTask:
    """A job the v2 listing gives in the SDK's shape: `service_id`, no `company`/`title`."""
    task = simulator.world.projects["p1"].add_task(**fields)  # type: ignore[arg-type]
    task.sdk_shape = True
    return task


def problem_labels(samples: Samples, task_id: str) -> dict[str, str]:
    (labels,) = samples.series("vias_problem_task_info", task_id=task_id)
    return dict(labels)


async def poll(start_exporter: StartExporter, url: str, sources: list[str]) -> Samples:
    config = make_config([target(url, sources=sources)])
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        return await running.metrics()


async def test_the_simulator_lists_a_job_without_vendor_in_the_sdk_shape(
    simulator: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    project = simulator.world.projects["p1"]
    sdk = sdk_job(simulator, algorithm="fire_smoke")
    listed = project.add_task(vendor="acme", algorithm="fire_smoke")
    headers = {"X-Auth-Token": TOKEN}
    async with session.get(f"{simulator.url}/v2/p1/tasks", headers=headers) as response:
        items = {item["id"]: item for item in (await response.json())["tasks"]}
    assert "company" not in items[sdk.id] and "title" not in items[sdk.id]
    assert items[sdk.id]["service_id"] == "svc-fire_smoke"
    assert (items[listed.id]["company"], items[listed.id]["title"]) == ("acme", "fire_smoke")
    assert service(simulator, "fire_smoke")[1] == "fire_smoke"  # the service is served


async def test_a_job_without_vendor_takes_its_services(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    sdk = sdk_job(simulator, state="FAILED", algorithm="intrusion")
    vendor, name = service(simulator, "intrusion")
    assert vendor and name == "intrusion"

    alone = await poll(start_exporter, simulator.url, ["tasks"])
    labels = problem_labels(alone, sdk.id)
    assert (labels["vendor"], labels["algorithm"], labels["service_id"]) == (
        "",
        "",
        "svc-intrusion",
    ), "without the services list nothing is filled"

    both = await poll(start_exporter, simulator.url, JOBS_AND_SERVICES)
    labels = problem_labels(both, sdk.id)
    assert (labels["vendor"], labels["algorithm"]) == (vendor, "intrusion")
    counted = both.series("vias_tasks", source="tasks", state="FAILED")
    assert {(dict(k)["vendor"], dict(k)["algorithm"]): v for k, v in counted.items()} == {
        (vendor, "intrusion"): 1
    }


async def test_a_listed_vendor_and_algorithm_are_kept(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    listed = simulator.world.projects["p1"].add_task(
        state="FAILED", vendor="acme", algorithm="intrusion"
    )
    assert service(simulator, "intrusion")[0] != "acme"
    config = make_config([target(simulator.url, sources=JOBS_AND_SERVICES)])
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await running.metrics()
        data = running.exporter.store.current.sources[("p1", "tasks")].data
    labels = problem_labels(samples, listed.id)
    assert (labels["vendor"], labels["algorithm"]) == ("acme", "intrusion")
    # A job with its vendor and algorithm is not counted under its service at all.
    assert list(data.state_counts) == [("acme", "intrusion", "cloud", "")]  # type: ignore[union-attr]


async def test_transitions_and_counts_are_summed_under_the_filled_group(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    """Two jobs of the same service, one listed with the service's own vendor and
    algorithm, one in the SDK's shape: one group, counted twice; their transitions too."""
    project = simulator.world.projects["p1"]
    vendor, _ = service(simulator, "license_plate")
    jobs = [
        project.add_task(vendor=vendor, algorithm="license_plate"),
        sdk_job(simulator, algorithm="license_plate"),
    ]
    config = make_config([target(simulator.url, sources=JOBS_AND_SERVICES)])
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        for job in jobs:
            project.set_state(job.id, "FAILED", "VIAS.10030001", "exited")
        await running.exporter.poll_all_once()
        samples = await running.metrics()
    group = {"vendor": vendor, "algorithm": "license_plate", "deployment": "cloud"}
    assert (
        samples.value("vias_tasks", project_id="p1", source="tasks", state="FAILED", **group) == 2
    )
    moved = samples.series(
        "vias_task_state_transitions_total", from_state="RUNNING", to_state="FAILED"
    )
    assert [(group.items() <= dict(labels).items(), n) for labels, n in moved.items()] == [
        (True, 2)
    ]


async def test_the_services_outlive_an_outage_of_their_list(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    """The services list fails and its data grows stale (a maximum age of 60 µs): the jobs
    keep their filled labels rather than change them twice per outage."""
    sdk = sdk_job(simulator, state="FAILED", algorithm="intrusion")
    vendor, _ = service(simulator, "intrusion")
    config = make_config(
        [target(simulator.url, sources=JOBS_AND_SERVICES)], max_retries=0, max_age_intervals=1e-6
    )
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        simulator.sim.faults.add(Fault("server_error_json", match="/algorithm/services"))
        await running.exporter.poll_all_once()
        samples = await running.metrics()
    assert samples.value("vias_up", project_id="p1", source="algorithm_services") == 0
    assert not samples.series("vias_algorithm_services")  # stale: its counts are not shown
    assert problem_labels(samples, sdk.id)["vendor"] == vendor


def test_only_empty_labels_are_filled() -> None:
    known = {"s": ServiceAlgorithm("acme", "helmet")}
    assert completed(("", "", "edge"), "s", known) == ("acme", "helmet", "edge")
    assert completed(("hik", "", "edge"), "s", known) == ("hik", "helmet", "edge")
    assert completed(("", "fire", "edge"), "s", known) == ("acme", "fire", "edge")
    assert completed(("", "", "edge"), "other", known) == ("", "", "edge")
    assert completed(("", "", "edge"), "", {"": ServiceAlgorithm("x", "y")}) == ("", "", "edge")


def job_view(
    counts: Mapping[JobGroup, Mapping[str, int]], transitions: Mapping[Transition, TransitionCount]
) -> ListView[JobData]:
    data = JobData(counts, (), 0, 0, index={}, transitions=transitions)
    return ListView("p1", "tasks", data, fresh=True, shown_problems=())


def rendered(view: ListView[JobData]) -> tuple[dict[GroupKey, dict[str, float]], dict[Any, Any]]:
    """The counts (non-zero) by exported group, first shown first, and the transitions."""
    tasks, moved, _ = render_jobs([view])
    counts: dict[GroupKey, dict[str, float]] = {}
    for sample in tasks.samples:
        labels = sample.labels
        group = (labels["vendor"], labels["algorithm"], labels["deployment"])
        shown = counts.setdefault(group, {})
        if sample.value:
            shown[labels["state"]] = sample.value
    transitions: dict[Any, Any] = {}
    for sample in moved.samples:
        labels = sample.labels
        key = (labels["vendor"], labels["algorithm"], labels["from_state"], labels["to_state"])
        transitions.setdefault(key, {})[sample.name.rpartition("_")[2]] = sample.value
    return counts, transitions


def test_groups_completing_alike_are_summed_first_met_first() -> None:
    """The join (`with_services`) then the job renderer, as the collector renders."""
    known = {"s1": ServiceAlgorithm("acme", "helmet"), "s2": ServiceAlgorithm("acme", "helmet")}
    counts = MappingProxyType(
        {
            ("hik", "fire", "cloud", ""): {"RUNNING": 1},
            ("", "", "cloud", "s1"): {"RUNNING": 2, "FAILED": 1},
            ("acme", "helmet", "cloud", ""): {"RUNNING": 4},
            ("", "", "cloud", "s2"): {"FAILED": 3},
        }
    )
    transitions = {
        (("", "", "cloud", "s1"), "RUNNING", "FAILED"): TransitionCount(2, 300.0),
        (("acme", "helmet", "cloud", ""), "RUNNING", "FAILED"): TransitionCount(5, 100.0),
    }
    view = job_view(counts, transitions)
    joined_counts, joined_transitions = rendered(with_services(view, known))
    assert list(joined_counts.items()) == [
        (("hik", "fire", "cloud"), {"RUNNING": 1}),
        (("acme", "helmet", "cloud"), {"RUNNING": 6, "FAILED": 4}),
    ]
    assert joined_transitions == {
        ("acme", "helmet", "RUNNING", "FAILED"): {"total": 7, "created": 100.0}
    }
    # Without the services nothing merges that did not before (the service is no label).
    assert with_services(view, {}) is view
    assert list(rendered(view)[0]) == [
        ("hik", "fire", "cloud"),
        ("", "", "cloud"),
        ("acme", "helmet", "cloud"),
    ]
