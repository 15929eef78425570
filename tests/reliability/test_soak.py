"""Load and soak: many scrapers while polls run, thousands of polls back to back, and a
SIGTERM in the middle of a poll. Default sizes keep CI fast; `--soak-full` runs the full
sizes (30 s of 200 scrapers, 10,000 poll cycles). Figures are printed (`pytest -s`).

| change to the code (tried, seen red) | failing test |
|---|---|
| `Exporter.stop` waits for the first poll round to end | test_sigterm_during_a_poll_... |
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import signal
import time
from pathlib import Path

import aiohttp
import structlog

from exporter.simulator import World, run_simulator
from exporter.simulator.world import ProjectData
from tests.reliability.reliability_support import (
    EXPORTER_SCRIPT,
    ROOT,
    clean_env,
    fast_config,
    running_exporter,
    wait_until,
)
from tests.support import TOKEN, RunningSimulator, free_port, make_simulator, target

SCRAPERS = 200
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def test_200_concurrent_scrapers_while_polls_run(
    simulator: RunningSimulator, soak_full: bool
) -> None:
    duration = 30.0 if soak_full else 5.0
    config = fast_config(
        [target(simulator.url, "p1"), target(simulator.url, "p2", sources=["tasks", "infer_tasks"])]
    )
    latencies: list[float] = []
    failures: list[str] = []
    polls = 0
    async with running_exporter(config) as running:
        await running.exporter.poll_all_once()
        stop = asyncio.Event()

        async def poll_forever() -> None:
            nonlocal polls
            while not stop.is_set():
                simulator.world.step()
                await running.exporter.poll_all_once()
                polls += 1

        async def scrape_forever(http: aiohttp.ClientSession, gzipped: bool) -> None:
            headers = {"Accept-Encoding": "gzip" if gzipped else "identity"}
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    async with http.get(running.url + "/metrics", headers=headers) as response:
                        body = await response.read()
                        if response.status != 200 or b"vias_up" not in body:
                            failures.append(f"HTTP {response.status}")
                except (aiohttp.ClientError, TimeoutError) as error:
                    failures.append(repr(error))
                latencies.append(time.perf_counter() - started)

        connector = aiohttp.TCPConnector(limit=SCRAPERS)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            tasks = [asyncio.create_task(poll_forever())]
            tasks += [
                asyncio.create_task(scrape_forever(http, gzipped=i % 2 == 0))
                for i in range(SCRAPERS)
            ]
            await asyncio.sleep(duration)  # the load's duration, not a synchronisation
            stop.set()
            await asyncio.gather(*tasks)
        samples = await running.scrape()
    scrapes = len(latencies)
    print(
        f"\nSOAK scrapers={SCRAPERS} duration={duration:g}s scrapes={scrapes} "
        f"failures={len(failures)} rate={scrapes / duration:.0f}/s "
        f"p50={percentile(latencies, 0.5) * 1000:.1f}ms "
        f"p99={percentile(latencies, 0.99) * 1000:.1f}ms "
        f"max={max(latencies) * 1000:.1f}ms poll_cycles={polls}"
    )
    assert failures == []
    assert scrapes >= SCRAPERS and polls >= 1
    for project in ("p1", "p2"):
        assert samples.value("vias_up", project_id=project, source="tasks") == 1


def trim(project: ProjectData, size: int) -> None:
    """Delete the oldest jobs beyond `size`: the data changes, its size does not."""
    for task in project.newest_first(size, len(project.tasks)):
        project.delete_task(task.id)


def usage() -> tuple[float, int, int]:
    """(RSS in MiB, open file descriptors, asyncio tasks) of this process."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        rss = int(statm.read().split()[1]) * PAGE_SIZE / 2**20
    return rss, len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks())


async def test_poll_cycles_keep_memory_fds_and_tasks_flat(soak_full: bool) -> None:
    cycles = 10_000 if soak_full else 500
    warmup = 50
    jobs = 300
    world = World.generate(
        seed=11,
        project_ids=["p1"],
        tasks_per_project=jobs,
        batch_tasks_per_project=5,
        face_edge_tasks_per_project=10,
        scenario="demo",
    )
    project = world.projects["p1"]
    sim = make_simulator(world)
    sources = ["tasks", "batch_tasks"]
    # Per-poll info lines would dominate the run's time: keep warnings and errors only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        async with run_simulator(sim) as url:
            config = fast_config([target(url, "p1", sources=sources)], rate_limit_per_second=10_000)
            async with running_exporter(config) as running:
                exporter = running.exporter
                started = time.perf_counter()
                before = None
                for cycle in range(warmup + cycles):
                    if cycle == warmup:
                        before = usage()
                    world.step()
                    trim(project, jobs)
                    await exporter.poll_all_once()
                    sim.requests.clear()  # the simulator's request log is test harness, not ours
                    if cycle % 100 == 0:
                        await running.scrape()
                elapsed = time.perf_counter() - started
                after = usage()
                samples = await running.scrape()
    finally:
        structlog.reset_defaults()
    assert before is not None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nSOAK poll_cycles={cycles} (+{warmup} warm-up) in {elapsed:.1f}s "
        f"({(warmup + cycles) / elapsed:.0f} cycles/s, {len(sources)} sources each)\n"
        f"  RSS MiB  start={before[0]:.1f} end={after[0]:.1f} growth={after[0] - before[0]:+.1f}"
        f" (peak {peak:.1f})\n"
        f"  open fds start={before[1]} end={after[1]}\n"
        f"  asyncio tasks start={before[2]} end={after[2]}"
    )
    for source in sources:
        assert samples.value("vias_up", project_id="p1", source=source) == 1
    assert samples.value("vias_poll_items", project_id="p1", source="tasks") == jobs
    assert after[0] - before[0] < (25 if soak_full else 10)  # MiB
    assert after[1] - before[1] <= 2
    assert after[2] <= before[2]


async def test_sigterm_during_a_poll_exits_cleanly(tmp_path: Path) -> None:
    """The real console script against a simulator that holds every answer for 30 s:
    SIGTERM once a request is in flight at the simulator ends the process with code 0
    within 5 s, without waiting for the answer (the request is never answered)."""
    world = World.generate(seed=2, project_ids=["p1"], tasks_per_project=50, scenario="demo")
    sim = make_simulator(world, latency_seconds=30)
    async with run_simulator(sim) as url, aiohttp.ClientSession() as http:
        port = free_port()
        config = tmp_path / "config.yml"
        config.write_text(
            f"targets:\n  - project_id: p1\n    endpoint: {url}\n    auth_token: {TOKEN}\n"
            "    poll_interval_seconds: 60\n",
            encoding="utf-8",
        )
        process = await asyncio.create_subprocess_exec(
            str(EXPORTER_SCRIPT),
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env=clean_env(),
        )
        try:
            # The first poll starts after a random delay of up to 1 s: wait for it to arrive.
            await wait_until(
                lambda: sim.in_flight > 0 or process.returncode is not None,
                deadline=15,
                what="a request in flight at the simulator",
            )
            assert process.returncode is None, "the exporter exited"
            async with http.get(f"http://127.0.0.1:{port}/-/ready") as response:
                assert response.status == 503  # the first poll is still in flight
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr_bytes = await asyncio.wait_for(process.communicate(), timeout=10)
            took = time.monotonic() - sent
            # The exporter hung up: the simulator's handler is cancelled, never answering.
            await wait_until(lambda: sim.in_flight == 0, deadline=5, what="the request dropped")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    stderr = stderr_bytes.decode()
    print(f"\nSIGTERM during a poll: exit code {process.returncode} after {took:.2f}s")
    assert process.returncode == 0, stderr
    assert took < 5
    assert sim.requests and all(record.status == 0 for record in sim.requests)
    assert "Traceback" not in stderr
    assert "shutting down" in stderr
