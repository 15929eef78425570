"""The exporter's own metrics: API requests, polls and auth of each project, and the
process-wide ones (build, shard, reload, discovery). Declared in the tables below, one row
a metric; every change goes through `Telemetry`'s methods, which move `changes` (and a
project's `version`) after it, so a scrape renders again only what changed."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from copy import copy
from functools import cached_property

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.budget import PlanSummary
from exporter.plan_metrics import AccountPlans

Instrument = Counter | Gauge | Histogram
Row = tuple[type[Instrument], str, Sequence[str], str]  # type, name, label names, help
Update = tuple[str, Sequence[str], float]  # name, label values, value (see `_record`)

BUCKETS = {  # of each histogram
    "vias_api_request_duration_seconds": (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    "vias_poll_duration_seconds": (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
}
SOURCE = ("project_id", "source")
REASON = (*SOURCE, "reason")

# Tables, one metric a row and its help under it: kept as laid out.
# fmt: off
# Each project's, in a registry of its own; `project_id` first (the methods pass it).
PROJECT_METRICS: tuple[Row, ...] = (
    (Counter, "vias_api_requests", ("project_id", "endpoint", "code"),
     "HTTP requests to VIAS and IAM by endpoint template and status code."),
    (Histogram, "vias_api_request_duration_seconds", ("project_id", "endpoint"),
     "Latency of each HTTP request to VIAS and IAM."),
    (Gauge, "vias_auth_token_expiry_timestamp_seconds", ("project_id",),
     "Unix time the cached IAM token expires."),
    (Histogram, "vias_poll_duration_seconds", SOURCE,
     "Wall time of each poll of a source (all pages)."),
    (Counter, "vias_poll_errors", REASON, "Failed polls by reason."),
    (Counter, "vias_poll_skips", REASON,
     "Polls that sent no request, by reason (auth_cooldown: credentials refused lately)."),
    (Counter, "vias_poll_overruns", SOURCE,
     "Polls skipped because the previous poll of the source was still running."),
    (Gauge, "vias_poll_interval_seconds", SOURCE, "The configured interval of a source."),
    (Gauge, "vias_poll_effective_interval_seconds", SOURCE,
     "The interval a source is polled at: the configured one, stretched when its "
     "account's sources ask for more than the API budget."),
    (Counter, "vias_pagination_stops", REASON,
     "Listings cut short: the server repeated a page, or max_pages was reached."),
    (Counter, "vias_paging_fallbacks", REASON,
     "Listings answered another way: page_bound (the first page refused with 400, "
     "asked again with a smaller page), not_found (404: no such list here, empty)."),
    (Counter, "vias_problem_task_series_dropped", ("project_id",),
     "Problem jobs left out of vias_problem_task_info by the per-project cap."),
    (Counter, "vias_label_values_truncated", SOURCE,
     "Label values from the API cut to label_value_max_bytes, counted at each render "
     "of the source's series (after a poll that changed them)."),
)
PROCESS_METRICS: tuple[Row, ...] = (
    (Gauge, "vias_exporter_shard_ordinal", (),
     "This replica's shard (--shard): it polls the projects that hash to it."),
    (Gauge, "vias_exporter_total_shards", (),
     "Replicas the projects are spread over (--total-shards)."),
    (Gauge, "vias_config_last_reload_successful", (),
     "1 when the last reload of the configuration file succeeded (the exporter runs "
     "the last good one)."),
    (Gauge, "vias_config_last_reload_success_timestamp_seconds", (),
     "Unix time of the last successful configuration load (start-up or reload)."),
    (Gauge, "vias_exporter_build_info", ("version", "python_version"),
     "Always 1; labels carry the exporter and Python versions."),
)
# Registered on first use (`Telemetry.discovery`).
DISCOVERY_METRICS: tuple[Row, ...] = (
    (Gauge, "vias_discovery_projects", (),
     "Projects the last successful discovery refresh made targets of (enabled, in a "
     "watched region, included, not excluded), on every shard alike."),
    (Gauge, "vias_discovery_last_refresh_successful", (),
     "1 when the last discovery refresh succeeded; 0 while it fails (the previous "
     "projects stay polled)."),
    (Gauge, "vias_discovery_last_refresh_success_timestamp_seconds", (),
     "Unix time of the last successful discovery refresh."),
    (Counter, "vias_discovery_refresh_failures", ("reason",),
     "Failed discovery refreshes by reason (as vias_poll_errors_total, plus "
     "auth_cooldown: not tried, the credentials were refused moments ago; empty: "
     "none of the wanted projects listed, not yet confirmed)."),
    (Counter, "vias_discovery_projects_rejected", ("reason",),
     "Projects IAM listed that were not made targets, by reason (invalid_id: an id "
     "that could leave its place in a URL path)."),
)
# fmt: on


def declare(rows: Sequence[Row], registry: CollectorRegistry) -> dict[str, Instrument]:
    """The metrics of `rows` in `registry`, by name."""
    made: dict[str, Instrument] = {}
    for kind, name, labels, help_text in rows:
        if kind is Histogram:
            made[name] = Histogram(
                name, help_text, labels, registry=registry, buckets=BUCKETS[name]
            )
        else:
            made[name] = kind(name, help_text, labels, registry=registry)
    return made


def _record(metric: Instrument, labels: Sequence[str], value: float) -> None:
    """A counter counts `value` up, a gauge is set to it, a histogram observes it."""
    child = metric.labels(*labels) if labels else metric
    if isinstance(child, Counter):
        child.inc(value)
    elif isinstance(child, Gauge):
        child.set(value)
    else:
        child.observe(value)


class ProjectTelemetry:
    """One project's metrics in a registry of their own, and a version that every change
    moves (after the change): a scrape renders again only the projects whose version
    moved since the last one, instead of every project's histograms at every scrape."""

    def __init__(self) -> None:
        self.version = 0
        self.registry = CollectorRegistry()
        self.metrics = declare(PROJECT_METRICS, self.registry)


class _ProjectFamilies(Collector):
    """Every project's metrics, one family per metric: what the whole registry shows."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        merged = [copy(family) for family in self._telemetry.project_families]
        for family in merged:
            family.samples = []
        for _, metrics in self._telemetry.projects():
            for family, own in zip(merged, metrics.registry.collect(), strict=True):
                family.samples.extend(own.samples)
        yield from merged


class Telemetry:
    """The exporter's metrics through prometheus-client: each project's in a registry of
    its own, the process-wide ones (build, shard, reload, discovery) in `process_registry`,
    all of them in `registry` (no process/platform noise)."""

    def __init__(self) -> None:
        self._projects: dict[str, ProjectTelemetry] = {}
        self.changes = 0  # moved by every change (all go through the methods below)
        # The families each project has, without samples: their names, types and help.
        self.project_families = tuple(ProjectTelemetry().registry.collect())
        self.process_registry = CollectorRegistry(auto_describe=True)
        self.registry = CollectorRegistry()
        self.registry.register(_ProjectFamilies(self))
        self.registry.register(self.process_registry)  # a registry is a collector too
        self._process = declare(PROCESS_METRICS, self.process_registry)
        build = (__version__, platform.python_version())
        _record(self._process["vias_exporter_build_info"], build, 1)

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

    def change(self, metrics: Mapping[str, Instrument], *updates: Update) -> None:
        """Each update (`_record`) of the process-wide `metrics`, then `changes`."""
        for name, labels, value in updates:
            _record(metrics[name], labels, value)
        self.changes += 1

    def _update(self, project_id: str, name: str, *labels: str, value: float = 1) -> None:
        """One change of a project's metric (`_record`), then its version and `changes`:
        a scrape that read the old version renders again."""
        metrics = self.project(project_id)
        _record(metrics.metrics[name], (project_id, *labels), value)
        metrics.version += 1
        self.changes += 1

    def set_shard(self, shard: int, total: int) -> None:
        shard_ordinal = ("vias_exporter_shard_ordinal", (), shard)
        self.change(self._process, shard_ordinal, ("vias_exporter_total_shards", (), total))

    def config_loaded(self, at: float) -> None:
        loaded_at = ("vias_config_last_reload_success_timestamp_seconds", (), at)
        self.change(self._process, loaded_at, ("vias_config_last_reload_successful", (), 1))

    def config_reload_failed(self) -> None:
        self.change(self._process, ("vias_config_last_reload_successful", (), 0))

    def observe_request(self, project_id: str, endpoint: str, code: str, seconds: float) -> None:
        requests = self.project(project_id).metrics["vias_api_requests"]
        _record(requests, (project_id, endpoint, code), 1)  # one change with the latency:
        self._update(project_id, "vias_api_request_duration_seconds", endpoint, value=seconds)

    def observe_poll(self, project_id: str, source: str, seconds: float) -> None:
        self._update(project_id, "vias_poll_duration_seconds", source, value=seconds)

    def set_poll_intervals(
        self, project_id: str, source: str, configured: float, effective: float
    ) -> None:
        self._update(project_id, "vias_poll_interval_seconds", source, value=configured)
        self._update(project_id, "vias_poll_effective_interval_seconds", source, value=effective)

    def watch_accounts(self, plans: Callable[[], Iterable[PlanSummary]]) -> None:
        """Export each account's API budget plan, read at every scrape."""
        self.process_registry.register(AccountPlans(plans))
        self.changes += 1

    def set_token_expiry(self, project_id: str, timestamp: float) -> None:
        self._update(project_id, "vias_auth_token_expiry_timestamp_seconds", value=timestamp)

    def count_poll_error(self, project_id: str, source: str, reason: str) -> None:
        self._update(project_id, "vias_poll_errors", source, reason)

    def count_poll_skip(self, project_id: str, source: str, reason: str) -> None:
        self._update(project_id, "vias_poll_skips", source, reason)

    def count_poll_overruns(self, project_id: str, source: str, missed: int) -> None:
        self._update(project_id, "vias_poll_overruns", source, value=missed)

    def count_pagination_stop(self, project_id: str, source: str, reason: str) -> None:
        self._update(project_id, "vias_pagination_stops", source, reason)

    def count_paging_fallback(self, project_id: str, source: str, reason: str) -> None:
        self._update(project_id, "vias_paging_fallbacks", source, reason)

    def count_label_values_truncated(self, project_id: str, source: str, values: int) -> None:
        self._update(project_id, "vias_label_values_truncated", source, value=values)

    def count_hidden_problems(self, project_id: str, hidden: int) -> None:
        self._update(project_id, "vias_problem_task_series_dropped", value=hidden)

    @cached_property
    def discovery(self) -> DiscoveryTelemetry:
        """Project discovery's metrics: registered on first use, so an exporter without
        discovery does not export them (a 0 would read as a failing discovery)."""
        return DiscoveryTelemetry(self)

    def forget_discovery(self) -> None:
        """Discovery removed by a reload: its families leave /metrics (a last success left
        behind would age into a false alert)."""
        metrics: DiscoveryTelemetry | None = self.__dict__.pop("discovery", None)
        if metrics is not None:
            for family in metrics.metrics.values():
                self.process_registry.unregister(family)
            self.changes += 1


class DiscoveryTelemetry:
    """Project discovery through IAM (exporter/discovery.py)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self.metrics = declare(DISCOVERY_METRICS, telemetry.process_registry)
        telemetry.changes += 1  # new families to show

    def refreshed(self, projects: int, at: float) -> None:
        self._telemetry.change(
            self.metrics,
            ("vias_discovery_projects", (), projects),
            ("vias_discovery_last_refresh_successful", (), 1),
            ("vias_discovery_last_refresh_success_timestamp_seconds", (), at),
        )

    def projects_rejected_by(self, reason: str, projects: int) -> None:
        rejected = ("vias_discovery_projects_rejected", (reason,), projects)
        self._telemetry.change(self.metrics, rejected)

    def refresh_failed(self, reason: str) -> None:
        self._telemetry.change(
            self.metrics,
            ("vias_discovery_refresh_failures", (reason,), 1),
            ("vias_discovery_last_refresh_successful", (), 0),
        )
