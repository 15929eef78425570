"""The exporter's own metrics: API requests, polls, auth. Kept by the client and the poller,
rendered with the job metrics by the collector."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from copy import copy
from functools import cached_property

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.budget import PlanSummary
from exporter.plan_metrics import AccountPlans

API_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
POLL_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ProjectTelemetry:
    """One project's metrics in a registry of their own, and a version that every change
    moves (after the change): a scrape renders again only the projects whose version
    moved since the last one, instead of every project's histograms at every scrape."""

    def __init__(self) -> None:
        self.version = 0
        self.registry = CollectorRegistry()
        r = self.registry
        self.api_requests = Counter(
            "vias_api_requests",
            "HTTP requests to VIAS and IAM by endpoint template and status code.",
            ["project_id", "endpoint", "code"],
            registry=r,
        )
        self.api_latency = Histogram(
            "vias_api_request_duration_seconds",
            "Latency of each HTTP request to VIAS and IAM.",
            ["project_id", "endpoint"],
            buckets=API_LATENCY_BUCKETS,
            registry=r,
        )
        self.token_expiry = Gauge(
            "vias_auth_token_expiry_timestamp_seconds",
            "Unix time the cached IAM token expires.",
            ["project_id"],
            registry=r,
        )
        self.poll_duration = Histogram(
            "vias_poll_duration_seconds",
            "Wall time of each poll of a source (all pages).",
            ["project_id", "source"],
            buckets=POLL_DURATION_BUCKETS,
            registry=r,
        )
        self.poll_errors = Counter(
            "vias_poll_errors",
            "Failed polls by reason.",
            ["project_id", "source", "reason"],
            registry=r,
        )
        self.poll_skips = Counter(
            "vias_poll_skips",
            "Polls that sent no request, by reason (auth_cooldown: credentials refused lately).",
            ["project_id", "source", "reason"],
            registry=r,
        )
        self.poll_overruns = Counter(
            "vias_poll_overruns",
            "Polls skipped because the previous poll of the source was still running.",
            ["project_id", "source"],
            registry=r,
        )
        self.poll_interval = Gauge(
            "vias_poll_interval_seconds",
            "The configured interval of a source.",
            ["project_id", "source"],
            registry=r,
        )
        self.poll_effective_interval = Gauge(
            "vias_poll_effective_interval_seconds",
            "The interval a source is polled at: the configured one, stretched when its "
            "account's sources ask for more than the API budget.",
            ["project_id", "source"],
            registry=r,
        )
        self.pagination_stops = Counter(
            "vias_pagination_stops",
            "Listings cut short: the server repeated a page, or max_pages was reached.",
            ["project_id", "source", "reason"],
            registry=r,
        )
        self.paging_fallbacks = Counter(
            "vias_paging_fallbacks",
            "Listings answered another way: page_bound (the first page refused with 400, "
            "asked again with a smaller page), not_found (404: no such list here, empty).",
            ["project_id", "source", "reason"],
            registry=r,
        )
        self.problem_tasks_dropped = Counter(
            "vias_problem_task_series_dropped",
            "Problem jobs left out of vias_problem_task_info by the per-project cap.",
            ["project_id"],
            registry=r,
        )
        self.label_values_truncated = Counter(
            "vias_label_values_truncated",
            "Label values from the API cut to label_value_max_bytes, counted at each render "
            "of the source's series (after a poll that changed them).",
            ["project_id", "source"],
            registry=r,
        )


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
        self.process_registry = r = CollectorRegistry(auto_describe=True)
        self.registry = CollectorRegistry()
        self.registry.register(_ProjectFamilies(self))
        self.registry.register(r)  # a registry is a collector too
        self.shard_ordinal = Gauge(
            "vias_exporter_shard_ordinal",
            "This replica's shard (--shard): it polls the projects that hash to it.",
            registry=r,
        )
        self.total_shards = Gauge(
            "vias_exporter_total_shards",
            "Replicas the projects are spread over (--total-shards).",
            registry=r,
        )
        self.config_reload_successful = Gauge(
            "vias_config_last_reload_successful",
            "1 when the last reload of the configuration file succeeded (the exporter runs "
            "the last good one).",
            registry=r,
        )
        self.config_reload_success_time = Gauge(
            "vias_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (start-up or reload).",
            registry=r,
        )
        build_info = Gauge(
            "vias_exporter_build_info",
            "Always 1; labels carry the exporter and Python versions.",
            ["version", "python_version"],
            registry=r,
        )
        build_info.labels(__version__, platform.python_version()).set(1)

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

    def _changed(self, metrics: ProjectTelemetry) -> None:
        metrics.version += 1
        self.changes += 1

    def set_shard(self, shard: int, total: int) -> None:
        self.shard_ordinal.set(shard)
        self.total_shards.set(total)
        self.changes += 1

    def config_loaded(self, at: float) -> None:
        self.config_reload_success_time.set(at)
        self.config_reload_successful.set(1)
        self.changes += 1

    def config_reload_failed(self) -> None:
        self.config_reload_successful.set(0)
        self.changes += 1

    # Each change, then the version: a scrape that read the old version renders again.
    def observe_request(self, project_id: str, endpoint: str, code: str, seconds: float) -> None:
        metrics = self.project(project_id)
        metrics.api_requests.labels(project_id, endpoint, code).inc()
        metrics.api_latency.labels(project_id, endpoint).observe(seconds)
        self._changed(metrics)

    def observe_poll(self, project_id: str, source: str, seconds: float) -> None:
        metrics = self.project(project_id)
        metrics.poll_duration.labels(project_id, source).observe(seconds)
        self._changed(metrics)

    def set_poll_intervals(
        self, project_id: str, source: str, configured: float, effective: float
    ) -> None:
        metrics = self.project(project_id)
        metrics.poll_interval.labels(project_id, source).set(configured)
        metrics.poll_effective_interval.labels(project_id, source).set(effective)
        self._changed(metrics)

    def watch_accounts(self, plans: Callable[[], Iterable[PlanSummary]]) -> None:
        """Export each account's API budget plan, read at every scrape."""
        self.process_registry.register(AccountPlans(plans))
        self.changes += 1

    def set_token_expiry(self, project_id: str, timestamp: float) -> None:
        metrics = self.project(project_id)
        metrics.token_expiry.labels(project_id).set(timestamp)
        self._changed(metrics)

    def count_poll_error(self, project_id: str, source: str, reason: str) -> None:
        self._count(project_id, lambda m: m.poll_errors, source, reason)

    def count_poll_skip(self, project_id: str, source: str, reason: str) -> None:
        self._count(project_id, lambda m: m.poll_skips, source, reason)

    def count_poll_overruns(self, project_id: str, source: str, missed: int) -> None:
        self._count(project_id, lambda m: m.poll_overruns, source, amount=missed)

    def count_pagination_stop(self, project_id: str, source: str, reason: str) -> None:
        self._count(project_id, lambda m: m.pagination_stops, source, reason)

    def count_paging_fallback(self, project_id: str, source: str, reason: str) -> None:
        self._count(project_id, lambda m: m.paging_fallbacks, source, reason)

    def count_label_values_truncated(self, project_id: str, source: str, values: int) -> None:
        self._count(project_id, lambda m: m.label_values_truncated, source, amount=values)

    def count_hidden_problems(self, project_id: str, hidden: int) -> None:
        self._count(project_id, lambda m: m.problem_tasks_dropped, amount=hidden)

    def _count(
        self,
        project_id: str,
        counter: Callable[[ProjectTelemetry], Counter],
        *labels: str,
        amount: float = 1,
    ) -> None:
        metrics = self.project(project_id)
        counter(metrics).labels(project_id, *labels).inc(amount)
        self._changed(metrics)

    @cached_property
    def discovery(self) -> DiscoveryTelemetry:
        """Project discovery's metrics: registered on first use, so an exporter without
        discovery does not export them (a 0 would read as a failing discovery)."""
        return DiscoveryTelemetry(self.process_registry, self)

    def forget_discovery(self) -> None:
        """Discovery removed by a reload: its families leave /metrics (a last success left
        behind would age into a false alert)."""
        metrics: DiscoveryTelemetry | None = self.__dict__.pop("discovery", None)
        if metrics is not None:
            for family in metrics.families:
                self.process_registry.unregister(family)
            self.changes += 1


class DiscoveryTelemetry:
    """Project discovery through IAM (exporter/discovery.py)."""

    def __init__(self, registry: CollectorRegistry, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        r = registry
        self.projects = Gauge(
            "vias_discovery_projects",
            "Projects the last successful discovery refresh made targets of (enabled, in a "
            "watched region, included, not excluded), on every shard alike.",
            registry=r,
        )
        self.last_refresh_successful = Gauge(
            "vias_discovery_last_refresh_successful",
            "1 when the last discovery refresh succeeded; 0 while it fails (the previous "
            "projects stay polled).",
            registry=r,
        )
        self.last_refresh_success_time = Gauge(
            "vias_discovery_last_refresh_success_timestamp_seconds",
            "Unix time of the last successful discovery refresh.",
            registry=r,
        )
        self.refresh_failures = Counter(
            "vias_discovery_refresh_failures",
            "Failed discovery refreshes by reason (as vias_poll_errors_total, plus "
            "auth_cooldown: not tried, the credentials were refused moments ago; empty: "
            "none of the wanted projects listed, not yet confirmed).",
            ["reason"],
            registry=r,
        )
        self.projects_rejected = Counter(
            "vias_discovery_projects_rejected",
            "Projects IAM listed that were not made targets, by reason (invalid_id: an id "
            "that could leave its place in a URL path).",
            ["reason"],
            registry=r,
        )
        self.families = (
            self.projects,
            self.last_refresh_successful,
            self.last_refresh_success_time,
            self.refresh_failures,
            self.projects_rejected,
        )
        telemetry.changes += 1  # new families to show

    def refreshed(self, projects: int, at: float) -> None:
        self.projects.set(projects)
        self.last_refresh_successful.set(1)
        self.last_refresh_success_time.set(at)
        self._telemetry.changes += 1

    def projects_rejected_by(self, reason: str, projects: int) -> None:
        self.projects_rejected.labels(reason).inc(projects)
        self._telemetry.changes += 1

    def refresh_failed(self, reason: str) -> None:
        self.refresh_failures.labels(reason).inc()
        self.last_refresh_successful.set(0)
        self._telemetry.changes += 1
