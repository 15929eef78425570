"""The polling loop: its schedule, overruns, the start-up spread, what a recovery after
stale data counts, and a listing the same as the last one kept unparsed.

Break → failing test (each seen red once):
- first poll after random.uniform(0, min(1, interval / 10)) as before →
  test_first_polls_of_a_big_deployment_spread_over_the_interval
- the phase from Python's salted hash() or random →
  test_a_sources_place_in_the_spread_is_the_same_after_a_restart
- every list of a project at the project's phase (no per-list offset) →
  test_the_spread_survives_a_restart_and_keeps_a_projects_lists_apart
- the spread at FIRST_POLL_GAP x sources without the 1 s floor / the interval cap →
  test_a_small_deployment_polls_first_within_a_second,
  test_first_polls_of_a_big_deployment_spread_over_the_interval
- batch_tasks or edge_pools flagged `same_listing_same_data` →
  test_lists_that_skip_a_repeated_listing_would_make_the_same_data (and, batch tasks,
  ..._keeps_the_last_data_unparsed)
- `Listing.release` drops the held pages →
  test_a_change_on_the_last_page_parses_the_held_pages_in_order,
  test_held_pages_past_the_bound_are_parsed
- no HELD_BYTES bound → test_held_pages_past_the_bound_are_parsed
- `Listing.end` calls any complete listing unchanged →
  test_a_change_on_the_last_page_parses_the_held_pages_in_order and three more
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from exporter import paginator
from exporter.lists import REGISTRY
from exporter.poller import FIRST_POLL_GAP, start_phase
from exporter.service import Exporter
from exporter.simulator import Fault
from exporter.snapshot import SourceState
from tests.support import RunningSimulator, Samples, make_config, target, telemetry_registry

NOWHERE = "http://127.0.0.1:9"  # never started: only the schedule is looked at


def _fleet(projects: int, sources: list[str], interval: float = 60) -> list[dict[str, object]]:
    return [
        target(
            NOWHERE, project_id=f"project-{n:04d}", sources=sources, poll_interval_seconds=interval
        )
        for n in range(projects)
    ]


async def _first_poll_delays(
    config_targets: list[dict[str, object]],
) -> dict[tuple[str, str], float]:
    async with Exporter(make_config(config_targets)) as exporter:
        return {(p.project_id, p.source): p.first_poll_delay() for p in exporter.pollers}


@pytest.mark.parametrize("interval", [60, 20])
async def test_first_polls_of_a_big_deployment_spread_over_the_interval(interval: float) -> None:
    """500 projects x 2 lists: not all at once (as when every source waited at most 1 s),
    but over most of the interval (never past it), at about 20 a second."""
    delays = await _first_poll_delays(_fleet(500, ["tasks", "batch_tasks"], interval))
    assert len(delays) == 1000
    spread = min(interval, 1000 * FIRST_POLL_GAP)
    assert max(delays.values()) < spread <= interval
    assert max(delays.values()) > 0.9 * spread  # the spread is used, not bunched early
    per_second = Counter(int(delay) for delay in delays.values())
    assert max(per_second.values()) <= 2.5 * len(delays) / spread, per_second.most_common(3)


def test_a_sources_place_in_the_spread_is_the_same_after_a_restart() -> None:
    """A restart is another process, where Python's str hash() is salted differently."""
    code = "from exporter.poller import start_phase; print(repr(start_phase('p7', 'tasks')))"
    restarted = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert float(restarted.stdout) == start_phase("p7", "tasks")


async def test_the_spread_survives_a_restart_and_keeps_a_projects_lists_apart() -> None:
    fleet = _fleet(100, ["tasks", "batch_tasks", "infer_tasks"])
    first, again = await _first_poll_delays(fleet), await _first_poll_delays(fleet)
    assert first == again
    spread = min(60, len(first) * FIRST_POLL_GAP)
    for n in range(100):
        mine = sorted(d for (project, _), d in first.items() if project == f"project-{n:04d}")
        gaps = [b - a for a, b in itertools.pairwise(mine)]
        gaps.append(mine[0] + spread - mine[-1])  # around the end of the spread
        assert min(gaps) >= spread / len(REGISTRY) - 1e-9, (n, mine)


async def test_a_small_deployment_polls_first_within_a_second(simulator: RunningSimulator) -> None:
    sources = ["tasks", "batch_tasks", "infer_tasks", "face_edge_tasks"]
    config = make_config([target(simulator.url, sources=sources, poll_interval_seconds=60)])
    async with Exporter(config) as exporter:
        assert all(p.first_poll_delay() <= 1.0 for p in exporter.pollers)
        polled = asyncio.Event()
        refresh = exporter.exposition.refresh

        async def refreshed() -> None:
            await refresh()
            if exporter.ready:
                polled.set()

        for poller in exporter.pollers:
            poller._on_update = refreshed
        exporter.start()
        await asyncio.wait_for(polled.wait(), timeout=10)  # a deadline, not a timing


async def test_slow_polls_never_overlap_and_skipped_ticks_are_counted(
    simulator: RunningSimulator,
) -> None:
    simulator.sim.faults.add(Fault(kind="latency", seconds=0.25, match="/p1/tasks"))
    config = make_config([target(simulator.url, sources=["tasks"], poll_interval_seconds=0.1)])
    async with Exporter(config) as exporter:
        (poller,) = exporter.pollers
        active, most_active, three_polls = 0, 0, asyncio.Event()
        poll_once = poller.poll_once

        async def tracked_poll() -> SourceState[Any]:
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
        overruns = telemetry_registry(exporter.telemetry).get_sample_value(
            "vias_poll_overruns_total", {"project_id": "p1", "source": "tasks"}
        )
    assert most_active == 1
    # Each poll takes 0.25 s or more on a 0.1 s interval: at least two ticks skipped each.
    assert overruns is not None and overruns >= 2 * (poller.polls - 1)


async def test_recovery_after_stale_data_counts_what_changed_meanwhile(
    simulator: RunningSimulator,
) -> None:
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
    transitions = state.data.transitions
    assert [(before, after, n) for (_, before, after), (n, _) in transitions.items()] == [
        ("RUNNING", "FAILED", 1)
    ]


async def test_a_transition_series_keeps_the_time_it_was_first_counted(
    simulator: RunningSimulator,
) -> None:
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


# --- a listing the same as the last --------------------------------------------------


def _state(exporter: Exporter, source: str) -> Any:
    return exporter.store.current.sources[("p1", source)]


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Pages parsed into models, by list."""
    counts: Counter[str] = Counter()
    parse = paginator._parse

    def counting(vias_list: Any, body: bytes) -> Any:
        counts[vias_list.name] += 1
        return parse(vias_list, body)

    monkeypatch.setattr(paginator, "_parse", counting)
    return counts


async def test_a_listing_the_same_as_the_last_keeps_the_last_data_unparsed(
    simulator: RunningSimulator, parsed: Counter[str]
) -> None:
    """Job lists (their data follows from the listing alone) are not parsed again when
    every page is byte for byte the last poll's; batch tasks (their data sums over polls)
    always are."""
    sources = ["tasks", "infer_tasks", "batch_tasks"]
    config = make_config([target(simulator.url, sources=sources)])
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        first = {source: _state(exporter, source).data for source in sources}
        assert parsed["infer_tasks"] == 7  # 300 jobs in pages of 50, then an empty page
        parsed.clear()
        await exporter.poll_all_once()
        assert parsed == {"batch_tasks": 1}
        assert _state(exporter, "tasks").data is first["tasks"]
        assert _state(exporter, "infer_tasks").data == first["infer_tasks"]  # details asked anew
        simulator.world.step()
        await exporter.poll_all_once()
        assert parsed["tasks"] == 1 and parsed["infer_tasks"] == 7
        assert _state(exporter, "tasks").data != first["tasks"]


async def test_a_change_on_the_last_page_parses_the_held_pages_in_order(
    simulator: RunningSimulator, parsed: Counter[str]
) -> None:
    """Pages 1-6 are the last poll's and held; page 7 differs, so all are parsed: the data
    is what a first poll of the new listing makes, and the change counts as a transition."""
    project = simulator.world.projects["p1"]
    config = make_config([target(simulator.url, sources=["infer_tasks"])])
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        listing = project.newest_first(0, len(project.tasks))
        oldest_running = next(t.id for t in reversed(listing) if t.state == "RUNNING")
        assert listing.index(project.tasks[oldest_running]) >= 250  # on the last full page
        project.set_state(oldest_running, "FAILED", error_code="VIAS.10010002")
        parsed.clear()
        await exporter.poll_all_once()
        assert parsed["infer_tasks"] == 7
        data = _state(exporter, "infer_tasks").data
    async with Exporter(config) as fresh:
        await fresh.poll_all_once()
        first_poll = _state(fresh, "infer_tasks").data
    assert data.state_counts == first_poll.state_counts
    assert data.problem_tasks == first_poll.problem_tasks
    assert data.item_count == first_poll.item_count == len(project.tasks)
    assert [(a, b, n) for (_, a, b), (n, _) in data.transitions.items()] == [
        ("RUNNING", "FAILED", 1)
    ]


async def test_held_pages_past_the_bound_are_parsed(
    simulator: RunningSimulator, parsed: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paginator, "HELD_BYTES", 60_000)  # about two pages of 50 jobs
    config = make_config([target(simulator.url, sources=["infer_tasks"])])
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        first = _state(exporter, "infer_tasks").data
        parsed.clear()
        await exporter.poll_all_once()
        assert parsed["infer_tasks"] == 7
        assert _state(exporter, "infer_tasks").data == first


async def test_lists_that_skip_a_repeated_listing_would_make_the_same_data(
    simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `same_listing_same_data` promises, for every list that says it: aggregating
    the same listing again, given the last data, makes data equal to it."""
    monkeypatch.setattr(paginator, "HELD_BYTES", 0)  # nothing held: every page parsed
    flagged = [name for name, vias_list in REGISTRY.items() if vias_list.same_listing_same_data]
    assert {"tasks", "infer_tasks", "face_edge_tasks"} <= set(flagged)
    config = make_config(
        [target(simulator.url, sources=list(REGISTRY))],
        problem_tasks_limit=2,
        batch_task_series_limit=1,
    )
    now = [1000.0]
    async with Exporter(config, clock=lambda: now[0]) as exporter:
        await exporter.poll_all_once()
        first = {name: _state(exporter, name).data for name in flagged}
        now[0] += 60
        await exporter.poll_all_once()
        for name in flagged:
            assert _state(exporter, name).data == first[name], name
