"""Renders the snapshot and the exporter's own metrics into an exposition.

Rendering happens when a poll swaps in a new snapshot (in a worker thread, so the event
loop keeps serving); scrapes only pick up the cached bytes.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as render_text
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as render_openmetrics
from prometheus_client.registry import Collector

from exporter.aggregation import BatchSnapshot, JobSnapshot
from exporter.models import BATCH_TASK_STATES, TASK_STATES
from exporter.snapshot import (
    Snapshot,
    SnapshotStore,
    SourceKey,
    SourceState,
    shown_problem_tasks,
)
from exporter.telemetry import Telemetry

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

GROUP_LABELS = ["project_id", "source", "vendor", "algorithm", "deployment"]


class SnapshotCollector(Collector):
    """Metric families of the current snapshot, built afresh on each render."""

    def __init__(self, store: SnapshotStore, problem_tasks_limit: int) -> None:
        self._store = store
        self._problem_tasks_limit = problem_tasks_limit

    def collect(self) -> Iterator[Metric]:
        snapshot = self._store.current
        yield from _health(snapshot)
        yield from _jobs(snapshot, self._problem_tasks_limit)
        yield from _batch_tasks(snapshot)


def _health(snapshot: Snapshot) -> Iterator[Metric]:
    keys = ["project_id", "source"]
    up = GaugeMetricFamily("vias_up", "1 when the last poll of this source succeeded.", labels=keys)
    last = GaugeMetricFamily(
        "vias_last_success_timestamp_seconds",
        "Unix time of the last successful poll.",
        labels=keys,
    )
    items = GaugeMetricFamily(
        "vias_poll_items",
        "Unique items listed by the last successful poll.",
        labels=keys,
    )
    for state in snapshot.sources.values():
        labels = [state.project_id, state.source]
        up.add_metric(labels, 1.0 if state.up else 0.0)
        if state.last_success is not None:
            last.add_metric(labels, state.last_success)
        if state.data is not None:
            items.add_metric(labels, state.data.item_count)
    yield from (up, last, items)


def _job_sources(snapshot: Snapshot) -> Iterator[tuple[SourceState, JobSnapshot]]:
    for state in snapshot.sources.values():
        if isinstance(state.data, JobSnapshot):
            yield state, state.data


def _jobs(snapshot: Snapshot, problem_tasks_limit: int) -> Iterator[Metric]:
    tasks = GaugeMetricFamily("vias_tasks", "Jobs in each state.", labels=[*GROUP_LABELS, "state"])
    transitions = CounterMetricFamily(
        "vias_task_state_transitions",
        "State changes seen between consecutive polls.",
        labels=[*GROUP_LABELS, "from_state", "to_state"],
    )
    problems = GaugeMetricFamily(
        "vias_problem_task_info",
        "1 for each job in a problem state (capped per project).",
        labels=[
            "project_id",
            "source",
            "task_id",
            "task_name",
            "state",
            "error_code",
            "vendor",
            "algorithm",
            "deployment",
        ],
    )
    for state, data in _job_sources(snapshot):
        where = [state.project_id, state.source]
        for group, counts in data.state_counts.items():
            unknown = sorted(s for s in counts if s not in TASK_STATES)
            for job_state in (*TASK_STATES, *unknown):
                tasks.add_metric([*where, *group, job_state], counts.get(job_state, 0))
    for (project_id, source), shown in shown_problem_tasks(snapshot, problem_tasks_limit).items():
        for problem in shown:
            problems.add_metric(
                [
                    project_id,
                    source,
                    problem.task_id,
                    problem.task_name,
                    problem.state,
                    problem.error_code,
                    *problem.group,
                ],
                1.0,
            )
    for state in snapshot.sources.values():
        for (group, before, after), (total, created) in state.transitions.items():
            labels = [state.project_id, state.source, *group, before, after]
            transitions.add_metric(labels, total, created=created)
    yield from (tasks, transitions, problems)


def _batch_tasks(snapshot: Snapshot) -> Iterator[Metric]:
    keys = ["project_id", "batch_task_id", "batch_task_name"]
    tasks = GaugeMetricFamily(
        "vias_batch_task_tasks", "Tasks of each batch task by state.", labels=[*keys, "state"]
    )
    info = GaugeMetricFamily(
        "vias_batch_task_info",
        "1 per batch task; labels for joins.",
        labels=[*keys, "vendor", "algorithm", "deployment", "video_group"],
    )
    for state in snapshot.sources.values():
        if not isinstance(state.data, BatchSnapshot):
            continue
        for batch in state.data.batch_tasks:
            ids = [state.project_id, batch.batch_task_id, batch.name]
            info.add_metric(
                [*ids, batch.vendor, batch.algorithm, batch.deployment, batch.video_group], 1.0
            )
            unknown = sorted(s for s in batch.state_counts if s not in BATCH_TASK_STATES)
            for batch_state in (*BATCH_TASK_STATES, *unknown):
                tasks.add_metric([*ids, batch_state], batch.state_counts.get(batch_state, 0))
    yield from (tasks, info)


class _Combined(Collector):
    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


class Exposition:
    """The rendered exposition of the latest snapshot, in both formats, gzip on demand."""

    def __init__(
        self, store: SnapshotStore, telemetry: Telemetry, problem_tasks_limit: int = 200
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._store = store
        snapshot_collector = SnapshotCollector(store, problem_tasks_limit)
        self.registry.register(_Combined(telemetry.registry, snapshot_collector))
        self._rendered: dict[tuple[bool, bool], bytes] = {}
        self.rendered_sources: frozenset[SourceKey] = frozenset()
        self._dirty = False
        self._lock = asyncio.Lock()
        self.render()

    def render(self) -> None:
        """Render synchronously (start-up, one-shot mode)."""
        # Taken before rendering: sources are only ever added, so the render holds at least
        # these, and readiness never claims a source the served bytes do not show yet.
        sources = frozenset(self._store.current.sources)
        self._rendered = {
            (False, False): render_text(self.registry),
            (True, False): render_openmetrics(self.registry),  # type: ignore[no-untyped-call]
        }
        self.rendered_sources = sources

    async def refresh(self) -> None:
        """Re-render after a snapshot swap; concurrent calls coalesce into one more render."""
        self._dirty = True
        if self._lock.locked():
            return
        async with self._lock:
            while self._dirty:
                self._dirty = False
                await asyncio.to_thread(self.render)

    def body(self, *, openmetrics: bool, gzipped: bool) -> bytes:
        rendered = self._rendered  # one snapshot's renders, even if a refresh swaps the dict
        key = (openmetrics, gzipped)
        body = rendered.get(key)
        if body is None:
            body = gzip.compress(rendered[(openmetrics, False)], compresslevel=6)
            rendered[key] = body
        return body
