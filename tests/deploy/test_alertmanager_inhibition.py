"""One incident pages once, through a real Alertmanager with the example routing: while a
camera, an edge pool or an algorithm service has a firing alert, the alerts of the jobs on
it are held back; a job on something else still pages.

| change to deploy/alertmanager/alertmanager.yml (tried, seen red) | failing case |
|---|---|
| the camera inhibit rule removed | [camera] |
| `equal: [project_id]` instead of `[project_id, edge_pool_id]` | [edge pool] |

(test_a_cause_holds_back_its_jobs_alerts_only)
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import ClientSession, web

from tests.deploy.stack import ALERTMANAGER_CONFIG, alertmanager_args
from tests.support import free_port, serving_app, stop_process

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
CAUSES = {
    # cause alert, the label it shares with its jobs
    "camera": ("VIASVideoSourceDownWithJobs", "video_source_name"),
    "edge pool": ("VIASEdgePoolAbnormal", "edge_pool_id"),
    "service": ("VIASAlgorithmServiceFailed", "service_id"),
}


def _alert(name: str, **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, "severity": "critical", "project_id": "p1", **labels},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }


def _start(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _notified(alerts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(a["labels"]["alertname"], a["labels"].get("task_id", "")) for a in alerts}


@contextlib.asynccontextmanager
async def alertmanager(tmp_path: Path, webhook: str) -> AsyncIterator[str]:
    """The example configuration, with its receivers pointed at `webhook` and its group
    timers shortened, in a real Alertmanager on loopback."""
    if ALERTMANAGER is None:
        pytest.skip("prometheus-alertmanager not installed (Debian prometheus-alertmanager)")
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    config["route"].update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{webhook}/{receiver['name']}"
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    args = alertmanager_args(str(config_file), str(tmp_path / "data"), f"127.0.0.1:{port}")
    process = _start([ALERTMANAGER, *args])
    url = f"http://127.0.0.1:{port}"
    try:
        async with ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError):
                    async with session.get(f"{url}/-/ready") as response:
                        if response.status == 200:
                            break
                assert process.poll() is None, "alertmanager exited"
                assert time.monotonic() < deadline, "alertmanager never got ready"
                await asyncio.sleep(0.1)
        yield url
    finally:
        stop_process(process)


@pytest.mark.parametrize("cause", CAUSES)
async def test_a_cause_holds_back_its_jobs_alerts_only(tmp_path: Path, cause: str) -> None:
    cause_alert, label = CAUSES[cause]
    notified: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        notified.extend((await request.json())["alerts"])
        return web.Response()

    app = web.Application()
    app.router.add_post("/{receiver}", receive)
    jobs_on_it = [_alert("VIASJobAbnormal", task_id=f"j{n}", **{label: "x-1"}) for n in range(5)]
    elsewhere = _alert("VIASJobAbnormal", task_id="j9", **{label: "x-2"})
    without = _alert("VIASJobLackOfResources", task_id="j8", **{label: ""})
    posted = [_alert(cause_alert, **{label: "x-1"}), *jobs_on_it, elsewhere, without]
    expected = {(cause_alert, ""), ("VIASJobAbnormal", "j9"), ("VIASJobLackOfResources", "j8")}
    async with (
        serving_app(app) as webhook,
        alertmanager(tmp_path, webhook) as url,
        ClientSession() as session,
    ):
        async with session.post(f"{url}/api/v2/alerts", json=posted) as response:
            assert response.status == 200
        deadline = time.monotonic() + 30
        while _notified(notified) != expected:
            assert time.monotonic() < deadline, f"notified: {notified}"
            await asyncio.sleep(0.1)
        async with session.get(f"{url}/api/v2/alerts") as response:
            states = {
                alert["labels"].get("task_id", alert["labels"]["alertname"]): alert["status"]
                for alert in await response.json()
            }
    for n in range(5):
        assert states[f"j{n}"]["state"] == "suppressed", states[f"j{n}"]
        assert states[f"j{n}"]["inhibitedBy"]
    for active in ("j8", "j9", cause_alert):
        assert states[active]["state"] == "active", (active, states[active])
    assert all(a["labels"].get("task_id") not in {f"j{n}" for n in range(5)} for a in notified)
