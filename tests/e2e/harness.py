"""The loopback stack the end-to-end tests share: VIAS simulator -> vias-exporter ->
Prometheus with the shipped alert rules (durations divided by a scale) -> Alertmanager with
the example routing -> a webhook served by the test, counting notifications."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import yaml
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from tests.deploy import stack
from tests.support import free_port, stop_process

VENV_BIN = Path(sys.executable).parent
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROJECT = "p1"
TOKEN = "sim-token"
FOR_SCALE = 60  # rules' `for:` minutes become seconds in the test copy
STARTUP_SECONDS = 60
RECEIVERS = {"critical": "vias-pager", "warning": "vias-ticket"}
# Numbers of seconds inside expressions, shortened like `for:` (minutes become seconds).
# VIASSourceStale: 15 minutes, or 3 effective intervals when longer (clamp_min's floor).
SCALED_THRESHOLDS = {"VIASSourceStale": ("> 900", "), 900")}
JOB_SOURCES = "tasks,batch_tasks"
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
    alertmanager: str = ""
    sources: frozenset[str] = frozenset(JOB_SOURCES.split(","))

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.prometheus}/api/v1/query", params={"query": promql}) as r:
            body = await r.json()
        assert body["status"] == "success", f"{promql}: {body}"
        return cast(list[dict[str, Any]], body["data"]["result"])

    async def alerts(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.prometheus}/api/v1/alerts") as response:
            return cast(list[dict[str, Any]], (await response.json())["data"]["alerts"])

    async def am_alerts(self) -> list[dict[str, Any]]:
        """Alertmanager's active alerts, inhibited and silenced ones included."""
        async with self.http.get(f"{self.alertmanager}/api/v2/alerts") as response:
            assert response.status == 200, await response.text()
            return cast(list[dict[str, Any]], await response.json())

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        """Call the simulator's admin API (`/_sim/...`); its JSON answer."""
        async with self.http.request(method, f"{self.simulator}{path}", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def target_up(self) -> bool:
        self.processes.check_alive()
        async with self.http.get(f"{self.prometheus}/api/v1/targets") as response:
            targets = (await response.json())["data"]["activeTargets"]
        return any(t["labels"]["job"] == stack.SCRAPE_JOB and t["health"] == "up" for t in targets)

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
        return {series["metric"]["source"] for series in polled} == self.sources


def shorten(duration: str, scale: int = FOR_SCALE) -> str:
    """A `for:` duration divided by `scale` (60: minutes to seconds), at least 1s unless 0."""
    units = {"s": 1, "m": 60, "h": 3600}
    seconds = sum(
        int(amount) * units[unit] for amount, unit in re.findall(r"(\d+)([smh])", duration)
    )
    assert seconds or duration in ("0s", "0m"), f"cannot read duration {duration!r}"
    return f"{max(1, seconds // scale)}s" if seconds else "0s"


def shortened_rules(tmp: Path, scale: int = FOR_SCALE) -> Path:
    """The shipped rules with every `for:` and SCALED_THRESHOLDS shortened (by `scale`);
    nothing else changed."""
    rules = yaml.safe_load(stack.RULES_FILE.read_text(encoding="utf-8"))
    scaled = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = shorten(rule["for"], scale)
            for threshold in SCALED_THRESHOLDS.get(rule.get("alert", ""), ()):
                before, seconds = threshold.rsplit(" ", 1)
                assert threshold in rule["expr"], f"{rule['alert']}: no {threshold!r} to shorten"
                short = f"{before} {int(seconds) // scale}"
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
    tmp: Path,
    scenario: str,
    step_interval: float = 1,
    tasks: int = 200,
    sources: str = JOB_SOURCES,
    scale: int = FOR_SCALE,
) -> AsyncIterator[Stack]:
    """The stack with the exporter polling `sources` every second, `for:` divided by
    `scale`."""
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
            env=stack.exporter_env(f"http://127.0.0.1:{sim}", PROJECT, TOKEN, sources, poll=1),
        )
        am_config = alertmanager_config(tmp, f"http://127.0.0.1:{webhook_port}")
        (tmp / "am-data").mkdir()
        assert ALERTMANAGER is not None and PROMETHEUS is not None  # else the module skips
        processes.start(
            "alertmanager",
            [ALERTMANAGER, *stack.alertmanager_args(str(am_config), "am-data", f"127.0.0.1:{am}")],
        )
        prom_config = prometheus_config(
            tmp, shortened_rules(tmp, scale), f"127.0.0.1:{exp}", f"127.0.0.1:{am}"
        )
        (tmp / "prom-data").mkdir()
        processes.start(
            "prometheus",
            [
                PROMETHEUS,
                *stack.prometheus_args(str(prom_config), "prom-data", f"127.0.0.1:{prom}"),
                # 1m: how soon a resolved alert that an inhibition swallowed is sent again
                f"--rules.alert.resend-delay={shorten('1m', scale)}",
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
                f"http://127.0.0.1:{am}",
                frozenset(sources.split(",")),
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


def notified(
    notifications: list[tuple[str, dict[str, Any]]],
) -> dict[str, tuple[str, dict[str, Any]]]:
    """alertname -> (receiver path, labels) of firing alerts that reached the webhook."""
    seen = {}
    for receiver, payload in notifications:
        for alert in payload["alerts"]:
            if alert["status"] == "firing":
                seen[alert["labels"]["alertname"]] = (receiver, alert["labels"])
    return seen


# --- Sharded replicas: one simulator with many projects, N exporter processes sharing one
# config file, one Prometheus discovering them from a file (as it would a headless Service's
# endpoints) with the shipped rules. -------------------------------------------------------


def sharded_config(tmp: Path, endpoint: str, projects: list[str], poll: float) -> Path:
    """One exporter config listing every project (each replica keeps its shard of them)."""
    config = {
        # One token: the projects share one account rate limit, far above the default 20/s
        # here, where every project polls each `poll` seconds.
        "global": {"rate_limit_per_second": 1000},
        "targets": [
            {
                "project_id": project,
                "endpoint": endpoint,
                "auth_token": TOKEN,
                "sources": ["tasks"],
                "poll_interval_seconds": poll,
            }
            for project in projects
        ],
    }
    path = tmp / "exporter.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class ShardedStack:
    http: ClientSession
    prometheus: str
    simulator: str
    projects: list[str]
    processes: Processes
    config: Path
    targets_file: Path
    ports: dict[int, int] = field(default_factory=dict)  # shard -> the port its replica serves

    def start_shard(self, shard: int, total: int) -> None:
        """Start (or start again, on the same port) the replica of `shard` of `total`."""
        port = self.ports.setdefault(shard, free_port())
        argv = [
            str(VENV_BIN / stack.EXPORTER_SCRIPT),
            *stack.exporter_args(f"127.0.0.1:{port}"),
            f"--config.file={self.config}",
            f"--shard={shard}",
            f"--total-shards={total}",
        ]
        self.processes.start(f"shard-{shard}", argv)

    def stop_shard(self, shard: int) -> None:
        self.processes.stop_one(f"shard-{shard}")

    def instance(self, shard: int) -> str:
        return f"127.0.0.1:{self.ports[shard]}"

    def discover(self) -> None:
        """Prometheus' file service discovery: every replica started so far is a target
        (replaced atomically, as the file is watched)."""
        targets = [{"targets": [self.instance(shard) for shard in sorted(self.ports)]}]
        new = self.targets_file.with_suffix(".new")
        new.write_text(json.dumps(targets), encoding="utf-8")
        new.replace(self.targets_file)

    async def query(self, promql: str) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.prometheus}/api/v1/query", params={"query": promql}) as r:
            body = await r.json()
        assert body["status"] == "success", f"{promql}: {body}"
        return cast(list[dict[str, Any]], body["data"]["result"])

    async def exported_by(self) -> dict[str, set[str]]:
        """project -> the instances (replicas) whose vias_up{source="tasks"} Prometheus has
        now (series of a replica that is down are stale, so absent)."""
        self.processes.check_alive()
        exported: dict[str, set[str]] = {}
        for series in await self.query('vias_up{source="tasks"}'):
            labels = series["metric"]
            exported.setdefault(labels["project_id"], set()).add(labels["instance"])
        return exported

    async def shard_of_instance(self) -> dict[str, tuple[int, int]]:
        """instance -> (shard, total) as the replicas export them."""
        ordinals = await self.query("vias_exporter_shard_ordinal")
        totals = {
            s["metric"]["instance"]: int(s["value"][1])
            for s in await self.query("vias_exporter_total_shards")
        }
        return {
            s["metric"]["instance"]: (int(s["value"][1]), totals[s["metric"]["instance"]])
            for s in ordinals
            if s["metric"]["instance"] in totals
        }

    async def truth(self) -> dict[str, int]:
        """project -> number of jobs, from the simulator itself."""
        counts = {}
        for project in self.projects:
            async with self.http.get(f"{self.simulator}/_sim/truth/{project}") as response:
                assert response.status == 200, await response.text()
                counts[project] = len((await response.json())["tasks"])
        return counts


@contextlib.asynccontextmanager
async def running_shards(
    tmp: Path, projects: list[str], total: int, tasks: int = 3, poll: float = 2
) -> AsyncIterator[ShardedStack]:
    """The simulator serving `projects` (`tasks` jobs each, no batch or face-edge tasks,
    nothing changing), `total` exporter replicas `--shard i --total-shards total` polling
    their share every `poll` seconds, and Prometheus scraping them every second."""
    sim, prom = free_port(), free_port()
    processes = Processes(tmp)
    try:
        simulator_args = stack.simulator_args(
            f"127.0.0.1:{sim}", "healthy", 0, ",".join(projects), TOKEN, tasks=tasks
        )
        processes.start(
            "simulator",
            [
                sys.executable,
                "-m",
                stack.SIMULATOR_MODULE,
                *simulator_args,
                "--batch-tasks=0",
                "--face-edge-tasks=0",
            ],
        )
        targets_file = tmp / "exporters.json"
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(shortened_rules(tmp))],
            "scrape_configs": [
                {
                    "job_name": stack.SCRAPE_JOB,
                    "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }
        prom_config = tmp / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        (tmp / "prom-data").mkdir()
        async with ClientSession(timeout=ClientTimeout(total=5)) as http:
            shards = ShardedStack(
                http,
                f"http://127.0.0.1:{prom}",
                f"http://127.0.0.1:{sim}",
                projects,
                processes,
                sharded_config(tmp, f"http://127.0.0.1:{sim}", projects, poll),
                targets_file,
            )
            for shard in range(total):
                shards.start_shard(shard, total)
            shards.discover()
            assert PROMETHEUS is not None
            processes.start(
                "prometheus",
                [
                    PROMETHEUS,
                    *stack.prometheus_args(str(prom_config), "prom-data", f"127.0.0.1:{prom}"),
                ],
            )
            yield shards
    except BaseException:
        processes.dump_logs()
        raise
    finally:
        processes.stop()
