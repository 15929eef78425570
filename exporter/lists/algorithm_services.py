"""`GET /v2/{project_id}/algorithm/services/user`: the algorithm services a project deployed
(a job runs on one). Pages of 5..200 with `is_paged=true`; the answer has `count` and
`total`: `total` is the whole listing, `count` may be the number on this page, so only
`total` is read as the total (a page short of 200 ends the listing anyway).

Services are counted by status, vendor and deployment; the failed ones are named
(`service_failed`), at most `problem_tasks_limit` per project, by id.

Its data also holds the vendor and name of each service (`algorithms`, by `service_id`):
the SDK's job list item names its service but no `company`, and may leave `title` empty;
`service_join.py` completes those jobs' labels from here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BeforeValidator, ConfigDict, Field

from exporter.errors import safe_excerpt
from exporter.lists.base import (
    ListView,
    NoProblemJobs,
    Paging,
    PollContext,
    ViasList,
    documented_then_seen,
)
from exporter.models import ApiModel, Deployment, Items, OptionalText, Page, Text

# `alg_status` as the Java SDK documents it, lower case.
SERVICE_STATUSES: tuple[str, ...] = (
    "service_running",
    "service_deploying",
    "service_failed",
    "service_stopping",
    "service_stopped",
    "service_upgrading",
    "service_finished",
    "service_concerning",
    "not_deployed",
)
FAILED_STATUS = "service_failed"
UNKNOWN_STATUS = "unknown"
ERROR_MESSAGE_CHARS = 120  # a label: long enough to read, short enough to stay one line


def normalize_status(raw: object) -> str:
    """Lower-case a status; keep one we do not know (lower-cased), name a missing one."""
    if raw is None or raw == "":
        return UNKNOWN_STATUS
    return str(raw).strip().lower()


if TYPE_CHECKING:
    ServiceStatus = str
else:
    ServiceStatus = Annotated[str, BeforeValidator(normalize_status)]

ServiceGroup = tuple[str, str]  # vendor, deployment


class AlgorithmService(ApiModel):
    id: OptionalText = Field(default=None, alias="service_id")
    name: Text = Field(default="", alias="service_name")
    vendor: Text = Field(default="", alias="company")
    deployment: Deployment = Field(default="", alias="deploy_type")
    status: ServiceStatus = Field(default=UNKNOWN_STATUS, alias="alg_status")
    error_message: Text = Field(default="", alias="error_msg")


class AlgorithmServicePage(Page[AlgorithmService]):
    # `count` is filled from `total` only: not by its own name, which may mean "this page".
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=False)

    count: int | None = Field(default=None, alias="total")
    service_list: Items[AlgorithmService] = Field(default_factory=list)

    @property
    def items(self) -> list[AlgorithmService]:
        return self.service_list


@dataclass(frozen=True, slots=True)
class FailedService:
    service_id: str
    name: str
    vendor: str
    deployment: str
    status: str
    error_message: str


@dataclass(frozen=True, slots=True)
class ServiceAlgorithm:
    """What an algorithm service says of the algorithm it runs: a job's vendor and
    algorithm where its listing leaves them out (`service_join.py`)."""

    vendor: str
    algorithm: str


# A project's algorithm services by `service_id`.
AlgorithmDirectory = Mapping[str, ServiceAlgorithm]


@dataclass(frozen=True, slots=True)
class ServiceData(NoProblemJobs):
    counts: Mapping[ServiceGroup, Mapping[str, int]]
    failed: tuple[FailedService, ...]  # the named ones, within the cap
    item_count: int
    # Every listed service's vendor and name, by id: the jobs' vendor and algorithm where
    # their listing leaves them out (the whole listing, not capped: one small tuple each).
    algorithms: AlgorithmDirectory = field(default_factory=dict)


class ServiceAggregator:
    """Counts per (vendor, deployment) and status; a service listed twice counts once."""

    def __init__(self, context: PollContext[ServiceData]) -> None:
        self._limit = context.problem_tasks_limit
        self._seen: set[str] = set()
        self._anonymous = 0
        self._counts: dict[ServiceGroup, Counter[str]] = {}
        self._failed: list[FailedService] = []
        self._algorithms: dict[str, ServiceAlgorithm] = {}

    def add(self, services: Sequence[AlgorithmService]) -> None:
        for service in services:
            if service.id is None:
                self._anonymous += 1
            elif service.id in self._seen:
                continue
            else:
                self._seen.add(service.id)
                self._algorithms[service.id] = ServiceAlgorithm(service.vendor, service.name)
            group = (service.vendor, service.deployment)
            self._counts.setdefault(group, Counter())[service.status] += 1
            if service.status == FAILED_STATUS:
                self._failed.append(
                    FailedService(
                        service.id or "",
                        service.name,
                        service.vendor,
                        service.deployment,
                        service.status,
                        safe_excerpt(service.error_message, ERROR_MESSAGE_CHARS),
                    )
                )

    async def finish(self) -> ServiceData:
        ranked = sorted(dict.fromkeys(self._failed), key=lambda s: (s.service_id, s.name))
        return ServiceData(
            counts=MappingProxyType(
                {group: MappingProxyType(dict(c)) for group, c in self._counts.items()}
            ),
            failed=tuple(ranked[: self._limit]),
            item_count=len(self._seen) + self._anonymous,
            algorithms=MappingProxyType(self._algorithms),
        )


def render_algorithm_services(views: Sequence[ListView[ServiceData]]) -> Iterator[Metric]:
    """Counts while fresh; the failed services named while known (through an outage too:
    their state is unknown, not recovered)."""
    services = GaugeMetricFamily(
        "vias_algorithm_services",
        "Algorithm services by status, vendor and deployment.",
        labels=["project_id", "vendor", "deployment", "status"],
    )
    failed = GaugeMetricFamily(
        "vias_problem_algorithm_service_info",
        "1 for each failed algorithm service (capped per project).",
        labels=[
            "project_id",
            "service_id",
            "service_name",
            "vendor",
            "deployment",
            "status",
            "error_msg",
        ],
    )
    for view in views:
        if view.fresh:
            for (vendor, deployment), counts in view.data.counts.items():
                for status in documented_then_seen(SERVICE_STATUSES, counts):
                    services.add_metric(
                        [view.project_id, vendor, deployment, status], counts.get(status, 0)
                    )
        for service in view.data.failed:
            failed.add_metric(
                [
                    view.project_id,
                    service.service_id,
                    service.name,
                    service.vendor,
                    service.deployment,
                    service.status,
                    service.error_message,
                ],
                1.0,
            )
    yield from (services, failed)


ALGORITHM_SERVICES = ViasList[AlgorithmService, ServiceData](
    name="algorithm_services",
    endpoint="/v2/{project_id}/algorithm/services/user",
    paging=Paging(
        end="total", page_size=200, page_param="page_num", extra_params={"is_paged": "true"}
    ),
    page_model=AlgorithmServicePage,
    states=SERVICE_STATUSES,
    aggregator=ServiceAggregator,
    render=render_algorithm_services,
)
