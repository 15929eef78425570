"""Runs the cases and prints the table: medians (min to max) beside baseline and limit."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Figure:
    """Several runs' values of one measured quantity."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


@dataclass
class Row:
    """One line of the table: the exporter's figure, its baseline's and its limit's."""

    case: str
    metric: str
    unit: str
    exporter: Figure = field(default_factory=Figure)
    baseline: Figure | None = None
    limit: Figure | None = None
    goal: str = ""
    check: Callable[[Row], bool] | None = None

    def ratio(self, other: Figure | None) -> float | None:
        if other is None or not other.values or not other.median:
            return None
        return self.exporter.median / other.median

    @property
    def met(self) -> bool | None:
        return None if self.check is None else self.check(self)


@dataclass(frozen=True)
class Sizes:
    """The sizes the cases run at: full, or tiny for a CI smoke run (`--quick`)."""

    quick: bool
    series: int = 10_000
    connections: int = 64
    scrape_seconds: float = 5.0
    scrape_warmup: float = 1.0
    ingest_jobs: int = 100_000
    poll_jobs: int = 100_000
    memory_jobs: tuple[int, ...] = (100_000, 1_000_000)
    stall_jobs: int = 100_000
    stall_idle_seconds: float = 3.0
    latency: float = 0.05

    @classmethod
    def make(cls, quick: bool) -> Sizes:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            series=1_000,
            connections=4,
            scrape_seconds=0.3,
            scrape_warmup=0.1,
            ingest_jobs=2_000,
            poll_jobs=3_000,
            memory_jobs=(3_000,),
            stall_jobs=3_000,
            stall_idle_seconds=0.3,
            latency=0.01,
        )


# A case: its sizes, runs, and notes to print under the table; it returns its rows.
Case = Callable[[Sizes, int, list[str]], list[Row]]
# Cases of several minutes a run: one run unless --runs says otherwise.
LONG_CASES = frozenset({"fleet", "million", "budget", "throttle"})


def _cases() -> dict[str, Case]:
    from bench import budget, cases, scale

    def noteless(case: Callable[[Sizes, int], list[Row]]) -> Case:
        return lambda sizes, runs, notes: case(sizes, runs)

    return {
        "scrape": noteless(cases.scrape),
        "ingest": noteless(cases.ingest),
        "poll": noteless(cases.poll),
        "memory": noteless(cases.memory),
        "stall": noteless(cases.stall),
        "fleet": scale.fleet,
        "million": scale.million,
        "budget": budget.budget,
        "throttle": budget.throttle,
    }


def _fmt(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "–"
    if unit == "ms":
        return f"{value * 1000:.2f}" if value < 0.01 else f"{value * 1000:.1f}"
    if unit == "MB":
        return f"{value / 2**20:.1f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def _cell(figure: Figure | None, unit: str) -> str:
    if figure is None or not figure.values:
        return "–"
    text = _fmt(figure.median, unit)
    if len(figure.values) > 1:
        low, high = min(figure.values), max(figure.values)
        text += f" ({_fmt(low, unit)}–{_fmt(high, unit)})"
    return text


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}×"


HEADER = (
    "case",
    "metric",
    "exporter",
    "baseline",
    "÷ baseline",
    "limit",
    "÷ limit",
    "goal",
    "met",
)


def table_rows(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    lines: list[tuple[str, ...]] = []
    for row in rows:
        met = {None: "", True: "yes", False: "NO"}[row.met]
        lines.append(
            (
                row.case,
                f"{row.metric} [{row.unit}]" if row.unit else row.metric,
                _cell(row.exporter, row.unit),
                _cell(row.baseline, row.unit),
                _ratio(row.ratio(row.baseline)),
                _cell(row.limit, row.unit),
                _ratio(row.ratio(row.limit)),
                row.goal,
                met,
            )
        )
    return lines


def render(rows: Sequence[Row], markdown: bool) -> str:
    body = table_rows(rows)
    if markdown:
        out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        out += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(out)
    widths = [max(len(line[i]) for line in [HEADER, *body]) for i in range(len(HEADER))]
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in body]
    return "\n".join(out)


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), ""
            )
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPUs ({model or platform.machine()}), {memory:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    available = _cases()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run each (CI)")
    parser.add_argument("--runs", type=int, help="runs per case (default 3, --quick 1)")
    parser.add_argument(
        "--cases",
        default=",".join(available),
        help=f"comma separated, of: {','.join(available)}",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in available]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    from exporter.logs import configure_logging

    configure_logging("warning")
    runs = args.runs or (1 if args.quick else 3)
    sizes = Sizes.make(args.quick)
    rows: list[Row] = []
    notes: list[str] = []
    started = time.perf_counter()
    for name in chosen:
        case_runs = args.runs or (1 if name in LONG_CASES else runs)
        print(f"running {name} ({case_runs} run(s))...", file=sys.stderr, flush=True)
        rows.extend(available[name](sizes, case_runs, notes))
    long_runs = "" if args.runs or args.quick else f" ({', '.join(sorted(LONG_CASES))}: 1)"
    print(f"{machine()}; {runs} run(s) per figure{long_runs}; median (min–max)")
    print(render(rows, args.markdown))
    for note in notes:
        print(f"\nNote: {note}")
    print(f"\ntook {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0
