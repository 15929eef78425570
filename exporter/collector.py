"""Renders the snapshot and the exporter's own metrics into an exposition.

The snapshot's part is kept as pre-rendered lines per source and family
(`exposition_cache`): after a poll only the sources whose inputs changed are rendered
again (in a worker thread, so the event loop keeps serving), and a scrape joins cached
bytes. The self-metrics change with every request and poll; they are rendered once per
body asked for, never after a poll. Each list's families come from its descriptor; lists
sharing a renderer share its families.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as generate_text
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from exporter.exposition_cache import (
    FORMATS,
    OPENMETRICS,
    TEXT,
    FamilyText,
    Piece,
    Pieces,
    Rendered,
    Slot,
    SourceLines,
    body,
    render,
    sample_lines,
    split_families,
)
from exporter.lists import REGISTRY
from exporter.lists.base import AlgorithmDirectory, ListView, ProblemTask, Renderer
from exporter.metric_filter import MetricFilter
from exporter.self_metrics import SelfMetricPieces, without_created
from exporter.shared_bodies import SharedBodies
from exporter.snapshot import Snapshot, SnapshotStore, SourceKey, SourceState
from exporter.telemetry import Telemetry

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_NO_ALGORITHMS: AlgorithmDirectory = MappingProxyType({})
_LAST_HEALTH_FAMILY = "vias_poll_items"  # where a list family new to the layout goes after


def _renderers() -> list[Renderer[Any]]:
    """Each list renderer once, in registry order (lists may share one)."""
    return list(dict.fromkeys(vias_list.render for vias_list in REGISTRY.values()))


def _directory(states: Iterable[SourceState[Any]]) -> AlgorithmDirectory:
    """A project's algorithm services from the lists that give them (`ViasList.algorithms`),
    from their last good data even while stale: a service's vendor and name outlive an
    outage of its list, and job series should not change labels twice per outage."""
    merged: dict[str, Any] = {}
    for state in states:
        directory = REGISTRY[state.source].algorithms
        if directory is not None and state.data is not None:
            merged.update(directory(state.data))
    return MappingProxyType(merged)


def _view(
    state: SourceState[Any], shown: Sequence[ProblemTask], algorithms: AlgorithmDirectory
) -> ListView[Any]:
    return ListView(state.project_id, state.source, state.data, state.fresh, shown, algorithms)


def snapshot_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot in one go: source health, then each renderer's
    families over every polled source of its lists, in registry order. What the cached
    exposition must equal (the reference in tests and the bench's baseline)."""
    yield from health_families(snapshot.sources.values())
    by_project: dict[str, list[SourceState[Any]]] = {}
    for state in snapshot.sources.values():
        by_project.setdefault(state.project_id, []).append(state)
    directories = {project: _directory(states) for project, states in by_project.items()}
    views: dict[Renderer[Any], list[ListView[Any]]] = {render: [] for render in _renderers()}
    for state in snapshot.sources.values():
        if state.data is not None:
            shown = snapshot.shown_problems.get(state.key, ())
            views[REGISTRY[state.source].render].append(
                _view(state, shown, directories[state.project_id])
            )
    for render_views, rendered_views in views.items():
        yield from render_views(rendered_views)


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


def _created_family(counter: Metric) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        f"{counter.name}_created",
        f"Unix time each series of {counter.name}_total was first counted.",
    )


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
        gauge = _created_family(family)
        gauge.samples = created
        yield gauge


class _Exported(Collector):
    """The whole exposition through prometheus-client in one go, uncached: the reference
    the cached exposition is checked against, and the bench's baseline."""

    def __init__(self, telemetry: Telemetry, store: SnapshotStore, allowed: MetricFilter) -> None:
        self._telemetry = telemetry
        self._store = store
        self._allowed = allowed
        self.text_format = True  # which format the render in progress writes

    def collect(self) -> Iterator[Metric]:
        yield from without_created(filter(self._allowed.allows, self._telemetry.registry.collect()))
        families = filter(self._allowed.allows, snapshot_families(self._store.current))
        yield from _created_apart(families) if self.text_format else families


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
        self._allowed = metric_filter or MetricFilter()
        self._telemetry = telemetry
        self._store = store
        self.registry = CollectorRegistry(auto_describe=False)
        self._reference = _Exported(telemetry, store, self._allowed)
        self.registry.register(self._reference)
        self._layout = self._template()
        self._placed: set[tuple[int, str]] = set()  # (format, family) known to have a slot
        self._lines: dict[SourceKey, SourceLines] = {}
        self._headers: dict[tuple[str, str, str, str, int], FamilyText] = {}
        self._header_pieces: dict[tuple[str, int], Piece] = {}
        self._self_metrics = SelfMetricPieces(telemetry, self._allowed, self._header_piece)
        self._directories: dict[str, tuple[tuple[Any, ...], AlgorithmDirectory]] = {}
        self._rendered = Rendered(self._layout, ())
        self.rendered_snapshot = store.current
        # Renders of each source's lines since it appeared: what a poll costs.
        self.source_renders: Counter[SourceKey] = Counter()
        self._dirty = False
        self._lock = asyncio.Lock()
        self._rendering = threading.Lock()
        self._bodies = SharedBodies(lambda om, gz: self.body(openmetrics=om, gzipped=gz))

    @property
    def ready(self) -> bool:
        """True once the served bytes show every source's first poll, successful or not."""
        return all(state.polled for state in self.rendered_snapshot.sources.values())

    def render(self) -> None:
        """Bring the cached lines up to the current snapshot, synchronously (start-up,
        one-shot mode); only the sources whose inputs changed are rendered."""
        # Taken before rendering: the render holds at least this snapshot's polls, so
        # readiness never claims a poll the served bytes do not show yet.
        with self._rendering:  # a direct call may meet a refresh's thread
            snapshot = self._store.current
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
        """The self-metrics (`self_metrics`), then the snapshot's cached lines."""
        fmt = OPENMETRICS if openmetrics else TEXT
        rendered = self._rendered  # one snapshot's lines, even if a refresh swaps them
        return body(self._self_metrics.pieces(fmt), rendered.tail(fmt), gzipped=gzipped)

    def render_uncached(self, *, openmetrics: bool) -> bytes:
        """The current snapshot and self-metrics through prometheus-client in one go, as
        the exposition was made before it was cached: what `body` must equal."""
        self._reference.text_format = not openmetrics
        if openmetrics:
            rendered: bytes = generate_openmetrics(self.registry)  # type: ignore[no-untyped-call]
            return rendered
        return generate_text(self.registry)

    async def serve(self, *, openmetrics: bool, gzipped: bool) -> bytes:
        """`body` joined in a worker thread (a scrape does not hold up the event loop), the
        same bytes to every scrape until something it shows changes (`SharedBodies`)."""
        # What it shows is taken first: what changes meanwhile makes the next scrape join.
        shows = (self._rendered, self._telemetry.changes)
        return await self._bodies.get((openmetrics, gzipped), shows)

    def _template(self) -> tuple[list[Slot], list[Slot]]:
        """Every family's header in exposition order; a text-format counter's `_created`
        gauge right after it, written when some source has such samples."""
        layout: tuple[list[Slot], list[Slot]] = ([], [])
        empty: list[Metric] = [*health_families(())]
        for render_views in _renderers():
            empty.extend(render_views([]))
        for family in filter(self._allowed.allows, empty):
            for fmt in FORMATS:
                for text in split_families(render([family], fmt)):
                    layout[fmt].append(Slot(text.name, Piece(text.header)))
            if family.type == "counter":
                for text in split_families(render([_created_family(family)], TEXT)):
                    layout[TEXT].append(Slot(text.name, Piece(text.header), optional=True))
        return layout

    def _update(self, snapshot: Snapshot) -> Rendered:
        directories = self._project_directories(snapshot)
        lines: dict[SourceKey, SourceLines] = {}
        for key, state in snapshot.sources.items():
            shown = snapshot.shown_problems.get(key, ())
            view = (state.data, state.fresh, shown, directories.get(key[0], _NO_ALGORITHMS))
            known = self._lines.get(key)
            # Tuples compare item by item, each `is` first, then `==`: the list's data by
            # value (each list's data compares what it shows).
            if known is None or known.view != view:
                listed = self._render_list(state, shown, view[3])
                self.source_renders[key] += 1
            elif known.state is state:
                lines[key] = known
                continue
            else:
                listed = known.listed
            health = self._pieces(health_families([state]), after="")
            lines[key] = SourceLines(state, view, health, listed)
        for gone in self._lines.keys() - lines.keys():
            del self.source_renders[gone]
        self._lines = lines
        return Rendered(self._layout, tuple(lines.values()))

    def _project_directories(self, snapshot: Snapshot) -> dict[str, AlgorithmDirectory]:
        """Each project's algorithm directory, made again only when the data of a list
        giving one changed (a failed poll keeps its data object)."""
        giving: dict[str, list[SourceState[Any]]] = {}
        for state in snapshot.sources.values():
            if REGISTRY[state.source].algorithms is not None and state.data is not None:
                giving.setdefault(state.project_id, []).append(state)
        directories: dict[str, tuple[tuple[Any, ...], AlgorithmDirectory]] = {}
        for project, states in giving.items():
            data = tuple(state.data for state in states)
            known = self._directories.get(project)
            if known is not None and _same_objects(known[0], data):
                directories[project] = known
            else:
                directories[project] = (data, _directory(states))
        self._directories = directories
        return {project: directory for project, (_, directory) in directories.items()}

    def _render_list(
        self,
        state: SourceState[Any],
        shown: Sequence[ProblemTask],
        algorithms: AlgorithmDirectory,
    ) -> Pieces:
        if state.data is None:
            return ({}, {})
        families = REGISTRY[state.source].render([_view(state, shown, algorithms)])
        return self._pieces(families, after=_LAST_HEALTH_FAMILY)

    def _pieces(self, families: Iterable[Metric], *, after: str) -> Pieces:
        pieces: Pieces = ({}, {})
        previous = [after, after]  # by format: the family written last, for `_ensure_slot`
        for family in filter(self._allowed.allows, families):
            for fmt, written, samples in _written(family):
                header = self._header(written, fmt)
                lines = sample_lines(samples)
                if lines:
                    pieces[fmt][header.name] = Piece(lines)
                self._ensure_slot(fmt, header.name, header.header, after=previous[fmt])
                previous[fmt] = header.name
        return pieces

    def _header(self, family: Metric, fmt: int) -> FamilyText:
        """A family's name and HELP/TYPE lines as prometheus-client writes them in `fmt`
        (the text format renames counters), made once per family."""
        key = (family.name, family.type, family.documentation, family.unit, fmt)
        header = self._headers.get(key)
        if header is None:
            empty = Metric(family.name, family.documentation, family.type, family.unit)
            (header,) = split_families(render([empty], fmt))
            self._headers[key] = header
        return header

    def _header_piece(self, family: Metric, fmt: int) -> Piece:
        key = (family.name, fmt)  # a self-metric's type and help never change
        piece = self._header_pieces.get(key)
        if piece is None:
            piece = self._header_pieces[key] = Piece(self._header(family, fmt).header)
        return piece

    def _ensure_slot(self, fmt: int, name: str, header: bytes, *, after: str) -> None:
        """A family the renderers did not write when given no sources: placed after the
        family before it, written when some source has lines for it."""
        if (fmt, name) in self._placed:  # every family but a source's first render
            return
        self._placed.add((fmt, name))
        slots = self._layout[fmt]
        names = [slot.name for slot in slots]
        if name in names:
            return
        at = names.index(after) + 1 if after in names else len(slots)
        layout = list(self._layout)
        layout[fmt] = [*slots[:at], Slot(name, Piece(header), optional=True), *slots[at:]]
        self._layout = (layout[0], layout[1])


def _written(family: Metric) -> Iterator[tuple[int, Metric, list[Sample]]]:
    """Which family each format writes a family's samples under: OpenMetrics all under
    it; the text format a counter's `_created` samples apart, as a gauge of their own."""
    yield OPENMETRICS, family, family.samples
    created = [s for s in family.samples if s.name.endswith("_created")]
    if family.type != "counter" or not created:
        yield TEXT, family, family.samples
        return
    yield TEXT, family, [s for s in family.samples if not s.name.endswith("_created")]
    yield TEXT, _created_family(family), created


def _same_objects(known: tuple[object, ...], now: tuple[object, ...]) -> bool:
    return len(known) == len(now) and all(a is b for a, b in zip(known, now, strict=True))
