"""The five cases. Each returns its table rows; figures hold one value per run."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from bench.fixtures import (
    HOST,
    PROJECT_ID,
    TOKEN,
    Helper,
    exporter_config,
    simulator_process,
    task_pages,
)
from bench.loadgen import LoadResult, run_load
from bench.runner import Figure, Row, Sizes
from exporter.lists.base import PollContext
from exporter.lists.jobs import JobAggregator, Task, TaskPage
from exporter.lists.tasks import TASKS
from exporter.models import parse_model
from exporter.own_metrics import ProjectMetric
from exporter.service import Exporter

# The client settings the poll, memory and stall cases run with (defaults: 4, 4, 20/s).
# 100 requests/s stays well under the API gateway's documented 200/s per API.
POLL_SETTINGS: dict[str, object] = {
    "max_concurrency": 8,
    "page_window": 8,
    "rate_limit_per_second": 100.0,
}
BASELINE_POLL_SETTINGS: dict[str, object] = {
    **POLL_SETTINGS,
    "max_concurrency": 1,
    "page_window": 1,
}
PAGE_SIZE = TASKS.paging.page_size


def _within(bound: float) -> Callable[[Row], bool]:
    return lambda row: row.exporter.median <= bound


# --- scrape ----------------------------------------------------------------------------


def scrape(sizes: Sizes, runs: int) -> list[Row]:
    """/metrics throughput and latency, 64 keep-alive clients in this process."""
    results: dict[str, list[LoadResult]] = {"exporter": [], "baseline": [], "limit": []}
    series = 0
    for _ in range(runs):
        for variant in results:
            with Helper("scrape", f"--variant={variant}", f"--series={sizes.series}") as server:
                series = int(str(server.info["series"]))
                results[variant].append(
                    asyncio.run(
                        run_load(
                            HOST,
                            server.port,
                            "/metrics",
                            connections=sizes.connections,
                            duration=sizes.scrape_seconds,
                            warmup=sizes.scrape_warmup,
                        )
                    )
                )

    def figure(variant: str, value: Callable[[LoadResult], float]) -> Figure:
        return Figure([value(result) for result in results[variant]])

    rows = []
    for metric, unit, value, goal, check in (
        (
            f"requests/s, {series:,} series, {sizes.connections} clients",
            "",
            lambda r: r.rate,
            "≥10× baseline, ≥0.8× limit",
            lambda row: (row.ratio(row.baseline) or 0) >= 10 and (row.ratio(row.limit) or 0) >= 0.8,
        ),
        ("p50 latency", "ms", lambda r: r.percentile(50), "", None),
        ("p99 latency", "ms", lambda r: r.percentile(99), "", None),
    ):
        rows.append(
            Row(
                "scrape",
                metric,
                unit,
                figure("exporter", value),
                figure("baseline", value),
                figure("limit", value),
                goal,
                check,
            )
        )
    return rows


# --- ingest ----------------------------------------------------------------------------


def _aggregator() -> JobAggregator:
    return JobAggregator(PollContext(previous=None, problem_tasks_limit=200, now=time.time()))


def _ingest_exporter(pages: list[bytes]) -> None:
    """What a poll does with each page's bytes: validate, aggregate (de-duplicating)."""
    aggregator = _aggregator()
    for body in pages:
        aggregator.add(parse_model(TaskPage, body, TASKS.endpoint).items)
    asyncio.run(aggregator.finish())


def _ingest_baseline(pages: list[bytes]) -> None:
    aggregator = _aggregator()
    for body in pages:
        aggregator.add([Task.model_validate(item) for item in json.loads(body)["tasks"]])
    asyncio.run(aggregator.finish())


def _ingest_limit(pages: list[bytes]) -> None:
    for body in pages:
        json.loads(body)


def ingest(sizes: Sizes, runs: int) -> list[Row]:
    """CPU seconds from raw page bytes to a snapshot."""
    pages = task_pages(sizes.ingest_jobs, PAGE_SIZE)
    figures = {"exporter": Figure(), "baseline": Figure(), "limit": Figure()}
    work = {"exporter": _ingest_exporter, "baseline": _ingest_baseline, "limit": _ingest_limit}
    _ingest_exporter(pages[:2])  # warm up (pydantic builds validators lazily)
    for _ in range(runs):
        for name, run in work.items():
            gc.collect()
            started = time.process_time()
            run(pages)
            figures[name].add(time.process_time() - started)
    return [
        Row(
            "ingest",
            f"CPU time, {sizes.ingest_jobs:,} jobs in {len(pages)} pages",
            "s",
            figures["exporter"],
            figures["baseline"],
            figures["limit"],
            "≤2× limit",
            lambda row: (row.ratio(row.limit) or math.inf) <= 2,
        )
    ]


# --- poll ------------------------------------------------------------------------------


def _api_calls(exporter: Exporter) -> int:
    return int(
        sum(
            sample.value
            for metric in exporter.telemetry.project(PROJECT_ID)
            .metrics[ProjectMetric.vias_api_requests]
            .collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    )


async def _poll(url: str, settings: dict[str, object]) -> tuple[float, int]:
    async with Exporter(exporter_config(url, **settings)) as exporter:
        started = time.perf_counter()
        await exporter.poll_all_once()
        seconds = time.perf_counter() - started
        state = exporter.store.current.sources[(PROJECT_ID, "tasks")]
        if not state.up:
            raise RuntimeError(f"the poll failed: {state.last_error}")
        return seconds, _api_calls(exporter)


def poll(sizes: Sizes, runs: int) -> list[Row]:
    """Wall time of a complete listing over HTTP from a simulator process."""
    wall = {"exporter": Figure(), "baseline": Figure()}
    calls = {"exporter": Figure(), "baseline": Figure()}
    settings = {"exporter": POLL_SETTINGS, "baseline": BASELINE_POLL_SETTINGS}
    concurrency = int(str(POLL_SETTINGS["max_concurrency"]))
    with simulator_process(sizes.poll_jobs, sizes.latency) as url:
        asyncio.run(_poll(url, POLL_SETTINGS))  # warm up: the simulator caches job JSON
        for _ in range(runs):
            for name in wall:
                seconds, count = asyncio.run(_poll(url, settings[name]))
                wall[name].add(seconds)
                calls[name].add(count)
    pages = sizes.poll_jobs // PAGE_SIZE + 1  # the last, short (or empty) page ends it
    limit = Figure([pages * sizes.latency / concurrency])
    return [
        Row(
            "poll",
            f"wall time, {sizes.poll_jobs:,} jobs, {sizes.latency * 1000:g} ms latency",
            "s",
            wall["exporter"],
            wall["baseline"],
            limit,
            "≥3× faster than baseline",
            lambda row: (row.ratio(row.baseline) or math.inf) <= 1 / 3,
        ),
        Row(
            "poll",
            "API calls",
            "",
            calls["exporter"],
            calls["baseline"],
            Figure([pages + concurrency]),
            "≤ pages + concurrency (limit)",
            lambda row: (row.ratio(row.limit) or math.inf) <= 1,
        ),
    ]


# --- memory ----------------------------------------------------------------------------


# Runs `code` and writes the process's own peak RSS (VmHWM, KiB) to the file argv[1] at
# exit. Not the parent's wait4() rusage: a child forked from this big bench process
# counts the parent's pages until it execs.
_REPORT_PEAK = """
import atexit, sys
def _report(path=sys.argv[1]):
    with open("/proc/self/status") as status, open(path, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM")).split()[1])
atexit.register(_report)
sys.argv = sys.argv[:1] + sys.argv[2:]
"""


def _peak_rss(code: str, env: dict[str, str], *args: str) -> float:
    """Peak RSS in bytes of a fresh interpreter running `code` (not of this process)."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        command = [sys.executable, "-c", _REPORT_PEAK + code, report.name, *args]
        subprocess.run(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        return float(report.read()) * 1024


def memory(sizes: Sizes, runs: int) -> list[Row]:
    """Peak RSS of `vias-exporter --once` (its own process) against a simulator process."""
    floor = Figure()
    for _ in range(runs):
        imports = "import exporter.cli, exporter.service, exporter.web"
        floor.add(_peak_rss(imports, dict(os.environ)))
    rows = []
    for jobs in sizes.memory_jobs:
        figure = Figure()
        with simulator_process(jobs, 0.0) as url:
            env = {
                **os.environ,
                "VIAS_ENDPOINT": url,
                "VIAS_PROJECT_ID": PROJECT_ID,
                "VIAS_AUTH_TOKEN": TOKEN,
                "VIAS_SOURCES": "tasks",
                "VIAS_REQUEST_TIMEOUT_SECONDS": "60",
                **{f"VIAS_{key.upper()}": str(value) for key, value in POLL_SETTINGS.items()},
            }
            once = "from exporter.cli import main; raise SystemExit(main())"
            _peak_rss(once, env, "--once")  # warm up: the simulator caches job JSON
            for _ in range(runs):
                figure.add(_peak_rss(once, env, "--once"))
        bound = 80 if jobs <= 100_000 else 300
        rows.append(
            Row(
                "memory",
                f"peak RSS after polling {jobs:,} jobs (limit: imports only)",
                "MB",
                figure,
                None,
                floor,
                f"≤{bound} MB",
                _within(bound * 2**20),
            )
        )
    return rows


# --- stall -----------------------------------------------------------------------------

STALL_CONNECTIONS = 2  # an HA Prometheus pair
STALL_THINK_SECONDS = 0.01  # scraping far more often than every 15 s, for samples


async def _scrape_during(helper: Helper, seconds: float | None) -> tuple[LoadResult, float]:
    """Scrape for `seconds` idle, or (None) while the helper runs one poll."""
    loop = asyncio.get_running_loop()
    if seconds is not None:
        await loop.run_in_executor(None, helper.send, "reset")
        await loop.run_in_executor(None, helper.read)
        result = await run_load(
            HOST,
            helper.port,
            "/metrics",
            connections=STALL_CONNECTIONS,
            duration=seconds,
            think_seconds=STALL_THINK_SECONDS,
        )
        await loop.run_in_executor(None, helper.send, "stats")
        reply = await loop.run_in_executor(None, helper.read)
        return result, float(str(reply["max_stall"]))
    helper.send("poll")
    done = loop.run_in_executor(None, helper.read)
    result = await run_load(
        HOST,
        helper.port,
        "/metrics",
        connections=STALL_CONNECTIONS,
        until=done,
        think_seconds=STALL_THINK_SECONDS,
    )
    reply = await done
    return result, float(str(reply["max_stall"]))


def stall(sizes: Sizes, runs: int) -> list[Row]:
    """Scrape latency and event-loop stalls of the exporter while it polls, vs idle."""
    p99 = {"poll": Figure(), "idle": Figure()}
    stalls = {"poll": Figure(), "idle": Figure()}
    with (
        simulator_process(sizes.stall_jobs, sizes.latency) as url,
        Helper("stall", f"--url={url}", f"--settings={json.dumps(POLL_SETTINGS)}") as helper,
    ):
        for _ in range(runs):
            for phase, seconds in (("idle", sizes.stall_idle_seconds), ("poll", None)):
                result, longest = asyncio.run(_scrape_during(helper, seconds))
                p99[phase].add(result.percentile(99))
                stalls[phase].add(longest)
    return [
        Row(
            "stall",
            f"scrape p99 during a {sizes.stall_jobs:,}-job poll (baseline: idle)",
            "ms",
            p99["poll"],
            p99["idle"],
            None,
            "≤2× idle",
            lambda row: (row.ratio(row.baseline) or math.inf) <= 2,
        ),
        Row(
            "stall",
            "longest event-loop stall (baseline: idle)",
            "ms",
            stalls["poll"],
            stalls["idle"],
            None,
        ),
    ]


__all__ = ["ingest", "memory", "poll", "scrape", "stall"]
