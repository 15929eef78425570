"""The exporter's own metrics (`exporter.own_metrics`) through prometheus-client. Every change
goes through `Telemetry.record` or `Telemetry.update`, which move `changes` after it, and a
project's `version`: a scrape renders again only what changed."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from enum import Enum
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import __version__
from exporter.budget import PlanSummary
from exporter.own_metrics import DiscoveryMetric, ProcessMetric, ProjectMetric
from exporter.plan_metrics import AccountPlans

Instrument = Counter | Gauge | Histogram
M = TypeVar("M", bound=Enum)


def declare(metrics: type[M], registry: CollectorRegistry, *first: str) -> dict[M, Instrument]:
    """Each metric of `metrics` in `registry`, with the label names `first` first."""
    return {
        metric: kind(metric.name, help_text, (*first, *labels), registry=registry)
        for metric in metrics
        for kind, labels, help_text in [metric.value]
    }


def _record(metric: Instrument, labels: tuple[str, ...], value: float) -> None:
    """A counter counts `value` up, a gauge is set to it, a histogram observes it."""
    child = metric.labels(*labels) if labels else metric
    if isinstance(child, Counter):
        child.inc(value)
    elif isinstance(child, Gauge):
        child.set(value)
    else:
        child.observe(value)


class ProjectTelemetry:
    """One project's metrics, and the version every change of them moves (after it)."""

    def __init__(self) -> None:
        self.version = 0
        self.registry = CollectorRegistry()
        self.metrics = declare(ProjectMetric, self.registry, "project_id")


class Telemetry:
    """Each project's metrics in a registry of its own, the process-wide ones (build,
    shard, reload, discovery, plans) in `process_registry`."""

    def __init__(self) -> None:
        self._projects: dict[str, ProjectTelemetry] = {}
        self.changes = 0
        # The families each project has, without samples: their names, types and help.
        self.project_families = tuple(ProjectTelemetry().registry.collect())
        self.process_registry = CollectorRegistry(auto_describe=True)
        self._process: dict[ProcessMetric | DiscoveryMetric, Instrument] = {}
        self._process.update(declare(ProcessMetric, self.process_registry))
        build = (__version__, platform.python_version())
        self.update(ProcessMetric.vias_exporter_build_info, *build, value=1)

    def project(self, project_id: str) -> ProjectTelemetry:
        metrics = self._projects.get(project_id)
        if metrics is None:
            metrics = self._projects[project_id] = ProjectTelemetry()
        return metrics

    def projects(self) -> list[tuple[str, ProjectTelemetry]]:
        """A copy: scrapes read it in a worker thread while polls add projects."""
        return list(self._projects.items())

    def forget_project(self, project_id: str) -> None:
        """Drop a removed project's series, so that discovery churn cannot grow them."""
        self._projects.pop(project_id, None)
        self.changes += 1

    def record(
        self, project_id: str, metric: ProjectMetric, *labels: str, value: float = 1
    ) -> None:
        """One change (`_record`) of a project's metric, then its version and `changes`."""
        metrics = self.project(project_id)
        _record(metrics.metrics[metric], (project_id, *labels), value)
        metrics.version += 1
        self.changes += 1

    def update(self, metric: ProcessMetric | DiscoveryMetric, *labels: str, value: float) -> None:
        """One change (`_record`) of a process-wide metric, then `changes`."""
        _record(self._process[metric], labels, value)
        self.changes += 1

    def config_loaded(self, at: float) -> None:
        self.update(ProcessMetric.vias_config_last_reload_success_timestamp_seconds, value=at)
        self.update(ProcessMetric.vias_config_last_reload_successful, value=1)

    def watch_accounts(self, plans: Callable[[], Iterable[PlanSummary]]) -> None:
        """Export each account's API budget plan, read at every scrape."""
        self.process_registry.register(AccountPlans(plans))
        self.changes += 1

    def watch_discovery(self) -> None:
        """Export discovery's metrics from now on; only then: for an exporter without
        discovery, a 0 would read as a failing discovery."""
        if DiscoveryMetric.vias_discovery_projects not in self._process:
            self._process.update(declare(DiscoveryMetric, self.process_registry))
            self.changes += 1

    def forget_discovery(self) -> None:
        """Discovery removed by a reload: its families leave /metrics (a last success left
        behind would age into a false alert)."""
        for metric in DiscoveryMetric:
            if (instrument := self._process.pop(metric, None)) is not None:
                self.process_registry.unregister(instrument)
        self.changes += 1
