"""The exporter's own metrics: each enum member below is one, named as it is exported, with
its instrument, label names and help; they are exported in this order. `exporter.telemetry`
makes and changes them (as `exporter.lists` declare the snapshot's families)."""

from __future__ import annotations

from enum import Enum
from functools import partial

from prometheus_client import Counter, Gauge, Histogram

REQUEST_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
POLL_SECONDS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SOURCE = ("source",)
REASON = ("source", "reason")


# fmt: off
class ProjectMetric(Enum):
    """Each project's, in a registry of the project's own; `project_id` is the first label."""

    vias_api_requests = (
        Counter, ("endpoint", "code"),
        "HTTP requests to VIAS and IAM by endpoint template and status code.",
    )
    vias_api_request_duration_seconds = (
        partial(Histogram, buckets=REQUEST_SECONDS), ("endpoint",),
        "Latency of each HTTP request to VIAS and IAM.",
    )
    vias_auth_token_expiry_timestamp_seconds = (
        Gauge, (), "Unix time the cached IAM token expires."
    )
    vias_poll_duration_seconds = (
        partial(Histogram, buckets=POLL_SECONDS), SOURCE,
        "Wall time of each poll of a source (all pages).",
    )
    vias_poll_errors = (Counter, REASON, "Failed polls by reason.")
    vias_poll_skips = (
        Counter, REASON,
        "Polls that sent no request, by reason (auth_cooldown: credentials refused lately).",
    )
    vias_poll_overruns = (
        Counter, SOURCE,
        "Polls skipped because the previous poll of the source was still running.",
    )
    vias_poll_interval_seconds = (Gauge, SOURCE, "The configured interval of a source.")
    vias_poll_effective_interval_seconds = (
        Gauge, SOURCE,
        "The interval a source is polled at: the configured one, stretched when its "
        "account's sources ask for more than the API budget.",
    )
    vias_pagination_stops = (
        Counter, REASON,
        "Listings cut short: the server repeated a page, or max_pages was reached.",
    )
    vias_paging_fallbacks = (
        Counter, REASON,
        "Listings answered another way: page_bound (the first page refused with 400, "
        "asked again with a smaller page), not_found (404: no such list here, empty).",
    )
    vias_problem_task_series_dropped = (
        Counter, (), "Problem jobs left out of vias_problem_task_info by the per-project cap."
    )
    vias_label_values_truncated = (
        Counter, SOURCE,
        "Label values from the API cut to label_value_max_bytes, counted at each render "
        "of the source's series (after a poll that changed them).",
    )


class ProcessMetric(Enum):
    vias_exporter_shard_ordinal = (
        Gauge, (), "This replica's shard (--shard): it polls the projects that hash to it."
    )
    vias_exporter_total_shards = (
        Gauge, (), "Replicas the projects are spread over (--total-shards)."
    )
    vias_config_last_reload_successful = (
        Gauge, (),
        "1 when the last reload of the configuration file succeeded (the exporter runs "
        "the last good one).",
    )
    vias_config_last_reload_success_timestamp_seconds = (
        Gauge, (),
        "Unix time of the last successful configuration load (start-up or reload).",
    )
    vias_exporter_build_info = (
        Gauge, ("version", "python_version"),
        "Always 1; labels carry the exporter and Python versions.",
    )


class DiscoveryMetric(Enum):
    """Exported while discovery is configured (`Telemetry.watch_discovery`)."""

    vias_discovery_projects = (
        Gauge, (),
        "Projects the last successful discovery refresh made targets of (enabled, in a "
        "watched region, included, not excluded), on every shard alike.",
    )
    vias_discovery_last_refresh_successful = (
        Gauge, (),
        "1 when the last discovery refresh succeeded; 0 while it fails (the previous "
        "projects stay polled).",
    )
    vias_discovery_last_refresh_success_timestamp_seconds = (
        Gauge, (), "Unix time of the last successful discovery refresh."
    )
    vias_discovery_refresh_failures = (
        Counter, ("reason",),
        "Failed discovery refreshes by reason (as vias_poll_errors_total, plus "
        "auth_cooldown: not tried, the credentials were refused moments ago; empty: "
        "none of the wanted projects listed, not yet confirmed).",
    )
    vias_discovery_projects_rejected = (
        Counter, ("reason",),
        "Projects IAM listed that were not made targets, by reason (invalid_id: an id "
        "that could leave its place in a URL path).",
    )
# fmt: on
