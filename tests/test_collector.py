"""The cached exposition (exporter/collector.py, exporter/exposition_cache.py): per source and
family pre-rendered lines, re-rendered only for the sources whose inputs changed, equal byte
for byte to a render of the whole snapshot through prometheus-client
(tests/exposition_reference.py), in both formats and gzipped; the self-metrics rendered
when a body is asked for, only for the projects whose metrics changed since, never after a
poll. Real polls of the simulator over HTTP, the real web app scraped over loopback.

| change to the code (tried, seen red) | failing test |
|---|---|
| view comparison always true | ..._equals_a_whole_render..., ..._only_its_own_source |
| view comparison always false (lists rendered at every poll) | ..._only_its_own_source |
| health lines kept with the list's (no `known.state is state`) | ..._only_its_own_source |
| the view leaves out the shown problem jobs | ..._moves_the_cap_renders_the_sibling |
| the view leaves out the algorithm directory | ..._new_algorithm_service_... |
| `_update` keeps sources gone from the snapshot | test_a_removed_project_... |
| `render()` collects the self-metrics too | ..._only_the_projects_whose_self... |
| `_project_pieces` ignores the version | ..._only_the_projects_whose_self... |
| `serve` keys the kept body without `Telemetry.changes` | ..._served_again_until... |
| `Telemetry.update` or `watch_discovery` does not move `changes` | ..._served_again_until... |
| `_project_pieces` renders every project at every body | ..._only_the_projects_whose_self... |
| text `_created` slots not optional (empty headers) | ..._equals_a_whole_render... |
| OpenMetrics body without `# EOF` | ..._equals_a_whole_render..., test_both_formats_parse... |
| `header`: text counter without `_total`, quotes unescaped | ..._whole_render..., test_headers... |
| gzip CRC or size of part of the body only | test_gzip_bodies..., test_both_formats_parse... |
| pieces deflated with Z_SYNC_FLUSH | test_gzip_bodies_... |
| `sample_lines`: label values not escaped, or not sorted | test_sample_lines_are_what_... |
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib
from collections import Counter
from typing import Any

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.collector import Exposition
from exporter.exposition_cache import header, sample_lines
from exporter.lists import REGISTRY
from exporter.lists.jobs import PROBLEM_STATES
from exporter.own_metrics import DiscoveryMetric, ProcessMetric, ProjectMetric
from exporter.poller import SourcePoller
from exporter.service import Exporter
from exporter.simulator import Fault
from exporter.snapshot import SourceKey
from tests.exposition_reference import render_families, render_whole
from tests.support import RunningExporter, RunningSimulator, StartExporter, make_config, target

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def assert_equals_whole_render(exposition: Exposition) -> None:
    for openmetrics in (False, True):
        cached = exposition.body(openmetrics=openmetrics, gzipped=False)
        assert cached == render_whole(exposition, openmetrics=openmetrics)


def grown(renders: Counter[SourceKey], before: dict[SourceKey, int]) -> Counter[SourceKey]:
    """The renders of each source since `before`."""
    return Counter(renders) - Counter(before)


def poller(exporter: Exporter, project_id: str, source: str) -> SourcePoller[Any, Any]:
    return next(p for p in exporter.pollers if p.project_id == project_id and p.source == source)


async def test_cached_body_equals_a_whole_render_in_both_formats(
    simulator: RunningSimulator,
) -> None:
    """Every list of two projects, through polls that change jobs (transitions and their
    `_created`, problem jobs appearing and leaving), a failed poll and a removal."""
    config = make_config(
        [
            target(simulator.url, "p1", sources=list(REGISTRY)),
            target(simulator.url, "p2", sources=["tasks", "batch_tasks", "face_edge_tasks"]),
        ],
        problem_tasks_limit=5,
        max_retries=0,
    )
    async with Exporter(config) as exporter:
        assert_equals_whole_render(exporter.exposition)
        await exporter.poll_all_once()
        assert_equals_whole_render(exporter.exposition)
        simulator.sim.faults.add(Fault("server_error_json", match="/p2/batch-tasks", times=1))
        down = b'vias_up{project_id="p2",source="batch_tasks"} 0.0'
        for step in range(3):
            simulator.world.step()
            await exporter.poll_all_once()
            assert_equals_whole_render(exporter.exposition)
            assert (down in exporter.exposition.body(openmetrics=False, gzipped=False)) == (
                step == 0
            )
        text = exporter.exposition.body(openmetrics=False, gzipped=False)
        assert b"vias_task_state_transitions_created{" in text  # the steps changed jobs
        simulator.sim.resources.project("p1").services.clear()
        await poller(exporter, "p1", "algorithm_services").poll_once()
        assert_equals_whole_render(exporter.exposition)
        exporter.store.remove("p2")
        exporter.exposition.render()
        assert_equals_whole_render(exporter.exposition)


async def test_both_formats_parse_and_gzip_is_served_over_http(
    simulator: RunningSimulator, start_exporter: StartExporter
) -> None:
    config = make_config([target(simulator.url, sources=list(REGISTRY))])
    async with start_exporter(config) as running:
        await running.exporter.poll_all_once()
        simulator.world.step()
        await running.exporter.poll_all_once()
        text = await scrape(running, accept="text/plain", gzip_ok=True)
        openmetrics = await scrape(running, accept=OPENMETRICS, gzip_ok=True)
        plain = await scrape(running, accept=OPENMETRICS, gzip_ok=False)
    text_families = {family.name for family in parse_text(text.decode())}
    om_families = {family.name for family in parse_openmetrics(openmetrics.decode())}
    assert openmetrics.endswith(b"# EOF\n") and openmetrics.count(b"# EOF") == 1
    assert "vias_task_state_transitions" in om_families
    assert {"vias_up", "vias_tasks", "vias_api_requests"} <= text_families & om_families
    assert plain == openmetrics  # nothing polled in between: the same bytes, inflated


async def scrape(running: RunningExporter, *, accept: str, gzip_ok: bool) -> bytes:
    headers = {"Accept": accept, "Accept-Encoding": "gzip" if gzip_ok else "identity"}
    async with running.session.get(running.url + "/metrics", headers=headers) as response:
        assert response.status == 200
        assert (response.headers.get("Content-Encoding") == "gzip") == gzip_ok
        return await response.read()  # aiohttp inflates the gzip member


async def test_gzip_bodies_inflate_to_the_plain_body(simulator: RunningSimulator) -> None:
    config = make_config([target(simulator.url, sources=list(REGISTRY))])
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        exposition = exporter.exposition
        for openmetrics in (False, True):
            plain = exposition.body(openmetrics=openmetrics, gzipped=False)
            member = exposition.body(openmetrics=openmetrics, gzipped=True)
            assert gzip.decompress(member) == plain  # checks the CRC and the size
            inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)  # what aiohttp does
            assert inflater.decompress(member) == plain and inflater.eof
            assert inflater.unused_data == b""
            assert len(member) < len(plain) / 4
        simulator.world.step()  # a poll after: its new pieces with the cached others
        await exporter.poll_all_once()
        plain = exposition.body(openmetrics=False, gzipped=False)
        assert gzip.decompress(exposition.body(openmetrics=False, gzipped=True)) == plain


async def test_a_poll_renders_only_its_own_source(simulator: RunningSimulator) -> None:
    """A poll of one source whose answer changed renders that source's list lines only;
    one with the same answer renders none (only its health lines: the last-success time
    moved)."""
    sources = ["tasks", "batch_tasks", "infer_tasks", "algorithm_services", "video_groups"]
    config = make_config(
        [target(simulator.url, "p1", sources=sources), target(simulator.url, "p2", sources=sources)]
    )
    async with Exporter(config) as exporter:
        renders = exporter.exposition.source_renders
        await exporter.poll_all_once()
        before = dict(renders)
        assert set(before) == {(p, s) for p in ("p1", "p2") for s in sources}
        simulator.world.step()
        for key in [("p1", "tasks"), ("p2", "infer_tasks")]:
            await poller(exporter, *key).poll_once()
            assert grown(renders, before) == {key: 1}, key
            before = dict(renders)
            assert_equals_whole_render(exporter.exposition)
        for key in [("p1", "tasks"), ("p2", "batch_tasks")]:  # the step changed neither
            await poller(exporter, *key).poll_once()
            assert grown(renders, before) == {}, key
            assert_equals_whole_render(exporter.exposition)  # with the new last-success time


async def test_a_sibling_poll_that_moves_the_cap_renders_the_sibling(
    simulator: RunningSimulator,
) -> None:
    """`tasks` and `infer_tasks` list the same jobs; with a cap of one problem job per
    project, the one shown goes to infer_tasks (ties go to the source named first). A new
    FAILED job seen by a poll of `tasks` takes the slot: infer_tasks, not polled, loses its
    named job, so its lines are rendered again."""
    project = simulator.world.projects["p1"]
    problems = [task.id for task in project.tasks.values() if task.state in PROBLEM_STATES]
    for task_id in problems[1:]:
        project.set_state(task_id, "RUNNING")
    project.set_state(problems[0], "LACK_OF_RESOURCES")
    config = make_config(
        [target(simulator.url, "p1", sources=["tasks", "infer_tasks"])], problem_tasks_limit=1
    )
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        shown = exporter.store.current.shown_problems
        assert [p.task_id for p in shown[("p1", "infer_tasks")]] == [problems[0]]
        renders = exporter.exposition.source_renders
        before = dict(renders)
        running = next(t.id for t in project.tasks.values() if t.state == "RUNNING")
        project.set_state(running, "FAILED", error_code="VIAS.10030001")
        await poller(exporter, "p1", "tasks").poll_once()
        assert grown(renders, before) == {("p1", "tasks"): 1, ("p1", "infer_tasks"): 1}
        text = exporter.exposition.body(openmetrics=False, gzipped=False).decode()
        assert f'source="infer_tasks",state="LACK_OF_RESOURCES",task_id="{problems[0]}"' not in (
            text
        )
        assert_equals_whole_render(exporter.exposition)


async def test_a_new_algorithm_service_renders_its_projects_job_sources(
    simulator: RunningSimulator,
) -> None:
    """The job lists take vendors from the project's algorithm services: a services poll
    that changes the directory renders that project's job sources again; one that
    changes nothing renders none; another project's are untouched."""
    sources = ["tasks", "algorithm_services"]
    config = make_config(
        [target(simulator.url, "p1", sources=sources), target(simulator.url, "p2", sources=sources)]
    )
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        renders = exporter.exposition.source_renders
        services = poller(exporter, "p1", "algorithm_services")
        before = dict(renders)
        await services.poll_once()
        assert grown(renders, before) == {}
        catalogue = simulator.sim.resources.project("p1").services
        some = next(iter(catalogue.values()))
        catalogue["svc-new"] = dataclasses.replace(some, service_id="svc-new", service_name="new")
        before = dict(renders)
        await services.poll_once()
        assert grown(renders, before) == {("p1", "algorithm_services"): 1, ("p1", "tasks"): 1}
        assert_equals_whole_render(exporter.exposition)


async def test_a_removed_project_leaves_the_exposition(simulator: RunningSimulator) -> None:
    config = make_config(
        [target(simulator.url, "p1"), target(simulator.url, "p2")], problem_tasks_limit=3
    )
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        exporter.store.remove("p2")
        await exporter.exposition.refresh()
        text = exporter.exposition.body(openmetrics=True, gzipped=False)
        assert b'project_id="p1"' in text
        snapshot_part = text[text.index(b"# HELP vias_up ") :]
        assert b'project_id="p2"' not in snapshot_part
        assert set(exporter.exposition.source_renders) == {("p1", "tasks"), ("p1", "batch_tasks")}
        assert_equals_whole_render(exporter.exposition)


async def test_a_body_renders_again_only_the_projects_whose_self_metrics_changed(
    simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config([target(simulator.url, "p1"), target(simulator.url, "p2")])
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        exposition = exporter.exposition
        exposition.body(openmetrics=False, gzipped=False)
        collected: Counter[str] = Counter()
        for project_id, metrics in exporter.telemetry.projects():

            def counting(
                project_id: str = project_id, collect: Any = metrics.registry.collect
            ) -> Any:
                collected[project_id] += 1
                return collect()

            monkeypatch.setattr(metrics.registry, "collect", counting)
        line = b'vias_poll_overruns_total{project_id="p1",source="tasks"} 1.0'
        assert line not in exposition.body(openmetrics=False, gzipped=False)
        assert collected == {}  # nothing changed since the last body
        exporter.telemetry.record(
            "p1", ProjectMetric.vias_poll_overruns, "tasks"
        )  # no poll, no render
        assert line in exposition.body(openmetrics=False, gzipped=False)
        assert collected == {"p1": 1}
        await poller(exporter, "p2", "tasks").poll_once()
        assert collected == {"p1": 1}  # a poll renders the snapshot's part only
        body = exposition.body(openmetrics=True, gzipped=True)
        assert collected == {"p1": 1, "p2": 1}
        assert gzip.decompress(body) == exposition.body(openmetrics=True, gzipped=False)
        assert_equals_whole_render(exposition)


async def test_the_last_body_is_served_again_until_something_it_shows_changes(
    simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config([target(simulator.url, "p1")])
    async with Exporter(config) as exporter:
        await exporter.poll_all_once()
        exposition, telemetry = exporter.exposition, exporter.telemetry

        async def served(openmetrics: bool = False) -> bytes:
            return await exposition.serve(openmetrics=openmetrics, gzipped=False)

        first = await served()
        assert await served() is first  # not joined again
        assert (await served(openmetrics=True)).endswith(b"# EOF\n")
        assert await served() == first
        telemetry.record("p1", ProjectMetric.vias_poll_overruns, "tasks")
        assert b'vias_poll_overruns_total{project_id="p1",source="tasks"} 1.0' in await served()
        telemetry.update(ProcessMetric.vias_config_last_reload_successful, value=0)
        assert b"\nvias_config_last_reload_successful 0.0\n" in await served()
        telemetry.watch_discovery()
        telemetry.update(DiscoveryMetric.vias_discovery_projects, value=3)
        assert b"\nvias_discovery_projects 3.0\n" in await served()
        telemetry.forget_discovery()
        assert b"vias_discovery_projects" not in await served()
        before = await served()
        simulator.world.step()
        await poller(exporter, "p1", "tasks").poll_once()
        assert await served() != before  # a new snapshot
        assert await served() == exposition.body(openmetrics=False, gzipped=False)
        telemetry.record("p1", ProjectMetric.vias_poll_overruns, "tasks")
        again = await served()
        assert await served() is again  # one bytes object for every scrape, whatever its size


@pytest.mark.parametrize("fmt", [0, 1])
def test_sample_lines_are_what_prometheus_client_writes(fmt: int) -> None:
    """The fast sample writer against prometheus-client's, on label values a job's error
    message may carry (quotes, backslashes, newlines, non-ASCII) and every kind of value."""
    family = GaugeMetricFamily("vias_probe", "Probe.", labels=["b", "a"])
    texts = ["plain", 'say "no"', "C:\\path", "two\nlines", "摄像头 离线", ""]
    values = [0.0, 1.0, -2.5, 1e21, 123456789.0, float("inf"), float("-inf"), float("nan")]
    for number, (text, value) in enumerate(zip(texts * 2, values + values[:4], strict=False)):
        family.add_metric([text, str(number)], value)
    family.samples.append(family.samples[0]._replace(labels={}))
    rendered = render_families([family], openmetrics=fmt == 1)
    assert rendered.endswith(sample_lines(family.samples) + (b"# EOF\n" if fmt else b""))
    assert rendered.count(b"\n") == len(family.samples) + 2 + fmt


@pytest.mark.parametrize("fmt", [0, 1])
def test_headers_are_what_prometheus_client_writes(fmt: int) -> None:
    """HELP texts with what each format escapes (backslashes, newlines, OpenMetrics quotes),
    every family type the exporter writes, and a unit."""
    help_text = 'Say "no" to C:\\path\nand 摄像头.'
    families = [
        GaugeMetricFamily("vias_probe", help_text),
        CounterMetricFamily("vias_probe_events", help_text),
        HistogramMetricFamily("vias_probe_seconds", help_text, unit="seconds"),
    ]
    for family in families:
        rendered = render_families([family], openmetrics=fmt == 1).removesuffix(b"# EOF\n")
        assert rendered == header(family, fmt)
