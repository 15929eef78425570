"""The fleet case's exporter run for several commits in turn, against one simulator:
`python -m bench.fleet_commits 7b4e2d3 adbd683 here` (`here`: this tree). For telling a
regression from a slower machine: each commit measured on the same machine, back to back
(about 2 minutes a commit, after the simulator's 1 to 6 to start)."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from bench.fixtures import simulator_process
from bench.runner import Sizes
from bench.scale import FleetSizes, _fleet_config, _fleet_run, baseline_tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commits", nargs="+", help="commits to run (`here`: this tree)")
    parser.add_argument("--quick", action="store_true", help="the tiny fleet (CI)")
    args = parser.parse_args()
    shape = FleetSizes.make(Sizes(quick=args.quick))
    projects = [f"fleet-{number:04d}" for number in range(shape.projects)]
    notes: list[str] = []
    with (
        simulator_process(
            shape.tasks, projects=projects, batch_tasks=shape.batch_tasks, start_timeout=600
        ) as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = _fleet_config(url, shape, Path(tmp))
        print("| commit | CPU a minute [s] | worst scrape [s] | peak RSS [MB] |")
        print("|---|---|---|---|")
        for commit in args.commits:
            with contextlib.ExitStack() as stack:
                tree = (
                    None if commit == "here" else stack.enter_context(baseline_tree(notes, commit))
                )
                if commit != "here" and tree is None:
                    continue
                run = _fleet_run(config, shape, tree, shape.up_deadline)
                print(
                    f"| {commit} | {run.cpu_per_minute:.1f} | {run.worst_scrape:.2f} "
                    f"| {run.peak_rss / 2**20:.0f} |",
                    flush=True,
                )
    for note in notes:
        print(f"Note: {note}")


if __name__ == "__main__":
    main()
