"""End to end on loopback: VIAS simulator -> vias-exporter -> Prometheus with the shipped
alert rules -> Alertmanager with the example routing -> a webhook served by this test.

Proves that the target is up, that every dashboard query returns data, that the incident
scenario fires the job alerts all the way to the right receiver, that the healthy
scenario fires nothing, and that job alerts neither resolve nor page again while the jobs'
state is unknown (an exporter restart, a VIAS API outage). The clock is shortened: the
rules' `for:`, VIASSourceStale's threshold and Prometheus' alert resend delay are divided
by FOR_SCALE (tests/e2e/harness.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.lists import DISTINCT_LISTS
from tests.deploy import dashboard as dash
from tests.deploy import stack
from tests.e2e.harness import (
    PROJECT,
    RECEIVERS,
    Stack,
    eventually,
    notified,
    running_stack,
    wait_until_scraped,
)

pytestmark = pytest.mark.e2e

INCIDENT_ALERTS = {
    # alertname: severity, and so the receiver the example routing picks
    "VIASJobAbnormal": "critical",
    "VIASJobFailed": "critical",
    "VIASJobLackOfResources": "warning",
    "VIASJobCreateOrStartFailed": "warning",
    "VIASBatchTaskProblems": "warning",
}
# The continuity stories: jobs the test breaks in a quiet world, and the alerts they raise.
STORY_JOBS = {
    "e2e-abnormal": "ABNORMAL",
    "e2e-start-failed": "START_FAILED",  # a member of a batch task
    "e2e-lack": "LACK_OF_RESOURCES",
}
STORY_ALERTS = (
    "VIASJobAbnormal",
    "VIASJobCreateOrStartFailed",
    "VIASBatchTaskProblems",
    "VIASJobLackOfResources",  # the longest `for:` (15s)
)
MAX_AGE_SECONDS = 3  # the exporter's default max_age_intervals (3) x poll interval (1s)
# Panels whose metric cannot exist in this set-up, and why.
EMPTY_PANELS = {
    "IAM token lifetime left": "only exported for IAM password login; the test uses a token",
}


async def test_incident_alerts_reach_the_webhook_and_dashboard_queries_return_data(
    tmp_path: Path,
) -> None:
    # Every list once, so that every dashboard row (cameras, edge pools, services) has data.
    async with running_stack(tmp_path, "incident", sources=",".join(DISTINCT_LISTS)) as s:
        await wait_until_scraped(s)

        queries = list(dash.queries(dash.load()))
        assert set(EMPTY_PANELS) <= {title for title, _ in queries}, "stale EMPTY_PANELS"

        async def all_panels_have_data() -> bool:
            empty = [
                title
                for title, expr in queries
                if title not in EMPTY_PANELS and not await s.query(dash.substitute(expr))
            ]
            assert not empty, f"panels without data: {empty}"
            return True

        await eventually(all_panels_have_data, 60, "data in every dashboard panel")

        async def firing_in_prometheus() -> dict[str, dict[str, str]]:
            s.processes.check_alive()
            firing = {
                a["labels"]["alertname"]: a["labels"]
                for a in await s.alerts()
                if a["state"] == "firing"
            }
            return firing if set(INCIDENT_ALERTS) <= set(firing) else {}

        firing = await eventually(firing_in_prometheus, 90, f"{sorted(INCIDENT_ALERTS)} to fire")
        for name, severity in INCIDENT_ALERTS.items():
            assert firing[name]["severity"] == severity
            assert firing[name]["project_id"] == PROJECT
        # VIASJobFailed's first-failure branch reads the counters' `_created` samples: this
        # Prometheus must ingest them, and they are the exporter's recent wall-clock time.
        born_recently = await s.query(
            'vias_task_state_transitions_created{to_state="FAILED"} > time() - 600'
        )
        assert born_recently and all(
            float(r["value"][1]) <= float(r["value"][0]) for r in born_recently
        )

        async def delivered() -> dict[str, tuple[str, dict[str, Any]]]:
            seen = notified(s.notifications)
            return seen if set(INCIDENT_ALERTS) <= set(seen) else {}

        seen = await eventually(delivered, 60, "the alerts to reach the webhook")
        for name, severity in INCIDENT_ALERTS.items():
            receiver, labels = seen[name]
            assert labels["severity"] == severity, name
            assert labels["project_id"] == PROJECT, name
            assert receiver == RECEIVERS[severity], name
        for receiver, payload in s.notifications:
            assert payload["groupLabels"].keys() <= {"project_id", "alertname"}
            assert payload["receiver"] == receiver


async def test_healthy_scenario_fires_nothing(tmp_path: Path) -> None:
    async with running_stack(tmp_path, "healthy") as s:
        await wait_until_scraped(s)
        # Every shortened `for:` (at most 15s) has passed several times within this window.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            s.processes.check_alive()
            firing = [a["labels"] for a in await s.alerts() if a["state"] == "firing"]
            assert not firing, firing
            await asyncio.sleep(1)
        assert await s.query("vias_tasks"), "the exporter exported no jobs"
        assert not notified(s.notifications)


# --- job alerts while the jobs' state is unknown -------------------------------------------
# A quiet world (no scenario steps) where the test breaks three jobs itself, so that each
# continuity-story alert has exactly one alert and each of its notifications is one event.


async def story_alerts(s: Stack) -> dict[str, dict[str, Any]]:
    """alertname -> the one pending or firing alert of each continuity-story alert."""
    s.processes.check_alive()
    found: dict[str, dict[str, Any]] = {}
    for alert in await s.alerts():
        name = alert["labels"]["alertname"]
        if name in STORY_ALERTS:
            assert name not in found, f"two {name} alerts: {found[name]}, {alert}"
            found[name] = alert
    return found


async def break_story_jobs(s: Stack) -> None:
    batch_task_id = (await s.batch_task_ids())[0]
    for task_id, state in STORY_JOBS.items():
        fields = {"batch_id": batch_task_id} if state == "START_FAILED" else {}
        await s.put_job(task_id, state, **fields)


def story_events(notifications: list[tuple[str, dict[str, Any]]]) -> dict[str, list[str]]:
    """alertname -> the status of each notification of that alert, in order."""
    events: dict[str, list[str]] = {name: [] for name in STORY_ALERTS}
    identity: dict[str, dict[str, str]] = {}
    for _, payload in notifications:
        for alert in payload["alerts"]:
            name = alert["labels"]["alertname"]
            if name in STORY_ALERTS:
                assert identity.setdefault(name, alert["labels"]) == alert["labels"], alert
                events[name].append(alert["status"])
    return events


def delivered_firing(s: Stack, *names: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        s.processes.check_alive()
        events = story_events(s.notifications)
        return all("firing" in events[name] for name in names)

    return check


async def all_story_alerts_firing_and_delivered(s: Stack) -> dict[str, dict[str, Any]]:
    """Wait for every story alert to fire and reach the webhook; return Prometheus' alerts."""

    async def firing() -> dict[str, dict[str, Any]]:
        alerts = await story_alerts(s)
        return alerts if all(a["state"] == "firing" for a in alerts.values()) else {}

    await eventually(delivered_firing(s, *STORY_ALERTS), 60, f"{STORY_ALERTS} to be delivered")
    alerts = await eventually(firing, 10, "every story alert firing")
    assert set(alerts) == set(STORY_ALERTS), alerts
    return alerts


async def wait_for_resolved(s: Stack, name: str, seconds: float) -> None:
    async def resolved() -> bool:
        s.processes.check_alive()
        return "resolved" in story_events(s.notifications)[name]

    await eventually(resolved, seconds, f"{name} resolved at the webhook")


def assert_one_page_each(events: dict[str, list[str]], resolved: set[str]) -> None:
    """Each story alert paged once, and only the ones in `resolved` resolved, once, after."""
    for name, statuses in events.items():
        expected = ["firing", "resolved"] if name in resolved else ["firing"]
        assert statuses == expected, f"{name}: {statuses}"


async def test_exporter_restart_mid_incident_does_not_resolve_or_page_again(tmp_path: Path) -> None:
    """An exporter restart (a deploy, an OOM kill): the job series vanish while it is down
    and until its first poll. One page per job, no resolved until the job recovers, and an
    alert whose `for:` was running keeps its progress."""
    async with running_stack(tmp_path, "healthy", step_interval=0, tasks=20) as s:
        await wait_until_scraped(s)
        await break_story_jobs(s)

        async def short_fired_long_pending() -> dict[str, dict[str, Any]]:
            alerts = await story_alerts(s)
            states = {name: alert["state"] for name, alert in alerts.items()}
            ready = (
                set(states) == set(STORY_ALERTS)
                and states["VIASJobAbnormal"] == states["VIASJobCreateOrStartFailed"] == "firing"
                and states["VIASJobLackOfResources"] == "pending"
                and await delivered_firing(s, "VIASJobAbnormal", "VIASJobCreateOrStartFailed")()
            )
            return alerts if ready else {}

        before = await eventually(
            short_fired_long_pending, 30, "short alerts firing, VIASJobLackOfResources pending"
        )

        s.processes.stop_one("exporter")
        failed_scrapes = (
            f'count_over_time(up{{job="{stack.SCRAPE_JOB}"}}[1m])'
            f' - sum_over_time(up{{job="{stack.SCRAPE_JOB}"}}[1m]) >= 3'
        )
        await eventually(lambda: s.query(failed_scrapes), 30, "3 failed scrapes")
        s.processes.start_again("exporter")
        await wait_until_scraped(s)

        after = await all_story_alerts_firing_and_delivered(s)
        for name in STORY_ALERTS:
            # the same alert all along: never resolved, its `for:` never started over
            assert after[name]["activeAt"] == before[name]["activeAt"], name
        recovery_at = len(s.notifications)
        assert_one_page_each(story_events(s.notifications), resolved=set())

        await s.put_job("e2e-lack", "RUNNING")
        # a poll, a scrape, an evaluation and Alertmanager's group_interval: seconds
        await wait_for_resolved(s, "VIASJobLackOfResources", 15)
        assert_one_page_each(story_events(s.notifications), resolved={"VIASJobLackOfResources"})
        assert story_events(s.notifications[:recovery_at])["VIASJobLackOfResources"] == ["firing"]
        still = await story_alerts(s)
        for name in set(STORY_ALERTS) - {"VIASJobLackOfResources"}:
            assert still[name]["activeAt"] == before[name]["activeAt"], name


async def test_api_outage_does_not_resolve_or_page_again_and_a_recovery_resolves_once(
    tmp_path: Path,
) -> None:
    """The VIAS API down for longer than max_age_intervals (today's exporter then drops the
    job series): VIASSourceStale pages, no job alert resolves or pages again; the API back
    with one job recovered meanwhile: one resolved, the others go on firing."""
    async with running_stack(tmp_path, "healthy", step_interval=0, tasks=20) as s:
        await wait_until_scraped(s)
        await break_story_jobs(s)
        before = await all_story_alerts_firing_and_delivered(s)

        await s.api_down()
        outage_past_max_age = (
            f'vias_up{{project_id="{PROJECT}"}} == 0 and on (project_id, source)'
            f" time() - vias_last_success_timestamp_seconds > {MAX_AGE_SECONDS + 2}"
        )

        async def past_max_age() -> bool:
            return len(await s.query(outage_past_max_age)) == 2  # tasks and batch_tasks

        await eventually(past_max_age, 30, "an outage longer than max_age_intervals")

        async def stale_delivered() -> bool:
            s.processes.check_alive()
            return any(
                alert["labels"]["alertname"] == "VIASSourceStale" and alert["status"] == "firing"
                for _, payload in s.notifications
                for alert in payload["alerts"]
            )

        await eventually(stale_delivered, 60, "VIASSourceStale at the webhook")
        during = await story_alerts(s)
        for name in STORY_ALERTS:
            assert during[name]["state"] == "firing", name
            assert during[name]["activeAt"] == before[name]["activeAt"], name
        assert_one_page_each(story_events(s.notifications), resolved=set())

        await s.put_job("e2e-lack", "RUNNING")  # recovers while nobody can see it
        await s.api_up()
        await wait_until_scraped(s)
        # VIASSourceStale may still hold it back for a moment: Prometheus sends it again
        await wait_for_resolved(s, "VIASJobLackOfResources", 20)
        assert_one_page_each(story_events(s.notifications), resolved={"VIASJobLackOfResources"})
        after = await story_alerts(s)
        assert set(after) == set(STORY_ALERTS) - {"VIASJobLackOfResources"}
        for name, alert in after.items():
            assert alert["state"] == "firing", name
            assert alert["activeAt"] == before[name]["activeAt"], name
