"""Smoke test of the benchmark suite: every case runs at tiny sizes and prints its row.
Never a timing assertion: CI machines are too noisy for that.

Break → failing test (each seen red once):
- a case left out of bench.runner's list, or failing (e.g. the fleet's exporter process
  exiting, the baseline not extracted) → test_quick_bench_runs_every_case_and_prints_its_row
"""

from __future__ import annotations

import subprocess
import sys

CASE_ROWS = {
    "scrape": "requests/s",
    "ingest": "CPU time",
    "poll": "wall time",
    "memory": "peak RSS",
    "stall": "scrape p99",
    "fleet": "time until every source is up",
    "million": "peak RSS",
    "budget": "time until every source is up",
    "throttle": "429s after the first minute",
}


def table_rows(*module_and_args: str) -> tuple[list[str], str]:
    """`python -m <module> <args>`'s Markdown table rows (it must exit 0), and its output."""
    result = subprocess.run(
        [sys.executable, "-m", *module_and_args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("| ")], result.stdout


def test_quick_bench_runs_every_case_and_prints_its_row() -> None:
    rows, output = table_rows("bench", "--quick", "--markdown")
    for case, metric in CASE_ROWS.items():
        assert any(row.startswith(f"| {case} | {metric}") for row in rows), (case, output)


def test_fleet_commits_prints_a_row_per_commit_it_ran() -> None:
    """`python -m bench.fleet_commits`: this tree and one before the budget plan, each in
    the table (a commit git cannot extract would be left out with a note)."""
    rows, output = table_rows("bench.fleet_commits", "--quick", "adbd683", "here")
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| adbd683", "| here"], output
