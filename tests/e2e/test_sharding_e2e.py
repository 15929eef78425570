"""Sharding end to end on loopback: one simulator with 200 projects, 4 vias-exporter
processes (the console script, `--shard i --total-shards 4`, one config file listing the
200 projects), one real Prometheus scraping them (file discovery, the shipped rules with
`for:` shortened). Everything below is read back from Prometheus with PromQL.

Proves that the shards together export every project of the simulator once, with the
simulator's job counts; that a stopped shard leaves only its own projects unmonitored
(the others are polled and scraped on) and raises VIASShardsMissing, and that its projects
come back when it starts again; and that going from 4 to 5 replicas moves about a fifth of
the projects, each of them to the new shard, and nothing else.

| change (tried, seen red) | failing test |
|---|---|
| the Exporter polls every target whatever its shard (service.py) | both (each project 4 times) |
| `Sharding.owns` by `project_key % total` (not consistent) | test_a_fifth_shard_takes_... |
| `--shard` ignored: `Sharding(0, total)` in cli.py | both (a quarter of the projects 4 |
| | times, the rest never) |
| `vias_exporter_shard_ordinal` always 0 (service.py) | both (the ordinals miss 1..3) |
| `project_key` from `hash()` (differs between processes) | both (replicas disagree on owners) |
| alerts.yml: VIASShardsMissing's `!= 0` as `< 0` | test_a_stopped_shard_... |
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from exporter.sharding import Sharding
from tests.e2e.harness import STARTUP_SECONDS, ShardedStack, eventually, running_shards

pytestmark = pytest.mark.e2e

PROJECTS = [hashlib.md5(f"project-{n}".encode()).hexdigest() for n in range(200)]
SHARDS = 4


async def every_project_once(shards: ShardedStack) -> dict[str, str]:
    """project -> the one instance exporting it, once Prometheus has every project of the
    simulator exactly once with the simulator's number of jobs; None before."""
    exported = await shards.exported_by()
    twice = {project: sorted(where) for project, where in exported.items() if len(where) > 1}
    assert not twice, f"projects exported by more than one shard: {twice}"
    jobs = await shards.query('sum by (project_id) (vias_tasks{source="tasks"})')
    counts = {s["metric"]["project_id"]: int(float(s["value"][1])) for s in jobs}
    if set(exported) != set(PROJECTS) or counts != await shards.truth():
        return {}
    return {project: where.pop() for project, where in exported.items()}


async def owners(shards: ShardedStack, total: int) -> dict[str, int]:
    """project -> shard, from Prometheus, once all `total` replicas run with that total and
    every project is exported once."""

    async def settled() -> dict[str, int] | None:
        instances = await shards.shard_of_instance()
        if sorted(instances.values()) != [(shard, total) for shard in range(total)]:
            return None
        where = await every_project_once(shards)
        return {project: instances[instance][0] for project, instance in where.items()}

    return await eventually(settled, STARTUP_SECONDS, f"every project once over {total} shards")


async def test_a_stopped_shard_leaves_only_its_own_projects_unmonitored(tmp_path: Path) -> None:
    async with running_shards(tmp_path, PROJECTS, SHARDS) as shards:
        before = await owners(shards, SHARDS)
        assert set(before.values()) == set(range(SHARDS))  # every shard holds some projects

        stopped = 2
        own = {project for project, shard in before.items() if shard == stopped}
        others = set(PROJECTS) - own
        polled = await shards.query('vias_last_success_timestamp_seconds{source="tasks"}')
        last_poll = {s["metric"]["project_id"]: float(s["value"][1]) for s in polled}
        shards.stop_shard(stopped)

        async def only_its_own_unmonitored() -> bool:
            exported = await shards.exported_by()
            if set(exported) != others:
                return False
            # the other shards' projects are still polled and scraped: a newer poll of each
            polled = await shards.query('vias_last_success_timestamp_seconds{source="tasks"}')
            newer = {
                s["metric"]["project_id"]
                for s in polled
                if float(s["value"][1]) > last_poll[s["metric"]["project_id"]]
            }
            return newer == others

        await eventually(only_its_own_unmonitored, STARTUP_SECONDS, "shard 2's projects gone")
        down = await shards.query(f'up{{instance="{shards.instance(stopped)}"}} == 0')
        assert len(down) == 1

        async def shards_missing() -> bool:
            alerts = await shards.query('ALERTS{alertname="VIASShardsMissing"}')
            return len(alerts) == 1  # pending (`for:` shortened to 15 s) or firing

        await eventually(shards_missing, STARTUP_SECONDS, "VIASShardsMissing")

        shards.start_shard(stopped, SHARDS)
        assert await owners(shards, SHARDS) == before

        async def no_shard_missing() -> bool:
            return not await shards.query('ALERTS{alertname="VIASShardsMissing"}')

        await eventually(no_shard_missing, STARTUP_SECONDS, "VIASShardsMissing to end")


async def test_a_fifth_shard_takes_about_a_fifth_of_the_projects(tmp_path: Path) -> None:
    async with running_shards(tmp_path, PROJECTS, SHARDS) as shards:
        before = await owners(shards, SHARDS)

        # A StatefulSet scaled from 4 to 5 replicas: every replica restarts with the new
        # total, the fifth one is a new target.
        for shard in range(SHARDS):
            shards.stop_shard(shard)
        for shard in range(SHARDS + 1):
            shards.start_shard(shard, SHARDS + 1)
        shards.discover()

        after = await owners(shards, SHARDS + 1)
        moved = {project for project in PROJECTS if before[project] != after[project]}
        assert 0.15 * len(PROJECTS) <= len(moved) <= 0.25 * len(PROJECTS), len(moved)
        assert {after[project] for project in moved} == {SHARDS}  # all to the new shard
        # what the exporters did is what the hash says
        assert all(Sharding(shard, SHARDS + 1).owns(p) for p, shard in after.items())
