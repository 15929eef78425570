"""End to end on loopback: VIAS simulator -> vias-exporter -> Prometheus with the shipped
alert rules -> Alertmanager with the example routing -> a webhook served by this test.

Proves that the target is up, that every dashboard query returns data, that the incident
scenario fires the job alerts all the way to the right receiver, that the healthy
scenario fires nothing, and that job alerts neither resolve nor page again while the jobs'
state is unknown (an exporter restart, a VIAS API outage). The clock is shortened: the
rules' `for:`, VIASSourceStale's threshold and Prometheus' alert resend delay are divided
by FOR_SCALE.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from tests.deploy import dashboard as dash
from tests.deploy import stack
from tests.support import free_port, stop_process

pytestmark = pytest.mark.e2e

VENV_BIN = Path(sys.executable).parent
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROJECT = "p1"
TOKEN = "sim-token"
FOR_SCALE = 60  # rules' `for:` minutes become seconds in the test copy
STARTUP_SECONDS = 60
INCIDENT_ALERTS = {
    # alertname: severity, and so the receiver the example routing picks
    "VIASJobAbnormal": "critical",
    "VIASJobFailed": "critical",
    "VIASJobLackOfResources": "warning",
    "VIASJobCreateOrStartFailed": "warning",
    "VIASBatchTaskProblems": "warning",
}
RECEIVERS = {"critical": "vias-pager", "warning": "vias-ticket"}
# Numbers of seconds inside expressions, shortened like `for:` (minutes become seconds).
SCALED_THRESHOLDS = {"VIASSourceStale": "> 900"}
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
T = TypeVar("T")

if PROMETHEUS is None or ALERTMANAGER is None:
    pytest.skip(
        "prometheus and prometheus-alertmanager are needed (Debian packages; make system-deps)",
        allow_module_level=True,
    )


async def eventually(
    check: Callable[[], Awaitable[T | None]], seconds: float, what: str, every: float = 0.5
) -> T:
    """Poll `check` until it returns something other than None/False, or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = await check()
        except (TimeoutError, ClientError, OSError, AssertionError) as error:
            last_error, result = error, None
        if result:
            return result
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {seconds:g}s waiting for {what} (last: {last_error})")


@dataclass
class Processes:
    """Child processes with their logs in files; stopped in reverse order, even on failure."""

    log_dir: Path
    running: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.commands[name] = (argv, env)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.log_dir,
                env={**os.environ, **(env or {})},
            )
        self.running.append((name, process, log))

    def stop_one(self, name: str) -> None:
        """Stop one process (SIGTERM, as a deploy or a node drain does)."""
        (index,) = [i for i, (n, _, _) in enumerate(self.running) if n == name]
        stop_process(self.running.pop(index)[1])

    def start_again(self, name: str) -> None:
        self.start(name, *self.commands[name])

    def check_alive(self) -> None:
        for name, process, _ in self.running:
            assert process.poll() is None, f"{name} exited with {process.returncode}"

    def stop(self) -> None:
        for _, process, _ in reversed(self.running):
            stop_process(process)

    def dump_logs(self) -> None:
        for name, _, log in self.running:
            text = log.read_text(encoding="utf-8", errors="replace")
            print(f"----- {name} ({log}), last 80 lines -----")
            print("\n".join(text.splitlines()[-80:]))


@dataclass
class Stack:
    http: ClientSession
    prometheus: str
    exporter: str
    simulator: str
    notifications: list[tuple[str, dict[str, Any]]]  # (receiver path, Alertmanager payload)
    processes: Processes

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.prometheus}/api/v1/query", params={"query": promql}) as r:
            body = await r.json()
        assert body["status"] == "success", f"{promql}: {body}"
        return body["data"]["result"]

    async def alerts(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.prometheus}/api/v1/alerts") as response:
            return (await response.json())["data"]["alerts"]

    async def target_up(self) -> bool:
        self.processes.check_alive()
        async with self.http.get(f"{self.prometheus}/api/v1/targets") as response:
            targets = (await response.json())["data"]["activeTargets"]
        return any(t["labels"]["job"] == stack.SCRAPE_JOB and t["health"] == "up" for t in targets)

    async def story_alerts(self) -> dict[str, dict[str, Any]]:
        """alertname -> the one pending or firing alert of each continuity-story alert."""
        self.processes.check_alive()
        found: dict[str, dict[str, Any]] = {}
        for alert in await self.alerts():
            name = alert["labels"]["alertname"]
            if name in STORY_ALERTS:
                assert name not in found, f"two {name} alerts: {found[name]}, {alert}"
                found[name] = alert
        return found

    async def put_job(self, task_id: str, state: str, **fields: str) -> None:
        """Create a job in the simulator, or set its state."""
        url = f"{self.simulator}/_sim/tasks/{PROJECT}/{task_id}"
        async with self.http.put(url, json={"state": state, **fields}) as response:
            assert response.status == 200, await response.text()

    async def api_down(self) -> None:
        """Every VIAS API request answers 500 until api_up()."""
        body = [{"kind": "server_error_json"}]
        async with self.http.post(f"{self.simulator}/_sim/faults", json=body) as response:
            assert response.status == 200, await response.text()

    async def api_up(self) -> None:
        async with self.http.delete(f"{self.simulator}/_sim/faults") as response:
            assert response.status == 200, await response.text()

    async def batch_task_ids(self) -> list[str]:
        async with self.http.get(f"{self.simulator}/_sim/truth/{PROJECT}") as response:
            return [batch["id"] for batch in (await response.json())["batch_tasks"]]

    async def sources_polled(self) -> bool:
        """Prometheus has scraped a successful poll of every enabled source."""
        polled = await self.query(f'vias_up{{project_id="{PROJECT}"}} == 1')
        return {series["metric"]["source"] for series in polled} == {"tasks", "batch_tasks"}


def shorten(duration: str) -> str:
    """A `for:` duration divided by FOR_SCALE (minutes to seconds), at least 1s unless 0."""
    units = {"s": 1, "m": 60, "h": 3600}
    seconds = sum(
        int(amount) * units[unit] for amount, unit in re.findall(r"(\d+)([smh])", duration)
    )
    assert seconds or duration in ("0s", "0m"), f"cannot read duration {duration!r}"
    return f"{max(1, seconds // FOR_SCALE)}s" if seconds else "0s"


def shortened_rules(tmp: Path) -> Path:
    """The shipped rules with every `for:` and SCALED_THRESHOLDS shortened (by FOR_SCALE);
    nothing else changed."""
    rules = yaml.safe_load(stack.RULES_FILE.read_text(encoding="utf-8"))
    scaled = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = shorten(rule["for"])
            threshold = SCALED_THRESHOLDS.get(rule.get("alert", ""))
            if threshold is not None:
                comparison, seconds = threshold.split()
                assert threshold in rule["expr"], f"{rule['alert']}: no {threshold!r} to shorten"
                short = f"{comparison} {int(seconds) // FOR_SCALE}"
                rule["expr"] = rule["expr"].replace(threshold, short)
                scaled.add(rule["alert"])
    assert scaled == set(SCALED_THRESHOLDS), scaled
    path = tmp / "alerts.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    return path


def alertmanager_config(tmp: Path, webhook: str) -> Path:
    """The example routing, with every receiver sent to the test's webhook and no waiting."""
    config = yaml.safe_load(stack.ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    config["receivers"] = [
        {"name": receiver["name"], "webhook_configs": [{"url": f"{webhook}/{receiver['name']}"}]}
        for receiver in config["receivers"]
    ]
    config["route"].update(group_wait="1s", group_interval="1s")
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def prometheus_config(tmp: Path, rules: Path, exporter: str, alertmanager: str) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": stack.SCRAPE_JOB, "static_configs": [{"targets": [exporter]}]}
        ],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def running_stack(
    tmp: Path, scenario: str, step_interval: float = 1, tasks: int = 200
) -> AsyncIterator[Stack]:
    notifications: list[tuple[str, dict[str, Any]]] = []

    async def receive(request: web.Request) -> web.Response:
        notifications.append((request.match_info["receiver"], await request.json()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/{receiver}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    webhook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", webhook_port).start()

    sim, exp, prom, am = (free_port() for _ in range(4))
    processes = Processes(tmp)
    try:
        simulator_args = stack.simulator_args(
            f"127.0.0.1:{sim}", scenario, step_interval, PROJECT, TOKEN, tasks=tasks
        )
        processes.start(
            "simulator", [sys.executable, "-m", stack.SIMULATOR_MODULE, *simulator_args]
        )
        processes.start(
            "exporter",
            [str(VENV_BIN / stack.EXPORTER_SCRIPT), *stack.exporter_args(f"127.0.0.1:{exp}")],
            env=stack.exporter_env(
                f"http://127.0.0.1:{sim}", PROJECT, TOKEN, "tasks,batch_tasks", poll=1
            ),
        )
        am_config = alertmanager_config(tmp, f"http://127.0.0.1:{webhook_port}")
        (tmp / "am-data").mkdir()
        processes.start(
            "alertmanager",
            [ALERTMANAGER, *stack.alertmanager_args(str(am_config), "am-data", f"127.0.0.1:{am}")],
        )
        prom_config = prometheus_config(
            tmp, shortened_rules(tmp), f"127.0.0.1:{exp}", f"127.0.0.1:{am}"
        )
        (tmp / "prom-data").mkdir()
        processes.start(
            "prometheus",
            [
                PROMETHEUS,
                *stack.prometheus_args(str(prom_config), "prom-data", f"127.0.0.1:{prom}"),
                # 1m: how soon a resolved alert that an inhibition swallowed is sent again
                f"--rules.alert.resend-delay={shorten('1m')}",
            ],
        )
        async with ClientSession(timeout=ClientTimeout(total=5)) as http:
            yield Stack(
                http,
                f"http://127.0.0.1:{prom}",
                f"http://127.0.0.1:{exp}",
                f"http://127.0.0.1:{sim}",
                notifications,
                processes,
            )
    except BaseException:
        processes.dump_logs()
        raise
    finally:
        processes.stop()
        await runner.cleanup()


async def wait_until_scraped(stack_: Stack) -> None:
    await eventually(stack_.target_up, STARTUP_SECONDS, "the exporter target to be up")
    await eventually(stack_.sources_polled, STARTUP_SECONDS, "a successful poll of every source")


def notified(notifications: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[str, dict]]:
    """alertname -> (receiver path, labels) of firing alerts that reached the webhook."""
    seen = {}
    for receiver, payload in notifications:
        for alert in payload["alerts"]:
            if alert["status"] == "firing":
                seen[alert["labels"]["alertname"]] = (receiver, alert["labels"])
    return seen


async def test_incident_alerts_reach_the_webhook_and_dashboard_queries_return_data(tmp_path):
    async with running_stack(tmp_path, "incident") as s:
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

        async def delivered() -> dict[str, tuple[str, dict]]:
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


async def test_healthy_scenario_fires_nothing(tmp_path):
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
        alerts = await s.story_alerts()
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


async def test_exporter_restart_mid_incident_does_not_resolve_or_page_again(tmp_path):
    """An exporter restart (a deploy, an OOM kill): the job series vanish while it is down
    and until its first poll. One page per job, no resolved until the job recovers, and an
    alert whose `for:` was running keeps its progress."""
    async with running_stack(tmp_path, "healthy", step_interval=0, tasks=20) as s:
        await wait_until_scraped(s)
        await break_story_jobs(s)

        async def short_fired_long_pending() -> dict[str, dict[str, Any]]:
            alerts = await s.story_alerts()
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
        still = await s.story_alerts()
        for name in set(STORY_ALERTS) - {"VIASJobLackOfResources"}:
            assert still[name]["activeAt"] == before[name]["activeAt"], name


async def test_api_outage_does_not_resolve_or_page_again_and_a_recovery_resolves_once(tmp_path):
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
        during = await s.story_alerts()
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
        after = await s.story_alerts()
        assert set(after) == set(STORY_ALERTS) - {"VIASJobLackOfResources"}
        for name, alert in after.items():
            assert alert["state"] == "firing", name
            assert alert["activeAt"] == before[name]["activeAt"], name
