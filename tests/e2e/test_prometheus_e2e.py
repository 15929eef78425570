"""End to end on loopback: VIAS simulator -> vias-exporter -> Prometheus with the shipped
alert rules -> Alertmanager with the example routing -> a webhook served by this test.

Proves that the target is up, that every dashboard query returns data, that the incident
scenario fires the job alerts all the way to the right receiver, and that the healthy
scenario fires nothing. Only the rules' `for:` durations are shortened.
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

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.log_dir,
                env={**os.environ, **(env or {})},
            )
        self.running.append((name, process, log))

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
    """The shipped rules with every `for:` shortened (by FOR_SCALE); nothing else changed."""
    rules = yaml.safe_load(stack.RULES_FILE.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = shorten(rule["for"])
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
async def running_stack(tmp: Path, scenario: str) -> AsyncIterator[Stack]:
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
            f"127.0.0.1:{sim}", scenario, 1, PROJECT, TOKEN, tasks=200
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
            ],
        )
        async with ClientSession(timeout=ClientTimeout(total=5)) as http:
            yield Stack(
                http,
                f"http://127.0.0.1:{prom}",
                f"http://127.0.0.1:{exp}",
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
