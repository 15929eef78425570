"""docs/metrics.md and the exposition list exactly the same metrics."""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import Exposition
from exporter.lists.base import ProblemTask
from exporter.lists.batch_tasks import BatchData, BatchTaskSummary
from exporter.lists.jobs import JobData, TransitionCount
from exporter.snapshot import SnapshotStore, SourceState
from exporter.telemetry import Telemetry

DOC = Path(__file__).parent.parent / "docs" / "metrics.md"
GROUP = ("huawei", "helmet", "cloud")


def documented_metrics() -> dict[str, str]:
    """metric name -> type, from the `| `vias_...` | type |` rows of the reference."""
    rows = re.findall(r"^\| `(vias_[a-z_]+)` \| (\w+) \|", DOC.read_text(), re.MULTILINE)
    return dict(rows)


def _every_metric_populated() -> Telemetry:
    """A telemetry and store where every metric has at least one series."""
    telemetry = Telemetry()
    telemetry.observe_request("p1", "/v2/{project_id}/tasks", "200", 0.1)
    telemetry.token_expiry.labels("p1").set(1)
    telemetry.poll_duration.labels("p1", "tasks").observe(1)
    telemetry.poll_errors.labels("p1", "tasks", "timeout").inc()
    telemetry.poll_overruns.labels("p1", "tasks").inc()
    telemetry.pagination_stops.labels("p1", "tasks", "page_cap").inc()
    telemetry.problem_tasks_dropped.labels("p1").inc()
    return telemetry


def exported_metrics() -> dict[str, str]:
    telemetry = _every_metric_populated()
    store = SnapshotStore(problem_tasks_limit=200)
    jobs = JobData(
        state_counts={GROUP: {"RUNNING": 1}},
        problem_tasks=(ProblemTask("t1", "gate", "FAILED", "E1", GROUP),),
        problem_tasks_dropped=0,
        item_count=1,
        index={},
        transitions={(GROUP, "NONE", "RUNNING"): TransitionCount(1, 1.0)},
    )
    batch = BatchData(
        (BatchTaskSummary("b1", "site", *GROUP, "g1", MappingProxyType({"RUNNING": 1})),)
    )
    for source, data in (("tasks", jobs), ("batch_tasks", batch)):
        store.replace(
            SourceState(
                "p1", source, 60, polled=True, up=True, last_success=1.0, data=data, fresh=True
            )
        )
    exposition = Exposition(store, telemetry)
    text = exposition.body(openmetrics=False, gzipped=False).decode()
    return {
        (f"{family.name}_total" if family.type == "counter" else family.name): family.type
        for family in text_string_to_metric_families(text)
        if family.samples
    }


def test_every_exported_metric_is_documented_and_vice_versa() -> None:
    assert exported_metrics() == documented_metrics()


def test_names_follow_the_naming_guide() -> None:
    for name, kind in documented_metrics().items():
        assert name.startswith("vias_")
        assert name.endswith("_total") == (kind == "counter"), name
