"""The budget cases: the issue-20 fleet (500 projects x 2 lists on one credential, 60 s
interval) at the default `rate_limit_per_second: 20`, where it asks for ~92 requests/s,
and at 150/s, where it fits; the exporter beside its code before the budget plan
(BUDGET_BASELINE_COMMIT, extracted with `git archive`), run the same way. And a gateway
that throttles at 30 requests/s while the configuration says 200.

- budget: time until every source is up, poll overruns until then and a minute after,
  requests a second, measured poll period against the reported effective interval, peak
  RSS, worst scrape, CPU a minute.
- throttle: 429s after the first minute, and sources not polled in that time.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.fixtures import TOKEN, simulator_process
from bench.runner import Figure, Row, Sizes
from bench.scale import (
    ExporterProcess,
    FleetSizes,
    Scrape,
    _finish,
    _watch,
    baseline_tree,
    sample_values,
)

BUDGET_BASELINE_COMMIT = "adbd683"  # the exporter before issue 20's budget plan
SOURCES = ("tasks", "batch_tasks")


def config_file(url: str, fleet: FleetSizes, rate: float, directory: Path, extra: str = "") -> Path:
    lines = ["global:", f"  rate_limit_per_second: {rate:g}", *extra.splitlines(), "targets:"]
    for number in range(fleet.projects):
        lines += [
            f"  - project_id: fleet-{number:04d}",
            f"    endpoint: {url}",
            f"    auth_token: {TOKEN}",
            f"    sources: [{', '.join(SOURCES)}]",
        ]
        if fleet.interval != 60:
            lines.append(f"    poll_interval_seconds: {fleet.interval}")
    path = directory / f"budget-{rate:g}.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class BudgetRun:
    all_up: float = math.nan
    overruns_at_start: float = math.nan
    overruns_per_minute: float = math.nan
    requests_per_second: float = math.nan
    period_ratio: float = math.nan  # measured poll period / reported effective interval
    worst_scrape: float = 0.0
    cpu_per_minute: float = math.nan
    peak_rss: float = math.nan
    size: float = math.nan


class PollTimes:
    """When each source's poll count was first and last seen to change (to the scrape):
    its mean period in between. The scrape's resolution errs both ways alike, so the mean
    over a thousand sources is close; and the start-up spread does not bias it."""

    def __init__(self) -> None:
        self._last: dict[bytes, float] = {}
        self._first: dict[bytes, tuple[float, float]] = {}  # time, count
        self._latest: dict[bytes, tuple[float, float]] = {}

    def update(self, at: float, counts: dict[bytes, float]) -> None:
        for source, count in counts.items():
            if source in self._last and count != self._last[source]:
                self._first.setdefault(source, (at, count))
                self._latest[source] = (at, count)
            self._last[source] = count

    def mean_period(self) -> float:
        periods = []
        for source, (first_at, first_count) in self._first.items():
            last_at, last_count = self._latest[source]
            if last_count > first_count:
                periods.append((last_at - first_at) / (last_count - first_count))
        return sum(periods) / len(periods) if periods else math.nan


def _run(config: Path, fleet: FleetSizes, tree: Path | None, window_for: float) -> BudgetRun:
    """Until every source is up (or the deadline), then a window of at least a minute and
    at least one reported effective interval (so every source polls in it)."""
    run = BudgetRun()
    sources = fleet.projects * len(SOURCES)
    start: dict[str, float] = {}
    seen = PollTimes()

    def totals(body: bytes) -> tuple[float, float, float]:
        return (
            sum(sample_values(body, "vias_poll_overruns_total")),
            sum(sample_values(body, "vias_api_requests_total")),
            sum(sample_values(body, "vias_poll_duration_seconds_count")),
        )

    def done(result: Scrape, elapsed: float) -> bool:
        overruns, requests, polls = totals(result.body)
        if not start:
            up = sample_values(result.body, "vias_up").count(1.0)
            if up == sources or elapsed >= window_for:
                run.all_up = elapsed if up == sources else math.nan
                run.overruns_at_start = overruns
                effective = sample_values(result.body, "vias_poll_effective_interval_seconds")
                longest = max(effective, default=fleet.interval)
                # Two periods and more: every source polls twice or more in the window.
                start.update(
                    at=elapsed,
                    end=elapsed + max(fleet.measure, 2.2 * longest),
                    overruns=overruns,
                    requests=requests,
                    polls=polls,
                    cpu=cpu(),
                )
            return False
        seen.update(elapsed, _polls_by_source(result.body))
        if elapsed < start["end"]:
            return False
        seconds = elapsed - start["at"]
        run.overruns_per_minute = (overruns - start["overruns"]) * 60 / seconds
        run.requests_per_second = (requests - start["requests"]) / seconds
        run.cpu_per_minute = (cpu() - start["cpu"]) * 60 / seconds
        effective = sample_values(result.body, "vias_poll_effective_interval_seconds")
        if effective:  # the exporter with a plan: the mean period against the reported
            run.period_ratio = seen.mean_period() / (sum(effective) / len(effective))
        return True

    with ExporterProcess([f"--config.file={config}"], {}, tree) as exporter:
        cpu = exporter.cpu_seconds
        _watch(exporter, run, fleet.scrape_every, done)  # type: ignore[arg-type]
        _finish(exporter, run)  # type: ignore[arg-type]
    return run


def budget(sizes: Sizes, runs: int, notes: list[str]) -> list[Row]:
    """The fleet on one credential at the default rate limit and at one that fits."""
    fleet = FleetSizes.make(sizes)
    tight, fitting = (4.0, 50.0) if sizes.quick else (20.0, 150.0)
    # The baseline at the default rate limit takes ~4 minutes to have every source up.
    up_deadline = fleet.up_deadline * (1 if sizes.quick else 3)
    results: dict[tuple[str, float], list[BudgetRun]] = {}
    projects = [f"fleet-{number:04d}" for number in range(fleet.projects)]
    with (
        simulator_process(
            fleet.tasks, projects=projects, batch_tasks=fleet.batch_tasks, start_timeout=600
        ) as url,
        tempfile.TemporaryDirectory() as tmp,
        baseline_tree(notes, BUDGET_BASELINE_COMMIT) as baseline,
    ):
        for _ in range(runs):
            for rate in (tight, fitting):
                config = config_file(url, fleet, rate, Path(tmp))
                for variant, tree in (("exporter", None), ("baseline", baseline)):
                    if variant == "exporter" or tree is not None:
                        run = _run(config, fleet, tree, up_deadline)
                        results.setdefault((variant, rate), []).append(run)
    for (variant, rate), variant_runs in results.items():
        if any(math.isnan(run.all_up) for run in variant_runs):
            notes.append(
                f"budget, {variant} at {rate:g}/s: not every source was up after "
                f"{up_deadline:.0f} s; measured from then on"
            )

    def figure(variant: str, rate: float, value: Callable[[BudgetRun], float]) -> Figure | None:
        if (variant, rate) not in results:
            return None
        return Figure([value(run) for run in results[(variant, rate)]])

    where = f"{fleet.projects} projects x 2 lists, {fleet.interval:g} s interval"
    rows = []
    for rate, metric, unit, value, goal, check in _budget_table(tight, fitting, where):
        label = metric if metric.startswith("time until") else f"{metric} ({rate:g}/s)"
        met = None if check is None else _median_meets(check)
        exporter = figure("exporter", rate, value) or Figure()
        before = figure("baseline", rate, value)
        rows.append(Row("budget", label, unit, exporter, before, None, goal, met))
    return rows


Check = Callable[[float], bool]
TableRow = tuple[float, str, str, Callable[[BudgetRun], float], str, Check | None]


def _median_meets(check: Check) -> Callable[[Row], bool]:
    return lambda row: check(row.exporter.median)


def _budget_table(tight: float, fitting: float, where: str) -> list[TableRow]:
    def zero(value: float) -> bool:
        return value == 0

    def within_budget(value: float) -> bool:
        return value <= tight

    def close_to_one(value: float) -> bool:
        return 0.9 <= value <= 1.1

    def second(value: float) -> bool:
        return value <= 1.0

    def under(megabytes: float) -> Check:
        return lambda value: value < megabytes * 2**20

    return [
        (tight, f"time until every source is up, {where}, {tight:g}/s", "s",
         lambda r: r.all_up, "", None),
        (tight, "poll overruns until every source is up", "",
         lambda r: r.overruns_at_start, "0", zero),
        (tight, "poll overruns a minute after", "", lambda r: r.overruns_per_minute, "0", zero),
        (tight, "API requests a second", "", lambda r: r.requests_per_second,
         f"≤ {tight:g}", within_budget),
        (tight, "measured poll period ÷ reported effective interval", "",
         lambda r: r.period_ratio, "0.9–1.1", close_to_one),
        (tight, "peak RSS", "MB", lambda r: r.peak_rss, "< 300 MB", under(300)),
        (tight, "worst scrape", "s", lambda r: r.worst_scrape, "≤ 1 s", second),
        (tight, "exporter CPU a minute", "s", lambda r: r.cpu_per_minute, "", None),
        (fitting, f"time until every source is up, {fitting:g}/s", "s",
         lambda r: r.all_up, "", None),
        (fitting, "poll overruns until every source is up", "",
         lambda r: r.overruns_at_start, "0", zero),
        (fitting, "poll overruns a minute after", "",
         lambda r: r.overruns_per_minute, "0", zero),
        (fitting, "API requests a second", "", lambda r: r.requests_per_second, "", None),
        (fitting, "peak RSS", "MB", lambda r: r.peak_rss, "< 400 MB", under(400)),
        (fitting, "worst scrape", "s", lambda r: r.worst_scrape, "≤ 1 s", second),
        (fitting, "exporter CPU a minute", "s", lambda r: r.cpu_per_minute, "", None),
    ]  # fmt: skip


@dataclass
class _ThrottleWindow:
    """The exporter's counters at the end of the first minute."""

    at: float = math.nan
    refused: float = 0.0
    sent: float = 0.0
    polls: dict[bytes, float] | None = None


def _polls_by_source(body: bytes) -> dict[bytes, float]:
    counts = {}
    for line in body.split(b"\n"):
        if line.startswith(b"vias_poll_duration_seconds_count{"):
            labels, value = line.rsplit(b" ", 1)
            counts[labels] = float(value)
    return counts


def _throttle_run(config: Path, first: float, measured: float, every: float) -> list[float]:
    """429s / requests, sources not polled, requests a second: after the first minute."""
    window = _ThrottleWindow()
    figures: list[float] = []

    def done(result: Scrape, elapsed: float) -> bool:
        refused = sum(sample_values(result.body, "vias_api_requests_total", b'code="429"'))
        sent = sum(sample_values(result.body, "vias_api_requests_total"))
        if window.polls is None:
            if elapsed >= first:
                window.at, window.refused, window.sent = elapsed, refused, sent
                window.polls = _polls_by_source(result.body)
            return False
        if elapsed < window.at + measured:
            return False
        now = _polls_by_source(result.body)
        unpolled = sum(1 for key, count in now.items() if count <= window.polls.get(key, 0))
        figures.extend(
            (
                100 * (refused - window.refused) / max(1.0, sent - window.sent),
                unpolled,
                (sent - window.sent) / (elapsed - window.at),
            )
        )
        return True

    with ExporterProcess([f"--config.file={config}"], {}, None) as exporter:
        _watch(exporter, BudgetRun(), every, done)  # type: ignore[arg-type]
    return figures


def throttle(sizes: Sizes, runs: int, notes: list[str]) -> list[Row]:
    """A gateway that allows 30 requests/s, a configuration that says 200: 429s after the
    first minute, and every source polled in the minutes after it."""
    fleet = FleetSizes.make(sizes)
    projects = [f"fleet-{number:04d}" for number in range(max(1, fleet.projects // 5))]
    shape = FleetSizes(len(projects), fleet.tasks, fleet.batch_tasks, 10.0, 3.0, 0, 0)
    first, measured, every = (3.0, 3.0, 0.5) if sizes.quick else (60.0, 120.0, 3.0)
    refused, unpolled, rate = Figure(), Figure(), Figure()
    with (
        simulator_process(
            shape.tasks,
            projects=projects,
            batch_tasks=shape.batch_tasks,
            start_timeout=600,
            throttle_per_second=30.0,
        ) as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = config_file(url, shape, 200.0, Path(tmp))
        for _ in range(runs):
            run = _throttle_run(config, first, measured, every)
            for figure, value in zip((refused, unpolled, rate), run, strict=True):
                figure.add(value)
    where = f"{len(projects)} projects x 2 lists every 10 s, gateway 30/s, configured 200/s"
    return [
        Row("throttle", f"429s after the first minute, {where}", "%", refused,
            goal="< 1 %", check=_median_meets(lambda v: v < 1.0)),
        Row("throttle", "sources not polled after the first minute", "", unpolled,
            goal="0", check=_median_meets(lambda v: v == 0)),
        Row("throttle", "requests a second after the first minute (429s included)", "", rate,
            goal="≤ 30", check=_median_meets(lambda v: v <= 30 * 1.05)),
    ]  # fmt: skip
