"""The exporter's own metrics as pieces of a body, in front of the snapshot's.

Each project's metrics (requests, latencies, polls) are sample lines cached per project
and family, made again only when the project's version moved (`ProjectTelemetry`): at 500
projects they are ~29,000 lines, and a scrape renders the few projects polled since the
last one. The process-wide families (build, shard, reload, discovery) are a few lines,
rendered at each scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import Metric

from exporter.exposition_cache import Piece, sample_lines
from exporter.metric_filter import MetricFilter
from exporter.telemetry import Telemetry

# One piece of sample lines per family of `Telemetry.project_families`, and the version
# of the project's metrics they show.
_ProjectLines = tuple[int, tuple[Piece, ...]]


def without_created(families: Iterable[Metric]) -> Iterator[Metric]:
    """The self-metrics without their `_created` series: they would double the
    exposition, and nothing reads them."""
    for family in families:
        family.samples = [s for s in family.samples if not s.name.endswith("_created")]
        yield family


class SelfMetricPieces:
    def __init__(
        self,
        telemetry: Telemetry,
        allowed: MetricFilter,
        header: Callable[[Metric, int], Piece],
    ) -> None:
        self._telemetry = telemetry
        self._allowed = allowed
        self._header = header  # a family's HELP/TYPE lines in a format
        self._projects: dict[str, _ProjectLines] = {}
        self._lock = threading.Lock()  # scrapes run in worker threads

    def pieces(self, fmt: int) -> list[Piece]:
        """Every self-metric family in registry order: its header, then its lines."""
        projects = self._project_lines()
        parts: list[Piece] = []
        for at, family in enumerate(self._telemetry.project_families):
            if self._allowed.allows(family):
                parts.append(self._header(family, fmt))
                parts.extend(lines[at] for _, lines in projects if lines[at].data)
        process = self._telemetry.process_registry.collect()
        for family in without_created(filter(self._allowed.allows, process)):
            parts += (self._header(family, fmt), Piece(sample_lines(family.samples)))
        return parts

    def _project_lines(self) -> list[_ProjectLines]:
        with self._lock:
            known, self._projects = self._projects, {}
            for project_id, metrics in self._telemetry.projects():
                version = metrics.version  # read first: a change meanwhile renders again
                lines = known.get(project_id)
                if lines is None or lines[0] != version:
                    families = without_created(metrics.registry.collect())
                    lines = (version, tuple(Piece(sample_lines(f.samples)) for f in families))
                self._projects[project_id] = lines
            return list(self._projects.values())
