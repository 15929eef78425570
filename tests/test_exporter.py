"""The exporter end to end in-process: the real web server scraped over loopback, polling
the simulator over real HTTP, compared to the simulator's seeded truth.

| change to the code (tried, seen red) | failing test |
|---|---|
| `Exporter.ready` also requires the first poll to succeed | test_ready_after_a_first_poll... |
| landing page: "last success" always "never" | test_endpoints_negotiation_gzip_... |
| landing page: a failed poll shown as "ok" | test_ready_after_a_first_poll... |
"""

from __future__ import annotations

import gzip
import html
import re
from collections import Counter

from exporter.lists import DEFAULT_LISTS
from exporter.lists.batch_tasks import BATCH_TASK_STATES
from exporter.lists.jobs import PROBLEM_STATES, TASK_STATES
from exporter.simulator import Fault
from tests.support import SECRETS, RunningSimulator, Samples, StartExporter, make_config, target

ALL_SOURCES = ["tasks", "batch_tasks", "infer_tasks", "face_edge_tasks"]


def expected_task_counts(sim: RunningSimulator, project_id: str) -> Counter[tuple[str, ...]]:
    return Counter(
        (task.vendor, task.algorithm, task.deployment, task.state)
        for task in sim.world.projects[project_id].tasks.values()
    )


def landing_rows(page: str) -> dict[tuple[str, str], tuple[str, ...]]:
    """(project, source) -> (interval, last poll, last success) from the landing page's
    table of targets (after the API budget plan's)."""
    rows = {}
    targets = page.split("<h2>Targets</h2>", 1)[-1]
    for row in re.findall(r"<tr>(.*?)</tr>", targets, re.DOTALL):
        cells = [html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.DOTALL)]
        if cells:  # the header row has <th> cells
            project, source, *rest = cells
            rows[(project, source)] = tuple(rest)
    return rows


def exported_task_counts(
    samples: Samples, project_id: str, source: str
) -> Counter[tuple[str, ...]]:
    counts: Counter[tuple[str, ...]] = Counter()
    for labels, value in samples.series("vias_tasks", project_id=project_id, source=source).items():
        named = dict(labels)
        if value:
            counts[(named["vendor"], named["algorithm"], named["deployment"], named["state"])] = (
                int(value)
            )
    return counts


async def test_every_source_matches_the_simulators_truth(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    config = make_config([target(simulator.url, sources=ALL_SOURCES)])
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        samples = await running.metrics()
    project = simulator.world.projects["p1"]
    truth = expected_task_counts(simulator, "p1")
    assert exported_task_counts(samples, "p1", "tasks") == truth
    assert exported_task_counts(samples, "p1", "infer_tasks") == truth
    face = Counter(
        ("", "face_extraction", "edge", job.state) for job in project.face_edge_tasks.values()
    )
    assert exported_task_counts(samples, "p1", "face_edge_tasks") == face
    for source in ALL_SOURCES:
        assert samples.value("vias_up", project_id="p1", source=source) == 1
    # Every documented state is present for every group, zero or not.
    groups = {key[:3] for key in truth}
    series = samples.series("vias_tasks", project_id="p1", source="tasks")
    assert len(series) == len(groups) * len(TASK_STATES)
    # Batch tasks: per state from batch_task_status_info, the non-zero states and the
    # problem states present (the cardinality budget), and info.
    for batch in project.batch_tasks.values():
        counts = {s.upper(): n for s, n in batch.status_counts().items()}
        for state in BATCH_TASK_STATES:
            expected = counts.get(state) or (0 if state in PROBLEM_STATES else None)
            assert (
                samples.value(
                    "vias_batch_task_tasks",
                    project_id="p1",
                    batch_task_id=batch.id,
                    batch_task_name=batch.name,
                    state=state,
                )
                == expected
            )
        assert (
            samples.value(
                "vias_batch_task_info",
                project_id="p1",
                batch_task_id=batch.id,
                batch_task_name=batch.name,
                vendor=batch.vendor,
                algorithm=batch.algorithm,
                deployment=batch.deployment,
                video_group=batch.video_group,
            )
            == 1
        )
    # Problem jobs are named.
    problems = {
        dict(labels)["task_id"]
        for labels in samples.series("vias_problem_task_info", project_id="p1", source="tasks")
    }
    assert problems == {
        t.id
        for t in project.tasks.values()
        if t.state in {"ABNORMAL", "FAILED", "LACK_OF_RESOURCES", "CREATE_FAILED", "START_FAILED"}
    }


async def test_state_changes_new_and_deleted_jobs_are_transitions(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    project = simulator.world.projects["p1"]
    config = make_config([target(simulator.url, sources=["tasks"])])
    running_ids = [t.id for t in project.tasks.values() if t.state == "RUNNING"]
    changed, deleted = running_ids[0], running_ids[1]
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        first = await running.metrics()
        assert not first.series("vias_task_state_transitions_total")  # first poll: no history
        project.set_state(changed, "ABNORMAL", error_code="VIAS.10010002")
        project.delete_task(deleted)
        await running.exporter.poll_all_once()
        samples = await running.metrics()
    job = project.tasks[changed]
    group = {"vendor": job.vendor, "algorithm": job.algorithm, "deployment": job.deployment}
    assert (
        samples.value(
            "vias_task_state_transitions_total",
            project_id="p1",
            source="tasks",
            from_state="RUNNING",
            to_state="ABNORMAL",
            **group,
        )
        == 1
    )
    assert (
        sum(samples.series("vias_task_state_transitions_total", to_state="DELETED").values()) == 1
    )
    assert exported_task_counts(samples, "p1", "tasks") == expected_task_counts(simulator, "p1")
    assert (
        samples.value(
            "vias_problem_task_info",
            project_id="p1",
            source="tasks",
            task_id=changed,
            task_name=job.name,
            state="ABNORMAL",
            error_code="VIAS.10010002",
            **group,
            # what the job stands on, from the v2 listing: its camera and service
            video_source_name=f"camera-{changed[:6]}",
            edge_pool_id="",
            service_id=f"svc-{job.algorithm}",
        )
        == 1
    )


async def test_a_failing_project_keeps_the_others_data(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    from exporter.simulator import Fault

    config = make_config([target(simulator.url, "p1"), target(simulator.url, "p2")])
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        before = await running.metrics()
        simulator.sim.faults.add(Fault(kind="server_error_html", match="/p2/"))
        await running.exporter.poll_all_once()
        after = await running.metrics()
    for source in ("tasks", "batch_tasks"):
        assert after.value("vias_up", project_id="p1", source=source) == 1
        assert after.value("vias_up", project_id="p2", source=source) == 0
        assert after.series("vias_tasks", project_id="p1") == before.series(
            "vias_tasks", project_id="p1"
        )
    # p2's last good data stays (within the maximum age), with its age visible.
    assert after.series("vias_tasks", project_id="p2") == before.series(
        "vias_tasks", project_id="p2"
    )
    assert after.value(
        "vias_last_success_timestamp_seconds", project_id="p2", source="tasks"
    ) == before.value("vias_last_success_timestamp_seconds", project_id="p2", source="tasks")
    assert (
        after.value(
            "vias_poll_errors_total", project_id="p2", source="tasks", reason="server_error"
        )
        == 1
    )


async def test_stale_counts_go_after_the_maximum_age_and_problem_jobs_stay_until_known(
    simulator: RunningSimulator,
) -> None:
    """While a source is down its counts show, with their age, up to the maximum age; the
    named problem jobs stay until the source answers again: their state is unknown, not
    recovered (so their alerts neither resolve nor page again across an outage)."""
    from exporter.service import Exporter
    from exporter.simulator import Fault

    now = [1000.0]
    config = make_config(
        [target(simulator.url, sources=["tasks"], poll_interval_seconds=60)],
        max_age_intervals=3,
        max_retries=0,
    )

    def samples(exporter: Exporter) -> Samples:
        exporter.exposition.render()
        return Samples.parse(exporter.exposition.body(openmetrics=False, gzipped=False).decode())

    async with Exporter(config, clock=lambda: now[0]) as exporter:
        await exporter.poll_all_once()
        problems = samples(exporter).series("vias_problem_task_info")
        assert problems
        simulator.sim.faults.add(Fault(kind="server_error_json", match="/tasks"))
        now[0] += 180  # exactly the maximum age: still shown
        await exporter.poll_all_once()
        assert samples(exporter).series("vias_tasks")
        now[0] += 1
        await exporter.poll_all_once()
        stale = samples(exporter)
        assert stale.value("vias_up", project_id="p1", source="tasks") == 0
        assert not stale.series("vias_tasks") and not stale.series("vias_poll_items")
        assert stale.series("vias_problem_task_info") == problems
        assert stale.value("vias_last_success_timestamp_seconds", project_id="p1", source="tasks")
        simulator.sim.faults.clear()
        project = simulator.world.projects["p1"]
        for task_id, job in project.tasks.items():
            if job.state in PROBLEM_STATES:
                project.set_state(task_id, "RUNNING")
        await exporter.poll_all_once()
        back = samples(exporter)
    assert back.series("vias_tasks") and not back.series("vias_problem_task_info")


async def test_endpoints_negotiation_gzip_readiness_and_landing_page(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    config = make_config([target(simulator.url)])
    async with start_exporter(config) as running:
        assert (await running.get("/-/healthy")).status == 200
        assert (await running.get("/-/ready")).status == 503
        await running.exporter.poll_all_once()
        assert (await running.get("/-/ready")).status == 200
        async with running.session.get(
            running.url + "/metrics",
            headers={
                "Accept": "application/openmetrics-text;version=1.0.0",
                "Accept-Encoding": "gzip",
            },
            auto_decompress=False,
        ) as response:
            body = gzip.decompress(await response.read()).decode()
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert body.endswith("# EOF\n")
        async with running.session.get(running.url + "/metrics") as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        async with running.session.get(running.url + "/") as response:
            landing = await response.text()
    rows = landing_rows(landing)
    assert set(rows) == {("p1", source) for source in DEFAULT_LISTS}  # a target naming none
    for interval, result, age in rows.values():
        assert (interval, result) == ("60s", "ok")
        assert re.fullmatch(r"\d+s ago", age), age
    for secret in SECRETS:
        assert secret not in landing and secret not in text and secret not in body


async def test_ready_after_a_first_poll_that_failed(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    """The README: /-/ready is 200 once every source has had its first poll, "successful or
    not" (a source that cannot be listed must not keep the pod out of its Service, where
    its failure could not be scraped)."""
    simulator.sim.faults.add(Fault(kind="unauthorized", match="/batch-tasks"))
    config = make_config([target(simulator.url)], max_retries=0, auth_backoff_seconds=0)
    async with start_exporter(config) as running:
        assert (await running.get("/-/ready")).status == 503
        async with running.session.get(running.url + "/") as response:
            before = landing_rows(await response.text())
        await running.exporter.poll_all_once()
        assert (await running.get("/-/ready")).status == 200
        samples = await running.metrics()
        async with running.session.get(running.url + "/") as response:
            after = landing_rows(await response.text())
    assert samples.value("vias_up", project_id="p1", source="tasks") == 1
    assert samples.value("vias_up", project_id="p1", source="batch_tasks") == 0
    assert before == {
        ("p1", source): ("60s", "not polled yet", "never") for source in DEFAULT_LISTS
    }
    assert after[("p1", "tasks")][1] == "ok"
    assert after[("p1", "batch_tasks")][0] == "60s"
    _, result, age = after[("p1", "batch_tasks")]
    assert result.startswith("failed: HTTP 401") and age == "never", (result, age)


async def test_ready_waits_until_metrics_show_every_source(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    """A poll that finishes while another render is running has its render coalesced into
    the next one; until that lands, /metrics lacks the source and /-/ready must say so."""
    config = make_config([target(simulator.url, sources=["tasks", "face_edge_tasks"])])
    async with start_exporter(config) as running:
        exposition = running.exporter.exposition
        async with exposition._lock:  # a render in flight: the polls' refreshes coalesce
            await running.exporter.poll_all_once()
            assert all(poller.polls == 1 for poller in running.exporter.pollers)
            assert (await running.get("/-/ready")).status == 503
            samples = await running.metrics()
            assert samples.value("vias_up", project_id="p1", source="face_edge_tasks") is None
        await exposition.refresh()  # the coalesced render
        assert (await running.get("/-/ready")).status == 200
        samples = await running.metrics()
    for source in ("tasks", "face_edge_tasks"):
        assert samples.value("vias_up", project_id="p1", source=source) == 1


async def test_problem_jobs_are_capped_per_project_across_sources(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    project = simulator.world.projects["p1"]
    problems = sum(1 for t in project.tasks.values() if t.state in PROBLEM_STATES)
    assert problems > 3  # the seeded world has enough to cap
    config = make_config(
        [target(simulator.url, sources=["tasks", "infer_tasks"])], problem_tasks_limit=3
    )
    async with start_exporter(config) as running:
        tasks_poller, infer_poller = running.exporter.pollers
        await tasks_poller.poll_once()
        await infer_poller.poll_once()
        samples = await running.metrics()
    shown = samples.series("vias_problem_task_info", project_id="p1")
    assert len(shown) == 3
    # The most urgent kept: FAILED, ABNORMAL, START_FAILED, CREATE_FAILED,
    # LACK_OF_RESOURCES, then by id (and source).
    urgency = ["FAILED", "ABNORMAL", "START_FAILED", "CREATE_FAILED", "LACK_OF_RESOURCES"]
    ranked = sorted(
        (urgency.index(t.state), t.id, source)
        for t in project.tasks.values()
        if t.state in PROBLEM_STATES
        for source in ("infer_tasks", "tasks")
    )
    assert {(dict(labels)["task_id"], dict(labels)["source"]) for labels in shown} == {
        (task_id, source) for _, task_id, source in ranked[:3]
    }
    # Each poll adds its own problem jobs the cap leaves unnamed: `tasks` alone, all but 3;
    # then `infer_tasks`, all but its share of the project's top 3.
    infer_shown = sum(1 for _, _, source in ranked[:3] if source == "infer_tasks")
    assert samples.value("vias_problem_task_series_dropped_total", project_id="p1") == (
        (problems - 3) + (problems - infer_shown)
    )
