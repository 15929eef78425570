"""Renders the snapshot and the exporter's own metrics into an exposition.

Rendering happens when a poll swaps in a new snapshot (in a worker thread, so the event
loop keeps serving); scrapes only pick up the cached bytes. Each list's families come from
its descriptor; lists sharing a renderer share its families.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as render_text
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as render_openmetrics
from prometheus_client.registry import Collector

from exporter.lists import REGISTRY
from exporter.lists.base import ListView, Renderer, ServiceAlgorithm
from exporter.snapshot import Snapshot, SnapshotStore
from exporter.telemetry import Telemetry

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def snapshot_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot: source health, then each renderer's families
    over every polled source of its lists, in registry order.

    Each view carries its project's algorithm services, from any list that gives them
    (`ViasList.algorithms`), from its last good data even while stale: a service's vendor
    and name outlive an outage of its list, and job series should not change labels twice
    per outage."""
    yield from _health(snapshot)
    algorithms: dict[str, dict[str, ServiceAlgorithm]] = {}
    for state in snapshot.sources.values():
        directory = REGISTRY[state.source].algorithms
        if directory is not None and state.data is not None:
            algorithms.setdefault(state.project_id, {}).update(directory(state.data))
    views: dict[Renderer[Any], list[ListView[Any]]] = {
        vias_list.render: [] for vias_list in REGISTRY.values()
    }
    for state in snapshot.sources.values():
        if state.data is not None:
            views[REGISTRY[state.source].render].append(
                ListView(
                    state.project_id,
                    state.source,
                    state.data,
                    state.fresh,
                    snapshot.shown_problems.get(state.key, ()),
                    algorithms.get(state.project_id, {}),
                )
            )
    for render, rendered_views in views.items():
        yield from render(rendered_views)


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
        if not state.polled:
            continue
        labels = [state.project_id, state.source]
        up.add_metric(labels, 1.0 if state.up else 0.0)
        if state.last_success is not None:
            last.add_metric(labels, state.last_success)
        if state.data is not None and state.fresh:
            items.add_metric(labels, state.data.item_count)
    yield from (up, last, items)


def _created_apart(families: Iterable[Metric]) -> Iterator[Metric]:
    """For the text format: a counter's `_created` samples as a gauge family of their own,
    whose HELP says what they are (prometheus-client would repeat the counter's)."""
    for family in families:
        created = [s for s in family.samples if s.name.endswith("_created")]
        if family.type != "counter" or not created:
            yield family
            continue
        family.samples = [s for s in family.samples if not s.name.endswith("_created")]
        yield family
        gauge = GaugeMetricFamily(
            f"{family.name}_created",
            f"Unix time each series of {family.name}_total was first counted.",
        )
        gauge.samples = created
        yield gauge


class _Exported(Collector):
    """The self-metrics (without their `_created` series: they would double the
    exposition, and nothing reads them) and the current snapshot's families."""

    def __init__(self, telemetry: Telemetry, store: SnapshotStore) -> None:
        self._telemetry = telemetry
        self._store = store
        self.text_format = True  # which format the render in progress writes

    def collect(self) -> Iterator[Metric]:
        for family in self._telemetry.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family
        families = snapshot_families(self._store.current)
        yield from _created_apart(families) if self.text_format else families


class Exposition:
    """The rendered exposition of the latest snapshot, in both formats, gzip on demand.
    Its owner renders it once its sources are registered (`Exporter.__aenter__`)."""

    def __init__(self, store: SnapshotStore, telemetry: Telemetry) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._exported = _Exported(telemetry, store)
        self.registry.register(self._exported)
        self._store = store
        self._rendered: dict[tuple[bool, bool], bytes] = {}
        self.rendered_snapshot = store.current
        self._dirty = False
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        """True once the served bytes show every source's first poll, successful or not."""
        return all(state.polled for state in self.rendered_snapshot.sources.values())

    def render(self) -> None:
        """Render synchronously (start-up, one-shot mode)."""
        # Taken before rendering: the render holds at least this snapshot's polls, so
        # readiness never claims a poll the served bytes do not show yet.
        snapshot = self._store.current
        self._exported.text_format = True
        text = render_text(self.registry)
        self._exported.text_format = False
        openmetrics = render_openmetrics(self.registry)  # type: ignore[no-untyped-call]
        self._rendered = {(False, False): text, (True, False): openmetrics}
        self.rendered_snapshot = snapshot

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
