"""The exposition rendered the plain way, through prometheus-client in one go, uncached:
what the cached exposition (exporter/collector.py) must equal byte for byte
(tests/test_collector.py), and the scrape bench's baseline (bench/servers.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as generate_text
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from exporter.collector import Exposition, health_families, renderers, without_created
from exporter.label_values import LabelCap
from exporter.lists import REGISTRY
from exporter.lists.base import ListView, Renderer
from exporter.lists.service_join import NO_SERVICES, services_by_project, with_services
from exporter.snapshot import Snapshot
from tests.support import telemetry_registry


def snapshot_families(snapshot: Snapshot) -> Iterator[Metric]:
    """Source health, then each renderer's families over every polled source of its lists,
    in registry order."""
    yield from health_families(snapshot.sources.values())
    services = services_by_project((s.project_id, s.data) for s in snapshot.sources.values())
    views: dict[Renderer[Any], list[ListView[Any]]] = {render: [] for render in renderers()}
    for state in snapshot.sources.values():
        if state.data is not None:
            shown = snapshot.shown_problems.get(state.key, ())
            view = with_services(
                ListView(state.project_id, state.source, state.data, state.fresh, shown),
                services.get(state.project_id, NO_SERVICES),
            )
            views[REGISTRY[state.source].render].append(view)
    for render, rendered_views in views.items():
        yield from render(rendered_views)


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


def capped_family(family: Metric, max_bytes: int) -> Metric:
    """The family with its label values cut as the cached exposition cuts them."""
    cap = LabelCap(max_bytes)
    family.samples = [
        sample._replace(labels={name: cap(text) for name, text in sample.labels.items()})
        for sample in family.samples
    ]
    return family


class WholeExposition(Collector):
    """The self-metrics and the current snapshot of an `Exposition`, filtered as it is."""

    def __init__(self, exposition: Exposition) -> None:
        self.exposition = exposition
        self.text_format = True  # which format the render in progress writes

    def collect(self) -> Iterator[Metric]:
        allows = self.exposition.allowed.allows
        yield from without_created(
            filter(allows, telemetry_registry(self.exposition.telemetry).collect())
        )
        max_bytes = self.exposition.label_value_max_bytes
        allowed = filter(allows, snapshot_families(self.exposition.store.current))
        families = (capped_family(family, max_bytes) for family in allowed)
        yield from _created_apart(families) if self.text_format else families


def whole_registry(exposition: Exposition) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WholeExposition(exposition))
    return registry


def render_whole(exposition: Exposition, *, openmetrics: bool) -> bytes:
    """What `exposition.body(openmetrics=..., gzipped=False)` must equal."""
    whole = WholeExposition(exposition)
    whole.text_format = not openmetrics
    return _render(whole, openmetrics=openmetrics)


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def render_families(families: Iterable[Metric], *, openmetrics: bool) -> bytes:
    return _render(_Families(families), openmetrics=openmetrics)


def _render(collector: Collector, *, openmetrics: bool) -> bytes:
    if openmetrics:
        rendered: bytes = generate_openmetrics(collector)  # type: ignore[no-untyped-call]
        return rendered
    return generate_text(collector)
