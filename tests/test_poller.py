"""The polling loop: its schedule, overruns, and what a recovery after stale data counts."""

from __future__ import annotations

import asyncio

from exporter.service import Exporter
from exporter.simulator import Fault
from tests.support import Samples, make_config, target


async def test_slow_polls_never_overlap_and_skipped_ticks_are_counted(simulator) -> None:
    simulator.sim.faults.add(Fault(kind="latency", seconds=0.25, match="/p1/tasks"))
    config = make_config([target(simulator.url, sources=["tasks"], poll_interval_seconds=0.1)])
    async with Exporter(config) as exporter:
        (poller,) = exporter.pollers
        active, most_active, three_polls = 0, 0, asyncio.Event()
        poll_once = poller.poll_once

        async def tracked_poll():  # type: ignore[no-untyped-def]
            nonlocal active, most_active
            active += 1
            most_active = max(most_active, active)
            try:
                return await poll_once()
            finally:
                active -= 1
                if poller.polls >= 3:
                    three_polls.set()

        poller.poll_once = tracked_poll  # type: ignore[method-assign]
        exporter.start()
        await asyncio.wait_for(three_polls.wait(), timeout=10)
        await exporter.stop()
        overruns = exporter.telemetry.registry.get_sample_value(
            "vias_poll_overruns_total", {"project_id": "p1", "source": "tasks"}
        )
    assert most_active == 1
    # Each poll takes 0.25 s or more on a 0.1 s interval: at least two ticks skipped each.
    assert overruns is not None and overruns >= 2 * (poller.polls - 1)


async def test_recovery_after_stale_data_counts_what_changed_meanwhile(simulator) -> None:
    now = [1000.0]
    project = simulator.world.projects["p1"]
    config = make_config(
        [target(simulator.url, sources=["tasks"], poll_interval_seconds=60)], max_retries=0
    )
    async with Exporter(config, clock=lambda: now[0]) as exporter:
        await exporter.poll_all_once()
        simulator.sim.faults.add(Fault(kind="server_error_json", match="/tasks"))
        now[0] += 181  # past the maximum age: the counts are no longer shown
        await exporter.poll_all_once()
        assert not exporter.store.current.sources[("p1", "tasks")].fresh
        failed = project.ids_in_state("RUNNING")[0]
        project.set_state(failed, "FAILED", error_code="VIAS.10010002")
        simulator.sim.faults.clear()
        now[0] += 60
        await exporter.poll_all_once()
        state = exporter.store.current.sources[("p1", "tasks")]
    assert state.up and state.data is not None
    # Every job is listed again but none is new; the one that failed during the outage
    # counts, so the new-failure alert still pages.
    transitions = state.data.transitions  # type: ignore[union-attr]
    assert [(before, after, n) for (_, before, after), (n, _) in transitions.items()] == [
        ("RUNNING", "FAILED", 1)
    ]


async def test_a_transition_series_keeps_the_time_it_was_first_counted(simulator) -> None:
    """The `_created` sample the new-failure alert relies on: the poll that first counted
    the series, unchanged when the series counts again later."""
    now = [1000.0]
    project = simulator.world.projects["p1"]
    config = make_config([target(simulator.url, sources=["tasks"])])
    by_group: dict[tuple[str, str, str], list[str]] = {}
    for task_id in project.ids_in_state("RUNNING"):
        job = project.tasks[task_id]
        by_group.setdefault((job.vendor, job.algorithm, job.deployment), []).append(task_id)
    (vendor, algorithm, deployment), ids = next(g for g in by_group.items() if len(g[1]) >= 2)
    async with Exporter(config, clock=lambda: now[0]) as exporter:
        await exporter.poll_all_once()
        for failing in ids[:2]:
            now[0] += 60
            project.set_state(failing, "FAILED")
            await exporter.poll_all_once()
        text = exporter.exposition.body(openmetrics=False, gzipped=False).decode()
    labels = {
        "project_id": "p1",
        "source": "tasks",
        "vendor": vendor,
        "algorithm": algorithm,
        "deployment": deployment,
        "from_state": "RUNNING",
        "to_state": "FAILED",
    }
    samples = Samples.parse(text)
    assert samples.value("vias_task_state_transitions_total", **labels) == 2
    assert samples.value("vias_task_state_transitions_created", **labels) == 1060.0
