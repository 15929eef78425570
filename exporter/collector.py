"""The exposition of the snapshot and of the exporter's own metrics (`exposition_cache`).

After a poll, only the sources whose inputs changed are rendered again (in a worker
thread, so the event loop keeps serving). The self-metrics change with every request and
poll: they are rendered when a body is asked for, each project's again only when its
metrics changed. Each list's families come from its descriptor; lists sharing a renderer
share its families.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.config_rules import DEFAULT_LABEL_VALUE_MAX_BYTES
from exporter.exposition_cache import EOF, OPENMETRICS, TEXT, Layout, Piece, Pieces, body, pieces
from exporter.label_values import LabelCap, report_cut
from exporter.lists import REGISTRY
from exporter.lists.base import ListView, Renderer
from exporter.lists.service_join import NO_SERVICES, services_by_project, with_services
from exporter.metric_filter import MetricFilter
from exporter.shared_bodies import SharedBodies
from exporter.snapshot import Snapshot, SnapshotStore, SourceKey, SourceState
from exporter.telemetry import Telemetry

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_EOF = Piece(EOF)


def renderers() -> list[Renderer[Any]]:
    """Each list renderer once, in registry order (lists may share one)."""
    return list(dict.fromkeys(vias_list.render for vias_list in REGISTRY.values()))


def health_families(states: Iterable[SourceState[Any]]) -> Iterator[Metric]:
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
    for state in states:
        if not state.polled:
            continue
        labels = [state.project_id, state.source]
        up.add_metric(labels, 1.0 if state.up else 0.0)
        if state.last_success is not None:
            last.add_metric(labels, state.last_success)
        if state.data is not None and state.fresh:
            items.add_metric(labels, state.data.item_count)
    yield from (up, last, items)


def without_created(families: Iterable[Metric]) -> Iterator[Metric]:
    """The self-metrics without their `_created` series: they would double the
    exposition, and nothing reads them."""
    for family in families:
        family.samples = [s for s in family.samples if not s.name.endswith("_created")]
        yield family


@dataclass(frozen=True, slots=True)
class _Source:
    state: SourceState[Any]  # what its health lines show: made again at every poll
    view: tuple[object, ...]  # what its list's lines were made from
    listed: Pieces  # made again only when the view changed: most polls list what the last did
    pieces: Pieces  # both


class Exposition:
    """The exposition of the latest snapshot, in both formats, gzip on demand. Its owner
    renders it once its sources are registered (`Exporter.__aenter__`)."""

    def __init__(
        self,
        store: SnapshotStore,
        telemetry: Telemetry,
        *,
        metric_filter: MetricFilter | None = None,
    ) -> None:
        self.store, self.telemetry = store, telemetry
        self.allowed = metric_filter or MetricFilter()
        # The lists' label values are cut at this (`label_value_max_bytes`) when rendered.
        self.label_value_max_bytes = DEFAULT_LABEL_VALUE_MAX_BYTES
        # A renderer yields the same families whatever its views: these, given none.
        families = [*health_families(()), *(f for render in renderers() for f in render([]))]
        self._layout = Layout(filter(self.allowed.allows, families))
        self._own_layout = Layout(filter(self.allowed.allows, telemetry.project_families))
        self._sources: dict[SourceKey, _Source] = {}
        self._rendered: Sequence[Pieces] = ()  # one snapshot's, swapped in whole
        self.rendered_snapshot = store.current
        # Renders of each source's list lines since it appeared: what a poll costs.
        self.source_renders: Counter[SourceKey] = Counter()
        self._projects: dict[str, tuple[int, Pieces]] = {}  # by the version they show
        self._dirty = False
        self._lock = asyncio.Lock()
        self._rendering = threading.Lock()
        self._own_lock = threading.Lock()  # scrapes run in worker threads
        self._bodies = SharedBodies(lambda om, gz: self.body(openmetrics=om, gzipped=gz))

    @property
    def ready(self) -> bool:
        """True once the served bytes show every source's first poll, successful or not."""
        return all(state.polled for state in self.rendered_snapshot.sources.values())

    def render(self) -> None:
        """Bring the lines up to the current snapshot, synchronously (start-up, one-shot
        mode); only the sources whose inputs changed are rendered."""
        # Taken before rendering: the render holds at least this snapshot's polls, so
        # readiness never claims a poll the served bytes do not show yet.
        with self._rendering:  # a direct call may meet a refresh's thread
            snapshot = self.store.current
            self._rendered = self._update(snapshot)
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
        """The self-metrics, then the snapshot's families (health first, then each
        renderer's in registry order), sources in snapshot order."""
        return self._body(self._rendered, openmetrics, gzipped)

    async def serve(self, *, openmetrics: bool, gzipped: bool) -> bytes:
        """`body` joined in a worker thread (a scrape does not hold up the event loop), the
        same bytes to every scrape until something it shows changes (`SharedBodies`)."""
        # What it shows is taken first: what changes meanwhile makes the next scrape join.
        shows = (self._rendered, self.telemetry.changes)
        return await self._bodies.get((openmetrics, gzipped), shows)

    def _body(self, rendered: Sequence[Pieces], openmetrics: bool, gzipped: bool) -> bytes:
        fmt = OPENMETRICS if openmetrics else TEXT
        process = list(without_created(self.telemetry.process_registry.collect()))
        process_layout = Layout(filter(self.allowed.allows, process))  # discovery comes and goes
        parts = [
            *self._own_layout.join(self._project_pieces(), fmt),
            *process_layout.join([pieces(process)], fmt),
            *self._layout.join(rendered, fmt),
        ]
        return body([*parts, _EOF] if openmetrics else parts, gzipped=gzipped)

    def _project_pieces(self) -> list[Pieces]:
        """Each project's self-metric lines, rendered again when its version moved."""
        with self._own_lock:
            known, self._projects = self._projects, {}
            for project_id, metrics in self.telemetry.projects():
                version = metrics.version  # read first: a change meanwhile renders again
                lines = known.get(project_id)
                if lines is None or lines[0] != version:
                    lines = (version, pieces(without_created(metrics.registry.collect())))
                self._projects[project_id] = lines
            return [lines for _, lines in self._projects.values()]

    def _update(self, snapshot: Snapshot) -> tuple[Pieces, ...]:
        services = services_by_project((s.project_id, s.data) for s in snapshot.sources.values())
        sources: dict[SourceKey, _Source] = {}
        for key, state in snapshot.sources.items():
            shown = snapshot.shown_problems.get(key, ())
            view = (state.data, state.fresh, shown, services.get(key[0], NO_SERVICES))
            known = self._sources.get(key)
            # Tuples compare item by item, each `is` first, then `==`: the list's data by
            # value (each list's data compares what it shows).
            if known is None or known.view != view:
                listed = self._list_pieces(state, view)
                self.source_renders[key] += 1
            elif known.state is state:
                sources[key] = known
                continue
            else:
                listed = known.listed
            health = pieces(filter(self.allowed.allows, health_families([state])))
            both = ({**health[0], **listed[0]}, {**health[1], **listed[1]})
            sources[key] = _Source(state, view, listed, both)
        for gone in self._sources.keys() - sources.keys():
            del self.source_renders[gone]
        self._sources = sources
        return tuple(source.pieces for source in sources.values())

    def _list_pieces(self, state: SourceState[Any], view: tuple[Any, ...]) -> Pieces:
        if state.data is None:
            return ({}, {})
        data, fresh, shown, services = view
        list_view = with_services(
            ListView(state.project_id, state.source, data, fresh, shown), services
        )
        families = filter(self.allowed.allows, REGISTRY[state.source].render([list_view]))
        cap = LabelCap(self.label_value_max_bytes)
        listed = pieces(families, cap)
        report_cut(cap, self.telemetry, state.project_id, state.source)
        return listed
