"""The command line as users run it: the console script in a process of its own."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from exporter.cli import parse_listen_address
from exporter.settings import ConfigError
from exporter.simulator import Fault
from tests.support import TOKEN, RunningSimulator, Samples, free_port

EXPORTER = Path(sys.executable).parent / "vias-exporter"


def env_for(url: str, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VIAS_")}
    return {
        **clean,
        "VIAS_ENDPOINT": url,
        "VIAS_PROJECT_ID": "p1",
        "VIAS_AUTH_TOKEN": TOKEN,
        **extra,
    }


async def run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(EXPORTER),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("address", "expected"),
    [(":9875", (None, 9875)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9875", ("::1", 9875))],
)
def test_listen_addresses(address: str, expected: tuple[str | None, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["9875", "host:port", ":70000"])
def test_bad_listen_address(address: str) -> None:
    with pytest.raises(ConfigError, match=r"--web\.listen-address"):
        parse_listen_address(address)


async def test_once_prints_the_metrics_of_one_poll(simulator: RunningSimulator) -> None:
    code, out, err = await run("--once", env=env_for(simulator.url))
    assert code == 0, err
    samples = Samples.parse(out)
    for source in ("tasks", "batch_tasks"):
        assert samples.value("vias_up", project_id="p1", source=source) == 1
    running = sum(1 for t in simulator.world.projects["p1"].tasks.values() if t.state == "RUNNING")
    assert (
        sum(samples.series("vias_tasks", project_id="p1", source="tasks", state="RUNNING").values())
        == running
    )
    assert "poll succeeded" in err  # logs go to stderr, metrics alone to stdout


async def test_once_exits_1_when_a_source_fails(simulator: RunningSimulator) -> None:
    simulator.sim.faults.add(Fault(kind="unauthorized", match="/batch-tasks"))
    code, out, _ = await run("--once", env=env_for(simulator.url))
    assert code == 1
    assert Samples.parse(out).value("vias_up", project_id="p1", source="batch_tasks") == 0


async def test_check_config_summarizes_without_secrets() -> None:
    code, out, _ = await run("--check-config", env=env_for("http://127.0.0.1:9"))
    assert code == 0
    assert "configuration OK: 1 target(s)" in out and "p1" in out and "auth token" in out
    assert TOKEN not in out


async def test_an_unknown_list_stops_start_up_naming_the_field(tmp_path: Path) -> None:
    """The registry handed to settings by the command line (issue 19: settings no longer
    imports it) still refuses a list name it lacks, from a file and from the environment."""
    config = tmp_path / "config.yml"
    config.write_text("targets:\n  - {project_id: p1, region: r, auth_token: t, sources: [x]}\n")
    code, out, err = await run("--config.file", str(config), env=env_for("http://127.0.0.1:1"))
    assert code == 2 and out == ""
    assert "targets[0].sources[0]: unknown source; choose from tasks, batch_tasks" in err
    env = env_for("http://127.0.0.1:1", VIAS_SOURCES="tasks,cameras")
    code, out, err = await run("--check-config", env=env)
    assert code == 2 and "VIAS_SOURCES[1]: unknown source; choose from tasks" in err


async def test_demo_serves_the_simulators_jobs_and_stops_on_sigterm() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(EXPORTER),
        "--demo",
        "--web.listen-address",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = asyncio.get_running_loop().time() + 30
            while True:  # a deadline, not a sleep: ready once every source has polled
                try:
                    async with session.get(url + "/-/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert asyncio.get_running_loop().time() < deadline, "demo never got ready"
                await asyncio.sleep(0.1)
            async with session.get(url + "/metrics") as response:
                samples = Samples.parse(await response.text())
        for source in ("tasks", "batch_tasks", "face_edge_tasks"):
            assert samples.value("vias_up", project_id="demo-project", source=source) == 1
        assert samples.series("vias_tasks", project_id="demo-project")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=5) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_demo_refuses_a_config_file_it_would_ignore() -> None:
    code, out, err = await run(
        "--demo", "--config.file", "missing.yml", env=env_for("http://127.0.0.1:1")
    )
    assert code == 2 and out == ""
    assert "--demo runs against the built-in simulator: drop --config.file" in err


async def test_help_shows_the_log_flags_defaults() -> None:
    code, out, _ = await run("--help", env=env_for("http://127.0.0.1:1"))
    assert code == 0
    assert "(default info)" in out and "(default console)" in out


@pytest.mark.parametrize("level", ["debug", "info"])
async def test_debug_logs_each_request_the_paging_and_the_snapshot_swaps(
    simulator: RunningSimulator, level: str
) -> None:
    code, _, err = await run(
        "--once", "--log.level", level, "--log.format", "json", env=env_for(simulator.url)
    )
    assert code == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    debug = [line for line in lines if line["level"] == "debug"]
    if level == "info":
        assert debug == []
        return
    requests = [line for line in debug if line["event"] == "request"]
    assert {"page=1&page_size=1000", "is_paged=true&page_num=1&page_size=200"} <= {
        r["query"] for r in requests
    }
    assert all(r["code"] == "200" and r["project_id"] == "p1" for r in requests)
    assert all(isinstance(r["duration_seconds"], float) for r in requests)
    complete = {line["source"]: line for line in debug if line["event"] == "listing complete"}
    assert set(complete) == {"tasks", "batch_tasks"}
    assert complete["tasks"]["because"].startswith("a page of ")
    swaps = [line for line in debug if line["event"] == "snapshot swapped"]
    assert {s["source"] for s in swaps} == {"tasks", "batch_tasks"}
    assert TOKEN not in err


async def test_ctrl_c_before_serving_ends_quietly(simulator: RunningSimulator) -> None:
    """SIGINT while the first poll is in flight (before the signal handlers are in place,
    as during start-up): one line and exit 130, no traceback."""
    simulator.sim.faults.add(Fault(kind="latency", match="/p1/", seconds=30))
    process = await asyncio.create_subprocess_exec(
        str(EXPORTER),
        "--once",
        env=env_for(simulator.url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while simulator.sim.in_flight == 0:
            assert asyncio.get_running_loop().time() < deadline, "no request came"
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), timeout=20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130
    assert "vias-exporter: interrupted" in err.decode()
    assert "Traceback" not in err.decode()
