"""The scale cases: the real exporter process (`python -m exporter`, as `vias-exporter`)
polling continuously against a simulator process, beside the baseline (the exporter of
commit BASELINE_COMMIT, extracted with `git archive` and run the same way).

- fleet: 500 projects x 2 lists (tasks with 1,000 jobs, batch_tasks with 20 batch tasks),
  the default 60 s interval: time until every source is up, poll overruns a minute, worst
  scrape, exporter CPU a minute after start-up, peak RSS, /metrics size.
- million: 1,000,000 jobs and 5,000 batch tasks in one project, three polls or more in one
  process: peak RSS, /metrics size.

The bench process scrapes /metrics every few seconds (gzip, as Prometheus asks), which is
both a measurement (latency) and how it reads the exporter's own counters.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import io
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.fixtures import HOST, TOKEN, free_port, simulator_process, wait_for_port
from bench.runner import Figure, Row, Sizes
from exporter.poller import start_spread

BASELINE_COMMIT = "470b3ec"  # the exporter before issue 11's scale work
ROOT = Path(__file__).resolve().parent.parent
FLEET_SOURCES = ("tasks", "batch_tasks")
# The account's requests go through one gateway limit of 200/s per API; a fleet poll is
# about 25 requests/s on average, so this never throttles it (nor the baseline, which has
# one limiter per target).
FLEET_RATE_LIMIT = 150.0
MILLION_SETTINGS = {"MAX_CONCURRENCY": "8", "PAGE_WINDOW": "8", "RATE_LIMIT_PER_SECOND": "100"}


@contextlib.contextmanager
def baseline_tree(notes: list[str], commit: str = BASELINE_COMMIT) -> Iterator[Path | None]:
    """The `exporter` package of a baseline commit in a temporary directory, or None (with
    a note) when git or the commit is not there."""
    with tempfile.TemporaryDirectory(prefix="vias-baseline-") as tmp:
        try:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", commit, "exporter"],
                capture_output=True,
                check=True,
            )
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(tmp, filter="data")
        except (OSError, subprocess.CalledProcessError, tarfile.TarError) as error:
            notes.append(f"baseline skipped: no `git archive {commit}` here ({error})")
            yield None
            return
        yield Path(tmp)


@dataclass
class Scrape:
    seconds: float
    body: bytes


def scrape(port: int, timeout: float = 120.0, gzipped: bool = True) -> Scrape:
    """One GET /metrics, timed from request to the last byte."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    try:
        started = time.perf_counter()
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        body = response.read()
        seconds = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"/metrics answered {response.status}")
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return Scrape(seconds, body)
    finally:
        connection.close()


def sample_values(body: bytes, name: str, label: bytes = b"") -> list[float]:
    """The values of every sample of `name` (with `label`, e.g. b'source="tasks"')."""
    values = []
    prefix = name.encode() + b"{"
    start = body.find(prefix)
    while start >= 0:
        end = body.find(b"\n", start)
        line = body[start : end if end >= 0 else None]
        if label in line:
            values.append(float(line.rsplit(b" ", 1)[1]))
        start = body.find(b"\n" + prefix, end)
        start = start + 1 if start >= 0 else -1
    return values


class ExporterProcess:
    """`python -m exporter` (the exporter at `tree`, or this checkout) on a free port."""

    def __init__(self, args: list[str], env: dict[str, str], tree: Path | None) -> None:
        self.port = free_port()
        cwd = tree or ROOT  # `-m` looks in the working directory first
        environment = {**os.environ, **env, "PYTHONPATH": str(cwd)}
        command = [sys.executable, "-m", "exporter", *args]
        command += [f"--web.listen-address={HOST}:{self.port}", "--log.level=error"]
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.started = time.monotonic()
        wait_for_port(self.port, self.process)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return float(line.split()[1]) * 1024
        return math.nan

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ExporterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Run:
    """What one variant's run measured."""

    all_up: float = math.nan  # seconds from start
    overruns_per_minute: float = math.nan
    worst_scrape: float = 0.0
    cpu_per_minute: float = math.nan
    peak_rss: float = math.nan
    size: float = math.nan
    polls: int = 0
    overruns: list[tuple[float, float]] = field(default_factory=list)  # (time, total)


def _watch(
    exporter: ExporterProcess,
    run: Run,
    every: float,
    done: Callable[[Scrape, float], bool],
) -> None:
    """Scrape every `every` seconds until `done(scrape, elapsed)`; the worst latency."""
    while True:
        tick = time.monotonic()
        result = scrape(exporter.port)
        run.worst_scrape = max(run.worst_scrape, result.seconds)
        if exporter.process.poll() is not None:
            raise RuntimeError(f"the exporter exited with {exporter.process.returncode}")
        if done(result, exporter.elapsed()):
            return
        time.sleep(max(0.0, every - (time.monotonic() - tick)))  # the bench's pace


def _finish(exporter: ExporterProcess, run: Run) -> None:
    run.peak_rss = exporter.peak_rss()
    run.size = len(scrape(exporter.port, gzipped=False).body)


@dataclass(frozen=True)
class FleetSizes:
    projects: int
    tasks: int
    batch_tasks: int
    interval: float
    scrape_every: float
    up_deadline: float  # give up waiting for every source after this (baseline: it never is)
    measure: float  # seconds measured once every source is up (or up_deadline passed)

    @classmethod
    def make(cls, sizes: Sizes) -> FleetSizes:
        if sizes.quick:
            return cls(5, 50, 2, 2.0, 0.5, 20.0, 2.5)
        return cls(500, 1000, 20, 60.0, 3.0, 120.0, 65.0)


def _fleet_config(url: str, fleet: FleetSizes, directory: Path) -> Path:
    lines = ["global:", f"  rate_limit_per_second: {FLEET_RATE_LIMIT}", "targets:"]
    for number in range(fleet.projects):
        lines += [
            f"  - project_id: fleet-{number:04d}",
            f"    endpoint: {url}",
            f"    auth_token: {TOKEN}",
            f"    sources: [{', '.join(FLEET_SOURCES)}]",
        ]
        if fleet.interval != 60:
            lines.append(f"    poll_interval_seconds: {fleet.interval}")
    path = directory / "fleet.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fleet_run(config: Path, fleet: FleetSizes, tree: Path | None, up_deadline: float) -> Run:
    run = Run()
    sources = fleet.projects * len(FLEET_SOURCES)
    window: dict[str, float] = {}

    def done(result: Scrape, elapsed: float) -> bool:
        overruns = sum(sample_values(result.body, "vias_poll_overruns_total"))
        run.overruns.append((elapsed, overruns))
        if "end" not in window:
            up = sample_values(result.body, "vias_up").count(1.0)
            if up == sources:
                run.all_up = elapsed
            if up == sources or elapsed >= up_deadline:
                window.update(start=elapsed, end=elapsed + fleet.measure, cpu=cpu())
            return False
        if elapsed < window["end"]:
            return False
        minute = min(60.0, window["end"] - window["start"])
        before = [total for at, total in run.overruns if at <= elapsed - minute]
        run.overruns_per_minute = (overruns - before[-1]) * 60 / minute if before else math.nan
        run.cpu_per_minute = (cpu() - window["cpu"]) * 60 / (elapsed - window["start"])
        return True

    with ExporterProcess([f"--config.file={config}"], {}, tree) as exporter:
        cpu = exporter.cpu_seconds
        _watch(exporter, run, fleet.scrape_every, done)
        _finish(exporter, run)
    return run


def fleet(sizes: Sizes, runs: int, notes: list[str]) -> list[Row]:
    """500 projects x 2 lists polled continuously by the exporter process."""
    shape = FleetSizes.make(sizes)
    results: dict[str, list[Run]] = {"exporter": [], "baseline": []}
    projects = [f"fleet-{number:04d}" for number in range(shape.projects)]
    with (
        simulator_process(
            shape.tasks, projects=projects, batch_tasks=shape.batch_tasks, start_timeout=600
        ) as url,
        tempfile.TemporaryDirectory() as tmp,
        baseline_tree(notes) as baseline,
    ):
        config = _fleet_config(url, shape, Path(tmp))
        spread = start_spread(shape.interval, shape.projects * len(FLEET_SOURCES))
        for _ in range(runs):
            # Up to two intervals to come up, then a minute measured: the run polls for at
            # least two intervals, and the case takes about 6 minutes.
            for variant, tree in (("exporter", None), ("baseline", baseline)):
                if variant == "exporter" or tree is not None:
                    results[variant].append(_fleet_run(config, shape, tree, shape.up_deadline))
    for variant, variant_runs in results.items():
        for run in variant_runs:
            if math.isnan(run.all_up):
                notes.append(
                    f"fleet, {variant}: not every source was up after {shape.up_deadline:.0f} s "
                    "(time to all up shown as –); measured from then on"
                )

    def figure(variant: str, value: Callable[[Run], float]) -> Figure | None:
        if variant == "baseline" and baseline is None:
            return None
        return Figure([value(run) for run in results[variant]])

    where = (
        f"{shape.projects} projects x 2 lists ({shape.tasks:,} jobs, "
        f"{shape.batch_tasks} batch tasks), {shape.interval:g} s interval"
    )
    up_goal = shape.interval + spread
    table: list[tuple[str, str, Callable[[Run], float], float]] = [
        ("time until every source is up, " + where, "s", lambda r: r.all_up, up_goal),
        ("poll overruns a minute", "", lambda r: r.overruns_per_minute, 0.0),
        ("worst scrape", "s", lambda r: r.worst_scrape, 1.0),
        ("exporter CPU a minute after start-up", "s", lambda r: r.cpu_per_minute, 15.0),
        ("peak RSS", "MB", lambda r: r.peak_rss, 400.0 * 2**20),
        ("/metrics size", "MB", lambda r: r.size, math.nan),
    ]
    rows = []
    for metric, unit, value, bound in table:
        goal = "" if math.isnan(bound) else _goal(bound, unit)
        rows.append(
            Row(
                "fleet",
                metric,
                unit,
                Figure([value(run) for run in results["exporter"]]),
                figure("baseline", value),
                None,
                goal,
                None if math.isnan(bound) else _at_most(bound),
            )
        )
    return rows


def _goal(bound: float, unit: str) -> str:
    if unit == "MB":
        return f"< {bound / 2**20:.0f} MB"
    return "0" if bound == 0 else f"≤ {bound:g} {unit}".rstrip()


def _at_most(bound: float) -> Callable[[Row], bool]:
    return lambda row: row.exporter.median <= bound  # NaN (never reached) is not met


def _million_run(url: str, sizes: Sizes, tree: Path | None, interval: float) -> Run:
    run = Run()
    env = {
        "VIAS_ENDPOINT": url,
        "VIAS_PROJECT_ID": "million",
        "VIAS_AUTH_TOKEN": TOKEN,
        "VIAS_SOURCES": ",".join(FLEET_SOURCES),
        "VIAS_POLL_INTERVAL_SECONDS": str(interval),
        "VIAS_REQUEST_TIMEOUT_SECONDS": "60",
        **{f"VIAS_{key}": value for key, value in MILLION_SETTINGS.items()},
    }
    polls = 3

    def done(result: Scrape, elapsed: float) -> bool:
        counts = sample_values(result.body, "vias_poll_duration_seconds_count", b'"tasks"')
        run.polls = int(sum(counts))
        return run.polls >= polls

    with ExporterProcess([], env, tree) as exporter:
        _watch(exporter, run, 0.5 if sizes.quick else 5.0, done)
        _finish(exporter, run)
    return run


def million(sizes: Sizes, runs: int, notes: list[str]) -> list[Row]:
    """1,000,000 jobs and 5,000 batch tasks in one project, three polls in one process."""
    jobs, batch_tasks, interval = (3_000, 50, 1.0) if sizes.quick else (1_000_000, 5_000, 30.0)
    results: dict[str, list[Run]] = {"exporter": [], "baseline": []}
    with (
        simulator_process(
            jobs, projects=["million"], batch_tasks=batch_tasks, start_timeout=600
        ) as url,
        baseline_tree(notes) as baseline,
    ):
        for _ in range(runs):
            results["exporter"].append(_million_run(url, sizes, None, interval))
            if baseline is not None:
                results["baseline"].append(_million_run(url, sizes, baseline, interval))

    def figure(variant: str, value: Callable[[Run], float]) -> Figure | None:
        if variant == "baseline" and baseline is None:
            return None
        return Figure([value(run) for run in results[variant]])

    where = f"{jobs:,} jobs + {batch_tasks:,} batch tasks, 3 polls, {interval:g} s interval"
    return [
        Row(
            "million",
            f"peak RSS, {where}",
            "MB",
            Figure([run.peak_rss for run in results["exporter"]]),
            figure("baseline", lambda r: r.peak_rss),
            None,
            "≤ 200 MB",
            _at_most(200 * 2**20),
        ),
        Row(
            "million",
            "/metrics size",
            "MB",
            Figure([run.size for run in results["exporter"]]),
            figure("baseline", lambda r: r.size),
        ),
    ]
