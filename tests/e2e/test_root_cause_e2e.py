"""One incident pages once, end to end on loopback: VIAS simulator -> vias-exporter ->
Prometheus with the shipped rules -> Alertmanager with the example routing and inhibit
rules -> the test's webhook, counting notifications.

In one quiet world (healthy scenario, no automatic steps) the simulator holds three causes,
each with five jobs on it: a camera (v2 jobs naming it in `video_source_name`), an edge
pool (edge face-extraction jobs with its `edge_pool_id`) and an algorithm service (v2 jobs
with its `service_id`). First nothing is even pending and nothing is notified (a healthy
run with every list these alerts need). Then each cause goes down and, once its alert is
pending, its jobs go ABNORMAL: the webhook gets exactly one notification per cause
(VIASVideoSourceDownWithJobs, VIASEdgePoolAbnormal, VIASAlgorithmServiceFailed), whose
description names the five jobs, and none for the fifteen VIASJobAbnormal alerts that fire
in Prometheus meanwhile: Alertmanager lists each as suppressed, inhibited by its own
cause's alert. Then the jobs recover, and their causes a step later: one "resolved" per
cause, still nothing about the jobs.

The clock is shortened: `for:` durations are divided by SCALE (5 minutes become 10 s).

| change (tried, seen red) | what failed |
|---|---|
| VIASEdgePoolAbnormal `for: 10m` (longer than its jobs' 5m) | the pool's jobs paged |
| the camera inhibit rule removed from alertmanager.yml | the camera's jobs active, not suppressed |
| `edge_pool_id` left out of the latch rule's `max by` | the pool's job alerts lack it |
| the job list removed from the camera alert's description | the description check |
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    PROJECT,
    RECEIVERS,
    Stack,
    eventually,
    running_stack,
    wait_until_scraped,
)

pytestmark = pytest.mark.e2e

SOURCES = "tasks,face_edge_tasks,video_sources,algorithm_services,edge_pools"
SCALE = 30  # 5m -> 10s: room between the cause's alert firing and its jobs' alerts firing
CAUSES = {
    # simulator cause: (its id, its alert, the label its jobs and its alert share)
    "camera": ("cam-e2e-rootcause", "VIASVideoSourceDownWithJobs", "video_source_name"),
    "edge_pool": ("pool-e2e-rootcause", "VIASEdgePoolAbnormal", "edge_pool_id"),
    "service": ("svc-e2e-rootcause", "VIASAlgorithmServiceFailed", "service_id"),
}
CAUSE_ALERTS = {alert: cause for cause, (_, alert, _) in CAUSES.items()}
JOBS_PER_CAUSE = 5
QUIET_SECONDS = 10  # healthy: this long with every source polled and nothing even pending
SETTLE_SECONDS = 5  # after the job alerts reached Alertmanager: five group_intervals (1s)


def events(s: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    """(receiver, status, alert) of every alert in every notification so far."""
    return [
        (receiver, alert["status"], alert)
        for receiver, payload in s.notifications
        for alert in payload["alerts"]
    ]


def assert_only_causes_notified(s: Stack) -> None:
    for receiver, status, alert in events(s):
        name = alert["labels"]["alertname"]
        assert name in CAUSE_ALERTS, f"{name} ({status}) reached {receiver}: {alert['labels']}"


async def prometheus_alerts(s: Stack, name: str, state: str) -> list[dict[str, Any]]:
    s.processes.check_alive()
    return [a for a in await s.alerts() if a["labels"]["alertname"] == name and a["state"] == state]


async def test_a_cause_with_jobs_pages_once_and_its_jobs_never(tmp_path: Path) -> None:
    async with running_stack(
        tmp_path, "healthy", step_interval=0, tasks=20, sources=SOURCES, scale=SCALE
    ) as s:
        await wait_until_scraped(s)
        made = {
            cause: await s.sim(
                "PUT",
                f"/_sim/incidents/{PROJECT}/{cause_id}",
                {"cause": cause, "jobs": JOBS_PER_CAUSE},
            )
            for cause, (cause_id, _, _) in CAUSES.items()
        }

        # (d) healthy: every list polled since the causes and jobs were made, nothing pending
        made_at = time.time()

        async def polled_since_made() -> bool:
            since = f'vias_last_success_timestamp_seconds{{project_id="{PROJECT}"}} > {made_at}'
            return len(await s.query(since)) == len(SOURCES.split(","))

        await eventually(polled_since_made, 30, "a poll of every source after the causes")
        deadline = time.monotonic() + QUIET_SECONDS
        while time.monotonic() < deadline:
            s.processes.check_alive()
            assert await s.sources_polled(), "a source failed"
            pending_or_firing = [a["labels"] for a in await s.alerts()]
            assert not pending_or_firing, "a healthy world has an alert pending or firing"
            await asyncio.sleep(1)  # the pace of looking, not a synchronisation
        assert not s.notifications

        # (a-c) each cause goes down; once its alert is pending, its jobs go ABNORMAL.
        for cause_id, _, _ in CAUSES.values():
            await s.sim("POST", f"/_sim/incidents/{PROJECT}/{cause_id}/down")

        async def causes_pending() -> bool:
            for name in CAUSE_ALERTS:
                if not await prometheus_alerts(s, name, "pending"):
                    return False
            return True

        await eventually(causes_pending, 30, "the three cause alerts pending")
        await s.sim("POST", "/_sim/step")

        async def jobs_firing() -> list[dict[str, Any]]:
            firing = await prometheus_alerts(s, "VIASJobAbnormal", "firing")
            return firing if len(firing) == 3 * JOBS_PER_CAUSE else []

        firing_jobs = await eventually(jobs_firing, 60, "the fifteen job alerts firing")
        for cause, (cause_id, _, label) in CAUSES.items():
            mine = [a for a in firing_jobs if a["labels"]["task_id"] in made[cause]["task_ids"]]
            tie = made[cause]["cause_name"] if cause == "camera" else cause_id
            assert len(mine) == JOBS_PER_CAUSE, cause
            assert {a["labels"].get(label) for a in mine} == {tie}, f"{cause}'s jobs' {label}"

        async def jobs_inhibited_by_their_cause() -> bool:
            alerts = await s.am_alerts()
            causes = {
                a["fingerprint"]: CAUSE_ALERTS[a["labels"]["alertname"]]
                for a in alerts
                if a["labels"]["alertname"] in CAUSE_ALERTS
            }
            jobs = [a for a in alerts if a["labels"]["alertname"] == "VIASJobAbnormal"]
            assert len(jobs) <= 3 * JOBS_PER_CAUSE, [a["labels"] for a in jobs]
            for job in jobs:
                assert job["status"]["state"] == "suppressed", job
                (by,) = job["status"]["inhibitedBy"]
                label = CAUSES[causes[by]][2]
                assert job["labels"][label], (causes[by], job["labels"])
            return len(jobs) == 3 * JOBS_PER_CAUSE

        await eventually(jobs_inhibited_by_their_cause, 30, "Alertmanager holding the jobs back")
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:  # no page for the jobs, however long we look
            s.processes.check_alive()
            assert_only_causes_notified(s)
            await eventually(jobs_inhibited_by_their_cause, 5, "the jobs still held back")

        # exactly one notification per cause, to the pager, naming its five jobs
        assert_only_causes_notified(s)
        assert len(s.notifications) == len(CAUSES), [p["alerts"] for _, p in s.notifications]
        seen = {}
        for receiver, status, alert in events(s):
            name = alert["labels"]["alertname"]
            assert (receiver, status) == (RECEIVERS["critical"], "firing"), name
            assert name not in seen, f"{name} notified twice"
            seen[name] = alert
        assert set(seen) == set(CAUSE_ALERTS)
        for name, alert in seen.items():
            cause = CAUSE_ALERTS[name]
            cause_id, _, label = CAUSES[cause]
            assert alert["labels"]["project_id"] == PROJECT
            assert alert["labels"][label] == (
                made[cause]["cause_name"] if cause == "camera" else cause_id
            )
            description = alert["annotations"]["description"]
            for job_name in made[cause]["task_names"]:
                assert f'"{job_name}"' in description, (name, description)

        # recovery: the jobs first, their causes a step later; one "resolved" per cause
        for cause_id, _, _ in CAUSES.values():
            await s.sim("POST", f"/_sim/incidents/{PROJECT}/{cause_id}/recover")

        async def jobs_gone() -> bool:
            jobs_in_prometheus = await prometheus_alerts(s, "VIASJobAbnormal", "firing")
            jobs_in_am = [
                a for a in await s.am_alerts() if a["labels"]["alertname"] == "VIASJobAbnormal"
            ]
            return not jobs_in_prometheus and not jobs_in_am

        await eventually(jobs_gone, 30, "the job alerts resolved in Prometheus and Alertmanager")
        await s.sim("POST", "/_sim/step")

        async def causes_resolved() -> bool:
            s.processes.check_alive()
            resolved = {a["labels"]["alertname"] for _, st, a in events(s) if st == "resolved"}
            return resolved == set(CAUSE_ALERTS)

        await eventually(causes_resolved, 30, "one resolved per cause at the webhook")
        assert_only_causes_notified(s)
        statuses = sorted((a["labels"]["alertname"], st) for _, st, a in events(s))
        assert statuses == sorted((n, st) for n in CAUSE_ALERTS for st in ("firing", "resolved"))
