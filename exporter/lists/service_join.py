"""The one join between lists: job vendors and algorithms from the algorithm services.

The SDK's v2 job list item names its `service_id` but no `company`, and may leave `title`
empty. When `algorithm_services` is polled, such a job's `vendor` and `algorithm` come
from its service (same project): only empty values are filled, groups that come out the
same are summed (counts; transitions with the earliest first-count time), label names and
sets do not change, and without the services list a job list's view is as it was.

One direction, one home: the services' data is read here and a job list's view completed
here, at render time (the collector gathers each project's services with
`services_by_project` and passes every view it renders through `with_services`). Neither
list names the other: the job aggregator only counts a job lacking its vendor or
algorithm under its `service_id` as well (`JobGroup`, the fourth element), and the job
index and transitions keep what the listing said. A services poll ending after a jobs poll
shows at the next render, not the next jobs poll.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from exporter.lists.algorithm_services import AlgorithmDirectory, ServiceData
from exporter.lists.base import GroupKey, ListView
from exporter.lists.jobindex import JobGroup
from exporter.lists.jobs import JobData, merged_counts, merged_transitions

NO_SERVICES: AlgorithmDirectory = MappingProxyType({})


def services_by_project(sources: Iterable[tuple[str, object]]) -> dict[str, AlgorithmDirectory]:
    """Each project's algorithm services, from the (project id, last good data) of its
    sources: even while stale, since a service's vendor and name outlive an outage of its
    list and job series should not change labels twice per outage."""
    found: dict[str, list[AlgorithmDirectory]] = {}
    for project_id, data in sources:
        if isinstance(data, ServiceData):
            found.setdefault(project_id, []).append(data.algorithms)
    merged: dict[str, AlgorithmDirectory] = {}
    for project, directories in found.items():  # one as it is: the same while its data is
        merged[project] = directories[0]
        if len(directories) > 1:
            merged[project] = MappingProxyType({k: v for d in directories for k, v in d.items()})
    return merged


def with_services(view: ListView[Any], services: AlgorithmDirectory) -> ListView[Any]:
    """A job list's view with its jobs' empty vendor and algorithm taken from `services`
    (counts, transitions, the problem jobs shown); any other view as it is."""
    if not services or not isinstance(view.data, JobData):
        return view

    def joined(group: JobGroup) -> JobGroup:
        return (*completed(group[:3], group[3], services), group[3])

    data = replace(
        view.data,
        state_counts=merged_counts(view.data.state_counts, joined),
        transitions=merged_transitions(view.data.transitions, joined),
    )
    shown = tuple(
        replace(problem, group=completed(problem.group, problem.service_id, services))
        for problem in view.shown_problems
    )
    return replace(view, data=data, shown_problems=shown)


def completed(group: GroupKey, service_id: str, services: AlgorithmDirectory) -> GroupKey:
    """A job's (vendor, algorithm, deployment), the empty vendor or algorithm taken from its
    algorithm service when the project's services are known."""
    vendor, algorithm, deployment = group
    service = services.get(service_id) if service_id else None
    if service is None:
        return group
    return (vendor or service.vendor, algorithm or service.algorithm, deployment)
